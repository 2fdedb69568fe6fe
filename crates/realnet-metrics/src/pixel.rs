//! Pixel-level metrics of a pooled test set from ONE global sort: pixel AUROC, pixel AP and AUPRO.
//!
//! Every pixel becomes a `u64`: the upper 32 bits order scores descending, the lower 32 bits name its
//! "class" — the negative pixels of image i, or ground-truth region r of image i. After a radix sort,
//! one sweep over the distinct scores (runs of equal keys = sklearn's tie groups) updates one
//! accumulator for the whole set and one per defect type (that defect's images + all good images), so
//! per-defect metrics cost no extra sort and are identical to evaluating each subset on its own.
//!
//! Good images' negative pixels belong to every defect subset. Rather than touching every defect
//! accumulator for each of them, they are counted once globally and folded into a defect accumulator
//! lazily, when that accumulator next sees a pixel of its own: in between, its TP count and PRO are
//! constant, so those negatives only add 2·tp each to the AUROC sum and a flat PRO-curve segment.
use crate::components::label8;
use crate::curves::{Curve, Thinner};
use crate::radix::{bucket, sort_bucket, BUCKETS};
use crate::MetricsError;
use rayon::prelude::*;

/// One image of the pooled set.
pub(crate) struct PixelItem<'a> {
    pub scores: &'a [f32],
    pub mask: Option<&'a [bool]>,
    pub width: usize,
    pub height: usize,
    /// `None` = a good image (counted in every defect's subset), `Some(d)` = defect type d.
    pub defect: Option<usize>,
}

#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub(crate) struct PixelMetrics {
    pub auroc: Option<f64>,
    pub ap: Option<f64>,
    pub aupro: Option<f64>,
}

/// Order-preserving map of a finite f32 to u32, reversed so that ascending keys = descending scores.
#[inline]
fn desc_key(s: f32) -> u32 {
    let b = (s + 0.0).to_bits(); // -0.0 → +0.0: they are one threshold
    let asc = if b & 0x8000_0000 != 0 {
        !b
    } else {
        b | 0x8000_0000
    };
    !asc
}

/// What a pixel class contributes: `inv_size` = 1/|region| for a region, 0 for negatives.
#[derive(Clone, Copy)]
struct Class {
    inv_size: f64,
    /// defect index, or `GOOD`
    group: u32,
}
const GOOD: u32 = u32::MAX;

/// Running state of one evaluated set during the sweep.
#[derive(Default)]
struct Acc {
    n_pos: u64,
    n_neg: u64,
    n_regions: u64,
    inv_neg: f64,
    inv_regions: f64,
    // cumulative at the last closed run, and pending in the current run
    tp: u64,
    fp: u64,
    pro: f64,
    dtp: u64,
    dfp: u64,
    dpro: f64,
    auc2: u64, // 2·AUC·P·N, exact integer trapezoid sum (≤ P·N/2·4 < 2^64 for < 2^32 pixels)
    ap: f64,   // Σ Δtp·precision (divided by P at the end)
    // PRO curve integration up to the FPR limit
    f_prev: f64,
    p_prev: f64,
    area: f64,
    pro_done: bool,
    /// defect accumulators: how many good negatives (global count) are already folded in
    g_synced: u64,
    /// curve points for plotting (the whole-set accumulator only, when asked for)
    rec: Option<Box<Recorder>>,
}

/// The ROC and PRO points of one accumulator, recorded as the sweep closes each run.
struct Recorder {
    roc: Thinner,
    pro: Thinner,
}

/// Pixel ROC and PRO curve of the whole set (see [`crate::Curves`]).
#[derive(Debug, Clone, Default)]
pub(crate) struct PixelCurves {
    pub roc: Option<Curve>,
    pub pro: Option<Curve>,
}

impl Acc {
    fn start(&mut self) {
        self.inv_neg = 1.0 / self.n_neg.max(1) as f64;
        self.inv_regions = 1.0 / self.n_regions.max(1) as f64;
        self.pro_done = self.n_neg == 0 || self.n_regions == 0; // AUPRO undefined: skip the curve
    }

