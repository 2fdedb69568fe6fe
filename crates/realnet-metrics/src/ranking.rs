//! Threshold-free ranking metrics of one score per item (image level): AUROC, AP and F1-max, with ties
//! grouped exactly like scikit-learn (`roc_auc_score`, `average_precision_score`).

/// Ranking metrics of scores against binary labels; `None` where undefined (see each field).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RankingMetrics {
    /// ROC AUC; `None` without positives or without negatives. Never flipped when < 0.5.
    pub auroc: Option<f64>,
    /// Average precision (step-wise, no interpolation); `None` without positives.
    pub ap: Option<f64>,
    /// The best F1 over all thresholds `score >= t`; `None` without positives.
    pub f1_max: Option<f64>,
    /// The threshold t reaching `f1_max` (the highest one if several do), in score units.
    pub f1_threshold: Option<f64>,
}

/// One run of tied scores, in descending score order: the threshold and the positives / negatives in it.
pub(crate) struct TieGroup {
    pub score: f64,
    pub dtp: u64,
    pub dfp: u64,
}

/// `scores` sorted descending and grouped into runs of equal scores (sklearn's thresholds), with the
/// positive and negative counts. Shared by the metrics and the ROC curve ([`crate::image_roc`]).
pub(crate) fn tie_groups(scores: &[f64], labels: &[bool]) -> (Vec<TieGroup>, u64, u64) {
    assert_eq!(scores.len(), labels.len(), "one label per score");
    // -0.0 and 0.0 are the same threshold (numpy compares them equal).
    let mut order: Vec<(f64, bool)> = scores
        .iter()
        .map(|&s| s + 0.0)
        .zip(labels.iter().copied())
        .collect();
    order.sort_unstable_by(|a, b| b.0.total_cmp(&a.0));
    let n_pos = labels.iter().filter(|&&l| l).count() as u64;
    let n_neg = labels.len() as u64 - n_pos;
    let mut groups = Vec::new();
    let mut i = 0;
    while i < order.len() {
        let t = order[i].0;
        let (mut dtp, mut dfp) = (0u64, 0u64);
        while i < order.len() && order[i].0 == t {
            if order[i].1 {
                dtp += 1;
            } else {
                dfp += 1;
            }
            i += 1;
        }
        groups.push(TieGroup { score: t, dtp, dfp });
    }
    (groups, n_pos, n_neg)
}

/// Metrics of `scores` (higher = more positive) against `labels`. Scores must not be NaN.
pub fn ranking_metrics(scores: &[f64], labels: &[bool]) -> RankingMetrics {
    let (groups, n_pos, n_neg) = tie_groups(scores, labels);
    let (mut tp, mut fp) = (0u64, 0u64);
    let mut auc2: u128 = 0; // 2·area·P·N, exact: Σ over runs dfp·(2·tp_before + dtp)
    let mut ap = 0f64;
    let mut best: Option<(f64, f64)> = None;
    for TieGroup { score: t, dtp, dfp } in groups {
        auc2 += dfp as u128 * (2 * tp + dtp) as u128;
        tp += dtp;
        fp += dfp;
        if dtp > 0 {
            ap += dtp as f64 * (tp as f64 / (tp + fp) as f64);
        }
        if n_pos > 0 {
            let f1 = 2.0 * tp as f64 / (tp + fp + n_pos) as f64;
            match best {
                Some((b, _)) if f1 <= b => {} // keep the highest threshold among equal F1
                _ => best = Some((f1, t)),
            }
        }
    }
    RankingMetrics {
        auroc: (n_pos > 0 && n_neg > 0).then(|| auc2 as f64 / (2.0 * n_pos as f64 * n_neg as f64)),
        ap: (n_pos > 0).then(|| ap / n_pos as f64),
        f1_max: best.map(|b| b.0),
        f1_threshold: best.map(|b| b.1),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: Option<f64>, b: f64) -> bool {
        a.is_some_and(|a| (a - b).abs() < 1e-12)
    }

    #[test]
    fn perfect_reversed_and_tied() {
        let l = [false, false, true, true];
        let m = ranking_metrics(&[0.1, 0.2, 0.8, 0.9], &l);
        assert!(close(m.auroc, 1.0) && close(m.ap, 1.0) && close(m.f1_max, 1.0));
        assert_eq!(m.f1_threshold, Some(0.8));
        let r = ranking_metrics(&[0.9, 0.8, 0.2, 0.1], &l);
        assert!(close(r.auroc, 0.0), "not flipped: {:?}", r.auroc);
        let t = ranking_metrics(&[0.5; 4], &l);
        assert!(close(t.auroc, 0.5) && close(t.ap, 0.5));
        assert!(close(t.f1_max, 2.0 / 3.0));
    }

    #[test]
    fn hand_case_with_ties_matches_sklearn() {
        // sklearn: roc_auc_score([0,1,0,1,1,0], [0.1,0.4,0.4,0.8,0.3,0.2]) = 0.8333333333333334
        //          average_precision_score(...) = 0.8055555555555556
        let s = [0.1, 0.4, 0.4, 0.8, 0.3, 0.2];
        let l = [false, true, false, true, true, false];
        let m = ranking_metrics(&s, &l);
        assert!(close(m.auroc, 0.8333333333333334), "{:?}", m.auroc);
        assert!(close(m.ap, 0.8055555555555556), "{:?}", m.ap);
        // thresholds 0.8: F1 = 2/(1+3)=0.5; 0.4: 2·2/(3+3)=0.667; 0.3: 2·3/(4+3)=0.857; 0.2: 6/8
        assert!(close(m.f1_max, 6.0 / 7.0));
        assert_eq!(m.f1_threshold, Some(0.3));
    }

    #[test]
    fn degenerate_sets_are_none_not_nan() {
        let m = ranking_metrics(&[0.1, 0.2], &[false, false]);
        assert_eq!(
            (m.auroc, m.ap, m.f1_max, m.f1_threshold),
            (None, None, None, None)
        );
        let p = ranking_metrics(&[0.1, 0.2], &[true, true]);
        assert_eq!(p.auroc, None);
        assert!(close(p.ap, 1.0) && close(p.f1_max, 1.0));
        assert_eq!(p.f1_threshold, Some(0.1));
        let e = ranking_metrics(&[], &[]);
        assert_eq!(e.auroc, None);
        // -0.0 and 0.0 tie
        let z = ranking_metrics(&[-0.0, 0.0], &[true, false]);
        assert!(close(z.auroc, 0.5));
    }
}
