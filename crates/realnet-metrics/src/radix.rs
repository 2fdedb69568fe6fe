//! Radix sort of `u64`s by their upper 32 bits, in two levels: one global counting scatter on the top
//! 16 key bits ([`bucket`]) into buckets small enough to finish in cache ([`sort_bucket`]: two 8-bit LSD
//! passes on the next 16 bits). The caller fuses the histogram into writing the keys and the sweep into
//! the per-bucket step, so the data crosses main memory only twice. Order among equal keys is irrelevant.

/// Number of top-level buckets.
pub(crate) const BUCKETS: usize = 1 << 16;

/// Buckets at most this long finish with a comparison sort (cheaper than two counting passes).
const SMALL: usize = 96;

/// The top-level bucket of an element.
#[inline(always)]
pub(crate) fn bucket(x: u64) -> usize {
    (x >> 48) as usize
}

/// Sorts one bucket (elements sharing their top 16 bits) by bits 32..48; `scratch` has its length.
pub(crate) fn sort_bucket(data: &mut [u64], scratch: &mut [u64]) {
    if data.len() <= SMALL {
        data.sort_unstable_by_key(|&x| (x >> 32) as u16);
    } else {
        counting_pass(data, scratch, 32);
        counting_pass(scratch, data, 40);
    }
}

/// The whole sort from the two steps (what the pixel sweep does inline).
#[cfg(test)]
pub(crate) fn sort_by_high32(v: &mut Vec<u64>) {
    let n = v.len();
    let mut start = vec![0usize; BUCKETS + 1];
    for &x in v.iter() {
        start[bucket(x) + 1] += 1;
    }
    for i in 1..start.len() {
        start[i] += start[i - 1];
    }
    let mut tmp = vec![0u64; n];
    let mut next = start.clone();
    for &x in v.iter() {
        tmp[next[bucket(x)]] = x;
        next[bucket(x)] += 1;
    }
    for b in 0..BUCKETS {
        let (lo, hi) = (start[b], start[b + 1]);
        sort_bucket(&mut tmp[lo..hi], &mut v[lo..hi]);
    }
    *v = tmp;
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
        sort_by_high32(&mut v);
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