    #[inline(always)]
    fn add(&mut self, c: Class) {
        if c.inv_size > 0.0 {
            self.dtp += 1;
            self.dpro += c.inv_size;
        } else {
            self.dfp += 1;
        }
    }

    /// Ends a run of tied scores: one point of the ROC, PR and PRO curves.
    #[inline]
    fn close(&mut self, limit: f64) {
        let (dtp, dfp) = (self.dtp, self.dfp);
        self.auc2 += dfp * (2 * self.tp + dtp);
        self.tp += dtp;
        self.fp += dfp;
        if dtp > 0 {
            self.pro += self.dpro;
            self.ap += dtp as f64 * (self.tp as f64 / (self.tp + self.fp) as f64);
        }
        if let Some(r) = self.rec.as_deref_mut() {
            r.roc.push(
                self.fp as f64 * self.inv_neg,
                self.tp as f64 / self.n_pos.max(1) as f64,
            );
        }
        if !self.pro_done {
            self.pro_point(limit);
        }
        (self.dtp, self.dfp, self.dpro) = (0, 0, 0.0);
    }

    /// Folds in the good negatives of earlier runs (global count `g_closed`) not yet counted here:
    /// no own pixel came between, so the curves only move along FPR.
    #[inline]
    fn sync(&mut self, g_closed: u64, limit: f64) {
        let g = g_closed - self.g_synced;
        if g > 0 {
            self.auc2 += 2 * self.tp * g;
            self.fp += g;
            if !self.pro_done {
                self.pro_point(limit);
            }
            self.g_synced = g_closed;
        }
    }

    /// Closes a run of a defect accumulator that also holds `g_run` good negatives.
    #[inline]
    fn close_with_goods(&mut self, g_closed: u64, g_run: u64, limit: f64) {
        self.sync(g_closed, limit);
        self.dfp += g_run;
        self.close(limit);
        self.g_synced = g_closed + g_run;
    }

    /// Adds the trapezoid from the previous PRO-curve point to the current one, stopping at the limit.
    fn pro_point(&mut self, limit: f64) {
        let f = (self.fp as f64 * self.inv_neg).min(1.0);
        let p = (self.pro * self.inv_regions).clamp(0.0, 1.0);
        if f <= limit {
            self.area += (f - self.f_prev) * (p + self.p_prev) * 0.5;
            (self.f_prev, self.p_prev) = (f, p);
            if let Some(r) = self.rec.as_deref_mut() {
                r.pro.push(f, p);
            }
        } else {
            // the first point past the limit: interpolate the curve at exactly FPR = limit
            let p_lim = self.p_prev + (p - self.p_prev) * (limit - self.f_prev) / (f - self.f_prev);
            self.area += (limit - self.f_prev) * (p_lim + self.p_prev) * 0.5;
            self.pro_done = true;
            if let Some(r) = self.rec.as_deref_mut() {
                r.pro.push(limit, p_lim);
            }
        }
    }

    /// The recorded curves (only where the matching metric is defined).
    fn curves(&mut self) -> PixelCurves {
        let Some(r) = self.rec.take() else {
            return PixelCurves::default();
        };
        let Recorder { roc, pro } = *r;
        let defined = self.n_pos > 0 && self.n_neg > 0;
        PixelCurves {
            roc: defined.then(|| roc.finish()),
            pro: (defined && self.n_regions > 0).then(|| pro.finish()),
        }
    }

    fn finish(&self, limit: f64) -> PixelMetrics {
        let (p, n) = (self.n_pos, self.n_neg);
        PixelMetrics {
            auroc: (p > 0 && n > 0).then(|| self.auc2 as f64 / (2.0 * p as f64 * n as f64)),
            ap: (p > 0).then(|| self.ap / p as f64),
            aupro: (self.n_regions > 0 && n > 0).then(|| (self.area / limit).clamp(0.0, 1.0)),
        }
    }
}

