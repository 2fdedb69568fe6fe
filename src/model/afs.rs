//! AFS — Anomaly-aware Features Selection (spec §4.3).
//!
//! Before training, the backbone sees synthetic anomalies and their clean sources. For each channel,
//! the squared feature change, min–max normalised over the batch, is compared with the synthetic mask;
//! the channels whose change matches the mask best (lowest MSE) are kept, in ascending index order.
use tch::{Kind, Tensor};

/// Accumulates per-channel AFS losses over batches, one vector per block.
#[derive(Debug)]
pub struct AfsScores {
    sums: Vec<Tensor>,
}

impl AfsScores {
    pub fn new(channels: &[i64], device: tch::Device) -> Self {
        Self {
            sums: channels
                .iter()
                .map(|&c| Tensor::zeros([c], (Kind::Double, device)))
                .collect(),
        }
    }

    /// One batch: features of the anomalous images and of their clean sources (one tensor per block,
    /// N×C×h×w), and the synthetic masks (N×1×H×W, values 0/1).
    pub fn add_batch(&mut self, anomalous: &[Tensor], clean: &[Tensor], masks: &Tensor) {
        tch::no_grad(|| {
            for ((sum, a), c) in self.sums.iter_mut().zip(anomalous).zip(clean) {
                *sum += batch_losses(a, c, masks).to_kind(Kind::Double);
            }
        })
    }

    /// The `keep[k]` channels with the lowest accumulated loss per block, ascending indices.
    pub fn select(&self, keep: &[i64]) -> Vec<Vec<i64>> {
        self.sums
            .iter()
            .zip(keep)
            .map(|(s, &k)| select_lowest(&Vec::<f64>::try_from(s).unwrap_or_default(), k as usize))
            .collect()
    }
}

/// L_AFS,c = mean over B·H·W of (D̂_c − M)², D = (φ(I') − φ(I))², D̂ min–max normalised per channel
/// over the whole batch (eps 1e-4), M the mask at feature resolution (PyTorch nearest: top-left pixel).
pub fn batch_losses(anomalous: &Tensor, clean: &Tensor, masks: &Tensor) -> Tensor {
    let s = anomalous.size();
    let (c, h, w) = (s[1], s[2], s[3]);
    let d = (anomalous - clean)
        .square()
        .transpose(0, 1)
        .reshape([c, -1]);
    let min = d.amin([1], true);
    let max = d.amax([1], true);
    let dn = (&d - &min) / (max - &min + 1e-4);
    let m = masks
        .to_kind(Kind::Float)
        .upsample_nearest2d([h, w], None, None)
        .reshape([1, -1]);
    (dn - m).square().mean_dim(1i64, false, Kind::Float)
}

/// Indices of the `k` smallest scores, sorted ascending; NaN counts as the worst finite score.
pub fn select_lowest(scores: &[f64], k: usize) -> Vec<i64> {
    let worst = scores
        .iter()
        .copied()
        .filter(|v| !v.is_nan())
        .fold(f64::NEG_INFINITY, f64::max);
    let clean: Vec<f64> = scores
        .iter()
        .map(|&v| if v.is_nan() { worst } else { v })
        .collect();
    let mut order: Vec<usize> = (0..clean.len()).collect();
    // Ties: a real score beats a replaced NaN, then the lower index wins.
    order.sort_by(|&a, &b| {
        clean[a]
            .total_cmp(&clean[b])
            .then(scores[a].is_nan().cmp(&scores[b].is_nan()))
            .then(a.cmp(&b))
    });
    let mut keep: Vec<i64> = order.into_iter().take(k).map(|i| i as i64).collect();
    keep.sort_unstable();
    keep
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Device;

    #[test]
    fn lowest_scores_sorted_and_nan_is_worst() {
        assert_eq!(
            select_lowest(&[0.5, 0.1, f64::NAN, 0.3, 0.9], 3),
            vec![0, 1, 3]
        );
        assert_eq!(select_lowest(&[f64::NAN, 0.2, 0.1], 2), vec![1, 2]);
    }

    /// A channel whose change is exactly the mask scores 0 and is chosen; noise is not.
    #[test]
    fn channel_matching_the_mask_wins() {
        let masks = Tensor::zeros([2, 1, 8, 8], (Kind::Float, Device::Cpu));
        let _ = masks.narrow(2, 0, 4).narrow(3, 0, 4).fill_(1.0);
        let clean = Tensor::zeros([2, 3, 4, 4], (Kind::Float, Device::Cpu));
        let m4 = masks.upsample_nearest2d([4, 4], None, None);
        let noise = Tensor::rand([2, 1, 4, 4], (Kind::Float, Device::Cpu));
        let inverse = 1.0 - &m4;
        let anomalous = Tensor::cat(&[noise, m4 * 2.0, inverse], 1);
        let mut s = AfsScores::new(&[3], Device::Cpu);
        s.add_batch(&[anomalous], &[clean], &masks);
        assert_eq!(s.select(&[1]), vec![vec![1]]);
        let l: Vec<f64> = Vec::try_from(&s.sums[0]).unwrap();
        assert!(l[1] < 1e-6, "{l:?}");
        assert!(l[2] > 0.9, "{l:?}");
    }
}
