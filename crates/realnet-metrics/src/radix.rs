//! LSD radix sort of `u64`s by their upper 32 bits: the one global sort of all pixels of a test set
//! (O(n), ~4× faster than a comparison sort at 5M pixels). Order among equal keys is irrelevant here.

const BITS: [u32; 3] = [11, 11, 10];

/// Sorts `v` ascending by `v >> 32`, using `tmp` as scratch (resized as needed).
pub(crate) fn sort_by_high32(v: &mut Vec<u64>, tmp: &mut Vec<u64>) {
    let n = v.len();
    if n < 2 {
        return;
    }
    // One read pass builds all three histograms.
    let mut hist = [
        vec![0usize; 1 << BITS[0]],
        vec![0usize; 1 << BITS[1]],
        vec![0usize; 1 << BITS[2]],
    ];
    for &x in v.iter() {
        let k = (x >> 32) as u32;
        hist[0][(k & 0x7ff) as usize] += 1;
        hist[1][((k >> 11) & 0x7ff) as usize] += 1;
        hist[2][(k >> 22) as usize] += 1;
    }
    tmp.clear();
    tmp.resize(n, 0);
    let mut shift = 32u32;
    for (pass, h) in hist.iter_mut().enumerate() {
        let mask = (1u64 << BITS[pass]) - 1;
        let this_shift = shift;
        shift += BITS[pass];
        if h.contains(&n) {
            continue; // every element has the same digit: the pass would not move anything
        }
        let mut sum = 0;
        for c in h.iter_mut() {
            let here = *c;
            *c = sum;
            sum += here;
        }
        for &x in v.iter() {
            let d = ((x >> this_shift) & mask) as usize;
            tmp[h[d]] = x;
            h[d] += 1;
        }
        std::mem::swap(v, tmp);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sorts_like_std() {
        let mut s = 0x9e3779b97f4a7c15u64;
        let mut v: Vec<u64> = (0..10_000)
            .map(|i| {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                // few distinct keys in the low digits, many ties, and the payload in the low half
                (((s >> 40) as u32 as u64 & 0xffc0_0fff) << 32) | i
            })
            .collect();
        let mut want: Vec<u64> = v.iter().map(|x| x >> 32).collect();
        want.sort_unstable();
        sort_by_high32(&mut v, &mut Vec::new());
        assert_eq!(v.iter().map(|x| x >> 32).collect::<Vec<_>>(), want);
        let mut payload: Vec<u64> = v.iter().map(|x| x & 0xffff_ffff).collect();
        payload.sort_unstable();
        assert_eq!(payload, (0..10_000).collect::<Vec<_>>(), "a permutation");
    }
}