/// Which defect accumulators have own pixels in the current run (a bitset; usually one word).
struct Dirty(Vec<u64>);

impl Dirty {
    #[inline(always)]
    fn set(&mut self, a: usize) {
        self.0[a >> 6] |= 1 << (a & 63);
    }

    #[inline]
    fn close_all(&mut self, accs: &mut [Acc], g_closed: u64, g_run: u64, limit: f64) {
        for (w, word) in self.0.iter_mut().enumerate() {
            let mut bits = std::mem::take(word);
            while bits != 0 {
                accs[w * 64 + bits.trailing_zeros() as usize]
                    .close_with_goods(g_closed, g_run, limit);
                bits &= bits - 1;
            }
        }
    }
}

/// The sweep over sorted pixels: the whole-set accumulator, one per defect type, and the good
/// negatives not yet folded into the defect accumulators.
struct Sweep {
    all: Acc,
    defects: Vec<Acc>,
    dirty: Dirty,
    g_closed: u64,
    g_run: u64,
    cur: Option<u32>,
    limit: f64,
}

impl Sweep {
    /// Feeds the next pixels in sorted order (runs of equal keys may not be split across calls
    /// differently from the sort: they are not, since a run lies inside one bucket).
    fn feed(&mut self, xs: &[u64], classes: &[Class]) {
        let mut cur = self
            .cur
            .unwrap_or((xs.first().copied().unwrap_or(0) >> 32) as u32);
        for &x in xs {
            let k = (x >> 32) as u32;
            if k != cur {
                self.end_run();
                cur = k;
            }
            let c = classes[x as u32 as usize];
            self.all.add(c);
            if c.group != GOOD {
                self.defects[c.group as usize].add(c);
                self.dirty.set(c.group as usize);
            } else if c.inv_size == 0.0 {
                self.g_run += 1;
            } else {
                // a region in a "good" image (unusual): it is a positive of every defect subset
                for (a, acc) in self.defects.iter_mut().enumerate() {
                    acc.add(c);
                    self.dirty.set(a);
                }
            }
        }
        self.cur = Some(cur);
    }

    #[inline]
    fn end_run(&mut self) {
        self.all.close(self.limit);
        self.dirty
            .close_all(&mut self.defects, self.g_closed, self.g_run, self.limit);
        self.g_closed += self.g_run;
        self.g_run = 0;
    }

    fn finish(mut self) -> PixelOutput {
        if self.cur.is_some() {
            self.end_run();
        }
        let (g, limit) = (self.g_closed, self.limit);
        for acc in self.defects.iter_mut() {
            acc.sync(g, limit);
        }
        PixelOutput {
            all: self.all.finish(limit),
            per_defect: self.defects.iter().map(|a| a.finish(limit)).collect(),
            curves: self.all.curves(),
        }
    }
}

/// Writes one image's keys (score order | local region label) and counts their top-level buckets;
/// returns the pixel count of each region.
fn write_keys(it: &PixelItem, out: &mut [u64], hist: &mut [u32]) -> Vec<u32> {
    let key = |s: f32| {
        let k = desc_key(s);
        hist[(k >> 16) as usize] += 1;
        (k as u64) << 32
    };
    match it.mask {
        Some(mask) => {
            let mut labels = vec![0u32; mask.len()];
            let sizes = label8(mask, it.width, it.height, &mut labels);
            let mut key = key;
            for ((o, &s), &l) in out.iter_mut().zip(it.scores).zip(&labels) {
                *o = key(s) | l as u64;
            }
            sizes
        }
        None => {
            let mut key = key;
            for (o, &s) in out.iter_mut().zip(it.scores) {
                *o = key(s);
            }
            Vec::new()
        }
    }
}

/// What [`pixel_metrics`] computes.
pub(crate) struct PixelOutput {
    pub all: PixelMetrics,
    pub per_defect: Vec<PixelMetrics>,
    /// The whole set's curves; empty unless curve points were asked for.
    pub curves: PixelCurves,
}

