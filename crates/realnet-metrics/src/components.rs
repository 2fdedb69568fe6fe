//! Connected components of a binary mask with 8-connectivity (scipy.ndimage.label with a 3×3 structure
//! of ones), the ground-truth regions of AUPRO.

/// Labels the `true` pixels of a row-major `w × h` mask: `labels[i]` = 0 for background, 1..=n for the
/// region of pixel i. Returns the pixel count of every region (`sizes[r - 1]` for label r).
/// Iterative flood fill with an explicit stack, so huge regions cannot overflow the call stack.
pub(crate) fn label8(mask: &[bool], w: usize, h: usize, labels: &mut [u32]) -> Vec<u32> {
    debug_assert_eq!(mask.len(), w * h);
    debug_assert_eq!(labels.len(), w * h);
    labels.fill(0);
    let mut sizes = Vec::new();
    let mut stack: Vec<usize> = Vec::new();
    for start in 0..mask.len() {
        if !mask[start] || labels[start] != 0 {
            continue;
        }
        let id = sizes.len() as u32 + 1;
        let mut size = 0u32;
        labels[start] = id;
        stack.push(start);
        while let Some(p) = stack.pop() {
            size += 1;
            let (x, y) = (p % w, p / w);
            let (x0, x1) = (x.saturating_sub(1), (x + 1).min(w - 1));
            let (y0, y1) = (y.saturating_sub(1), (y + 1).min(h - 1));
            for ny in y0..=y1 {
                for nx in x0..=x1 {
                    let q = ny * w + nx;
                    if mask[q] && labels[q] == 0 {
                        labels[q] = id;
                        stack.push(q);
                    }
                }
            }
        }
        sizes.push(size);
    }
    sizes
}

/// The number of 8-connected regions of a row-major mask `width` pixels wide (the GT regions AUPRO
/// averages over).
pub fn region_count(mask: &[bool], width: usize) -> usize {
    if mask.is_empty() || mask.len().checked_rem(width) != Some(0) {
        return 0;
    }
    label8(mask, width, mask.len() / width, &mut vec![0; mask.len()]).len()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(rows: &[&str]) -> (Vec<bool>, usize, usize) {
        let w = rows[0].len();
        let m = rows
            .iter()
            .flat_map(|r| r.bytes().map(|b| b == b'#'))
            .collect();
        (m, w, rows.len())
    }

    #[test]
    fn diagonal_touch_joins_regions_and_holes_are_not_filled() {
        let (m, w, h) = parse(&[
            "#....#", //
            ".#..#.", // the two diagonals meet nothing: 2 regions so far
            "......", //
            "###...", //
            "#.#..#", // ring with a hole (not filled: 8 pixels) and a lone pixel
            "###...",
        ]);
        let mut lab = vec![0; w * h];
        let sizes = label8(&m, w, h, &mut lab);
        assert_eq!(sizes, vec![2, 2, 8, 1]);
        assert_eq!(lab[0], lab[w + 1]);
        assert_eq!(lab[4 * w + 1], 0, "the hole stays background");
    }

    #[test]
    fn empty_and_full() {
        let mut lab = vec![7; 12];
        assert!(label8(&[false; 12], 4, 3, &mut lab).is_empty());
        assert!(lab.iter().all(|&l| l == 0));
        assert_eq!(label8(&[true; 12], 4, 3, &mut lab), vec![12]);
        assert_eq!(label8(&[true; 5], 1, 5, &mut [0; 5]), vec![5]);
    }
}
