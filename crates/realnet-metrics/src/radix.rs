//! Radix sort of `u64`s by their upper 32 bits: the one global sort of all pixels of a test set.
//! One global counting pass on the top 16 key bits scatters the data into buckets that are then small
//! enough to finish in cache with two 8-bit LSD passes on the next 16 bits: two trips through main
//! memory instead of the three or four of a plain LSD sort. Order among equal keys is irrelevant here.

/// Buckets at most this long finish with a comparison sort (cheaper than two counting passes).
const SMALL: usize = 96;

/// Sorts `v` ascending by `v >> 32`, using `tmp` as scratch (resized as needed).
pub(crate) fn sort_by_high32(v: &mut Vec<u64>, tmp: &mut Vec<u64>) {
    let n = v.len();
    if n < 2 {
        return;
    }
    let mut start = vec![0usize; (1 << 16) + 1];
    for &x in v.iter() {
        start[(x >> 48) as usize + 1] += 1;
    }
    for i in 1..start.len() {
        start[i] += start[i - 1];
    }
    tmp.clear();
    tmp.resize(n, 0);
    let mut next = start.clone();
    for &x in v.iter() {
        let d = (x >> 48) as usize;
        tmp[next[d]] = x;
        next[d] += 1;
    }
    // Each bucket: sort by key bits 32..48, ping-ponging between tmp and v (now free) so that the
    // result lands back in tmp.
    for b in 0..1 << 16 {
        let (lo, hi) = (start[b], start[b + 1]);
        if hi - lo < 2 {
            continue;
        }
        let (data, scratch) = (&mut tmp[lo..hi], &mut v[lo..hi]);
        if hi - lo <= SMALL {
            data.sort_unstable_by_key(|&x| (x >> 32) as u16);
        } else {
            counting_pass(data, scratch, 32);
            counting_pass(scratch, data, 40);
        }
    }
    std::mem::swap(v, tmp);
}

/// Stable scatter of `src` into `dst` by the 8 bits of each element at `shift`.
fn counting_pass(src: &[u64], dst: &mut [u64], shift: u32) {
    let mut count = [0usize; 256];
    for &x in src {
        count[((x >> shift) & 0xff) as usize] += 1;
    }
    if count.contains(&src.len()) {
        dst.copy_from_slice(src); // one digit value: keep the order, skip the scatter
        return;
    }
    let mut sum = 0;
    for c in count.iter_mut() {
        (*c, sum) = (sum, sum + *c);
    }
    for &x in src {
        let d = ((x >> shift) & 0xff) as usize;
        dst[count[d]] = x;
        count[d] += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(n: u64, key_mask: u32) {
        let mut s = 0x9e3779b97f4a7c15u64;
        let mut v: Vec<u64> = (0..n)
            .map(|i| {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                ((((s >> 32) as u32) & key_mask) as u64) << 32 | i
            })
            .collect();
        let mut want: Vec<u64> = v.iter().map(|x| x >> 32).collect();
        want.sort_unstable();
        sort_by_high32(&mut v, &mut Vec::new());
        assert_eq!(
            v.iter().map(|x| x >> 32).collect::<Vec<_>>(),
            want,
            "mask {key_mask:x}"
        );
        let mut payload: Vec<u64> = v.iter().map(|x| x & 0xffff_ffff).collect();
        payload.sort_unstable();
        assert_eq!(payload, (0..n).collect::<Vec<_>>(), "a permutation");
    }

    #[test]
    fn sorts_like_std() {
        check(50_000, u32::MAX); // many small buckets
        check(50_000, 0xffc0_0fff); // ties, empty digit ranges
        check(50_000, 0x0003_ffff); // few big buckets: the counting passes
        check(50_000, 0x0003_00ff); // a constant digit in the big buckets
        check(50_000, 0); // all equal
        check(1, u32::MAX);
        check(0, u32::MAX);
    }
}