/// Pixel metrics of the whole set and of each of the `n_defects` defect subsets; AUPRO integrates the
/// PRO curve up to `fpr_limit`. With `curve_points`, the same sweep also records the whole set's ROC and
/// PRO curves, thinned to about that many points. Items must be validated (sizes, finite scores) by the
/// caller.
pub(crate) fn pixel_metrics(
    items: &[PixelItem],
    n_defects: usize,
    fpr_limit: f64,
    curve_points: Option<usize>,
) -> Result<PixelOutput, MetricsError> {
    let n: usize = items.iter().map(|it| it.scores.len()).sum();
    if n > u32::MAX as usize {
        return Err(MetricsError::TooLarge(format!(
            "{n} pixels (at most {})",
            u32::MAX
        )));
    }
    let mut keys = vec![0u64; n];

    // 1. Keys with local region labels, and the bucket histogram, one image per task.
    let mut slices: Vec<&mut [u64]> = Vec::with_capacity(items.len());
    let mut rest: &mut [u64] = &mut keys;
    for it in items {
        let (head, tail) = rest.split_at_mut(it.scores.len());
        slices.push(head);
        rest = tail;
    }
    let (mut sizes, hist) = items
        .par_iter()
        .zip(slices.par_iter_mut())
        .enumerate()
        .fold(
            || (Vec::new(), vec![0u32; BUCKETS]),
            |(mut sizes, mut hist), (i, (it, out))| {
                sizes.push((i, write_keys(it, out, &mut hist)));
                (sizes, hist)
            },
        )
        .reduce(
            || (Vec::new(), vec![0u32; BUCKETS]),
            |(mut a, mut ha), (b, hb)| {
                a.extend(b);
                ha.iter_mut().zip(hb).for_each(|(x, y)| *x += y);
                (a, ha)
            },
        );
    sizes.sort_unstable_by_key(|p| p.0);

    // 2. Global class ids: image i owns [base_i, base_i + 1 + n_regions_i): its negatives, then its
    //    regions. Set totals.
    let n_classes: usize = sizes.iter().map(|s| 1 + s.1.len()).sum();
    if n_classes > u32::MAX as usize {
        return Err(MetricsError::TooLarge(format!(
            "{n_classes} images + ground-truth regions (at most {}); evaluate fewer images at once",
            u32::MAX
        )));
    }
    let mut classes = Vec::with_capacity(n_classes);
    let mut bases = Vec::with_capacity(items.len());
    let mut accs: Vec<Acc> = (0..=n_defects).map(|_| Acc::default()).collect();
    for (it, (_, sz)) in items.iter().zip(&sizes) {
        bases.push(classes.len() as u64);
        let group = it.defect.map_or(GOOD, |d| d as u32);
        classes.push(Class {
            inv_size: 0.0,
            group,
        });
        classes.extend(sz.iter().map(|&s| Class {
            inv_size: 1.0 / s as f64,
            group,
        }));
        let pos: u64 = sz.iter().map(|&s| s as u64).sum();
        let neg = it.scores.len() as u64 - pos;
        let count = |a: &mut Acc| {
            a.n_pos += pos;
            a.n_neg += neg;
            a.n_regions += sz.len() as u64;
        };
        count(&mut accs[0]);
        match it.defect {
            Some(d) => count(&mut accs[d + 1]),
            None => accs[1..].iter_mut().for_each(count),
        }
    }
    accs.iter_mut().for_each(Acc::start);
    if let Some(n) = curve_points {
        accs[0].rec = Some(Box::new(Recorder {
            roc: Thinner::new(n, 1.0),
            pro: Thinner::new(n, fpr_limit),
        }));
    }

    // 3. Scatter into buckets (descending score order), adding each image's class base on the way.
    let mut start = vec![0usize; BUCKETS + 1];
    for (b, &h) in hist.iter().enumerate() {
        start[b + 1] = start[b] + h as usize;
    }
    let mut next = start.clone();
    let mut sorted = vec![0u64; n];
    for (slice, &base) in slices.iter().zip(&bases) {
        for &x in slice.iter() {
            let y = x + base;
            let b = bucket(y);
            sorted[next[b]] = y;
            next[b] += 1;
        }
    }
    drop(slices);

    // 4. Finish each bucket in cache and sweep it right away.
    let mut defects = accs.split_off(1);
    let all = accs.pop().unwrap_or_default();
    defects.shrink_to_fit();
    let mut sweep = Sweep {
        all,
        dirty: Dirty(vec![0; defects.len().div_ceil(64)]),
        defects,
        g_closed: 0,
        g_run: 0,
        cur: None,
        limit: fpr_limit,
    };
    for b in 0..BUCKETS {
        let (lo, hi) = (start[b], start[b + 1]);
        if lo == hi {
            continue;
        }
        sort_bucket(&mut sorted[lo..hi], &mut keys[lo..hi]);
        sweep.feed(&sorted[lo..hi], &classes);
    }
    Ok(sweep.finish())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_order_descending() {
        let v = [f32::MAX, 3.5, 1.0, 1e-30, 0.0, -0.0, -1e-30, -2.0, f32::MIN];
        for w in v.windows(2) {
            assert!(desc_key(w[0]) <= desc_key(w[1]), "{} vs {}", w[0], w[1]);
            assert_eq!(desc_key(w[0]) == desc_key(w[1]), w[0] == w[1]);
        }
    }

    fn one(scores: &[f32], mask: &[bool], w: usize) -> PixelMetrics {
        let it = PixelItem {
            scores,
            mask: Some(mask),
            width: w,
            height: scores.len() / w,
            defect: None,
        };
        pixel_metrics(&[it], 0, 0.3, None).unwrap().all
    }

    #[test]
    fn perfect_and_reversed_and_ties() {
        let mask = [false, false, true, true, false, false];
        let s = [0.1, 0.2, 0.9, 0.8, 0.3, 0.0];
        let m = one(&s, &mask, 3);
        assert_eq!((m.auroc, m.ap, m.aupro), (Some(1.0), Some(1.0), Some(1.0)));
        let r: Vec<f32> = s.iter().map(|v| -v).collect();
        let m = one(&r, &mask, 3);
        assert_eq!((m.auroc, m.aupro), (Some(0.0), Some(0.0)));
        let m = one(&[0.5; 6], &mask, 3);
        assert_eq!(m.auroc, Some(0.5));
        assert!((m.ap.unwrap() - 2.0 / 6.0).abs() < 1e-15);
        // one big tie: the PRO curve jumps (0,0)→(1,1); at FPR 0.3 it is 0.3: area 0.045 → 0.15
        assert!((m.aupro.unwrap() - 0.15).abs() < 1e-12);
    }

    #[test]
    fn pro_averages_regions_not_pixels() {
        // 1×8 image: region A = pixels 0..4 (4 px), region B = pixel 6 (1 px), negatives 4,5,7.
        let mask = [true, true, true, true, false, false, true, false];
        // B found first, A never above any negative: PRO reaches 0.5 at FPR 0.
        let s = [0.1, 0.1, 0.1, 0.1, 0.5, 0.5, 0.9, 0.5];
        let m = one(&s, &mask, 8);
        // curve: (0,0) → (0,0.5) → (1,0.5) → (1,1): area to 0.3 = 0.3·0.5 → 0.5
        assert!((m.aupro.unwrap() - 0.5).abs() < 1e-12);
        // pixel AUROC: 1 of 5 positives above all 3 negatives → 3/15 = 0.2
        assert!((m.auroc.unwrap() - 0.2).abs() < 1e-12);
    }

    #[test]
    fn degenerate() {
        let m = one(&[0.1, 0.2], &[false, false], 2);
        assert_eq!(
            m,
            PixelMetrics {
                auroc: None,
                ap: None,
                aupro: None
            }
        );
        let m = one(&[0.1, 0.2], &[true, true], 2);
        assert_eq!((m.auroc, m.aupro), (None, None));
        assert_eq!(m.ap, Some(1.0));
    }
}
