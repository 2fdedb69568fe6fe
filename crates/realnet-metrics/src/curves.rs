//! Curve points for plotting: image ROC, pixel ROC and the PRO curve, recorded by the same sweeps that
//! compute the exact AUROC / AUPRO (see [`crate::evaluate_with_curves`] and [`image_roc`]), then thinned.
use serde::{Deserialize, Serialize};

/// How many points a plotted curve gets at most by default (plus its two ends).
pub const DEFAULT_CURVE_POINTS: usize = 400;

/// A monotone curve as `(x, y)` points in sweep order (decreasing threshold), from its first point to its
/// last, linear in between. Thinned for plotting: consecutive kept points are at least `1 / max_points`
/// apart (L1 distance, each axis scaled to [0, 1]), so the polyline never departs from the exact
/// piecewise-linear curve by more than that, and there are at most ~2·`max_points` + 2 points.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct Curve {
    pub points: Vec<(f64, f64)>,
}

/// The curves of a whole test set (not per defect type); `None` where the matching metric is undefined.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct Curves {
    /// Image-level ROC: (FPR, TPR) from (0, 0) to (1, 1). Its trapezoid area is the image AUROC.
    pub image_roc: Option<Curve>,
    /// Pixel-level ROC over all pixels pooled: (FPR, TPR) from (0, 0) to (1, 1).
    pub pixel_roc: Option<Curve>,
    /// PRO curve: (FPR, mean per-region overlap) from (0, 0) to FPR = [`crate::AUPRO_FPR_LIMIT`] (the last
    /// point interpolated there, as for AUPRO). Its area divided by the limit is the AUPRO.
    pub pro: Option<Curve>,
}

/// Records a curve, dropping points closer than `step` to the last kept one but never the last point.
#[derive(Debug, Clone)]
pub(crate) struct Thinner {
    step: f64,
    x_scale: f64,
    points: Vec<(f64, f64)>,
    pending: Option<(f64, f64)>,
}

impl Thinner {
    /// A recorder for curves with x in [0, x_range] and y in [0, 1], starting at (0, 0).
    pub(crate) fn new(max_points: usize, x_range: f64) -> Thinner {
        Thinner {
            step: 1.0 / max_points.max(1) as f64,
            x_scale: 1.0 / x_range.max(f64::MIN_POSITIVE),
            points: vec![(0.0, 0.0)],
            pending: None,
        }
    }

    #[inline]
    pub(crate) fn push(&mut self, x: f64, y: f64) {
        let (lx, ly) = self.points[self.points.len() - 1];
        if ((x - lx) * self.x_scale).abs() + (y - ly).abs() >= self.step {
            self.points.push((x, y));
            self.pending = None;
        } else {
            self.pending = Some((x, y));
        }
    }

    pub(crate) fn finish(mut self) -> Curve {
        if let Some(p) = self.pending.take() {
            self.points.push(p);
        }
        Curve {
            points: self.points,
        }
    }
}

/// The image-level ROC curve of `scores` (higher = more positive) against `labels`, tie groups as in
/// [`crate::ranking_metrics`] (the same sweep): one point per distinct score, thinned to about
/// `max_points`. `None` without positives or without negatives (where AUROC is undefined).
pub fn image_roc(scores: &[f64], labels: &[bool], max_points: usize) -> Option<Curve> {
    let (groups, n_pos, n_neg) = crate::ranking::tie_groups(scores, labels);
    if n_pos == 0 || n_neg == 0 {
        return None;
    }
    let mut t = Thinner::new(max_points, 1.0);
    let (mut tp, mut fp) = (0u64, 0u64);
    for g in groups {
        tp += g.dtp;
        fp += g.dfp;
        t.push(fp as f64 / n_neg as f64, tp as f64 / n_pos as f64);
    }
    Some(t.finish())
}

/// The area under a curve by the trapezoid rule (for checks: the ROC area is the AUROC).
pub fn trapezoid(points: &[(f64, f64)]) -> f64 {
    points
        .windows(2)
        .map(|w| (w[1].0 - w[0].0) * (w[1].1 + w[0].1) * 0.5)
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_roc_area_is_the_auroc() {
        let s = [0.1, 0.4, 0.4, 0.8, 0.3, 0.2];
        let l = [false, true, false, true, true, false];
        let c = image_roc(&s, &l, 1000).unwrap();
        assert_eq!(c.points.first(), Some(&(0.0, 0.0)));
        assert_eq!(c.points.last(), Some(&(1.0, 1.0)));
        assert!((trapezoid(&c.points) - 0.8333333333333334).abs() < 1e-12);
        // one point per distinct score (5), plus the start
        assert_eq!(c.points.len(), 6);
        assert_eq!(image_roc(&s, &[false; 6], 10), None);
    }

    #[test]
    fn thinning_bounds_the_count_and_keeps_the_ends() {
        let mut t = Thinner::new(10, 1.0);
        for i in 1..=10_000 {
            let x = i as f64 / 10_000.0;
            t.push(x, x.sqrt());
        }
        let c = t.finish();
        assert!(c.points.len() <= 2 * 10 + 2, "{}", c.points.len());
        assert_eq!(c.points.last(), Some(&(1.0, 1.0)));
        for w in c.points.windows(2) {
            assert!(w[1].0 >= w[0].0 && w[1].1 >= w[0].1);
        }
    }
}
