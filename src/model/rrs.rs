//! RRS — Reconstruction Residuals Selection — and the discriminator (spec §4.5).
//!
//! The residuals of all blocks are brought to the finest block's resolution and ranked per sample
//! by their (BatchNorm-normalised) spatial max and mean; the top channels of each ranking, taken from
//! the *raw* residuals in rank order, go to a small segmentation network that outputs 2-class logits.
use super::layers;
use serde::{Deserialize, Serialize};
use tch::{nn, nn::Module, nn::ModuleT, Tensor};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RrsConfig {
    /// Channels kept by the spatial-max ranking (official 256).
    pub top_max: i64,
    /// Channels kept by the spatial-mean ranking (official 256).
    pub top_mean: i64,
    /// Layers of the residual stack (official 2).
    pub residual_layers: usize,
    /// Width after the residual stack (official 128).
    pub hidden: i64,
}

#[derive(Debug)]
pub struct Rrs {
    /// Ranking statistics only: affine off, momentum 0.9 (official).
    rank_norm: nn::BatchNorm,
    res_stack: Vec<(nn::Conv2D, nn::Conv2D)>,
    conv1: nn::Conv2D,
    bn1: nn::BatchNorm,
    conv2: nn::Conv2D,
    conv3: nn::Conv2D,
    conv4: nn::Conv2D,
    conv5: nn::Conv2D,
    cfg: RrsConfig,
}

impl Rrs {
    /// `residual_channels` = Σ_k C_k (all blocks' residual channels).
    pub fn new(p: nn::Path, residual_channels: i64, cfg: &RrsConfig) -> Self {
        let bn_rank = nn::BatchNormConfig {
            momentum: 0.9,
            affine: false,
            ..Default::default()
        };
        let c = cfg.top_max + cfg.top_mean;
        let res_stack = (0..cfg.residual_layers)
            .map(|i| {
                let q = &p / "res_stack" / i;
                (
                    layers::conv2d(&q / "conv3", c, c, 3, 1, false),
                    layers::conv2d(&q / "conv1", c, c, 1, 1, false),
                )
            })
            .collect();
        let bn1 = nn::BatchNormConfig {
            ws_init: nn::Init::Const(1.0),
            ..Default::default()
        };
        Self {
            rank_norm: nn::batch_norm2d(&p / "rank_norm", residual_channels, bn_rank),
            res_stack,
            conv1: layers::conv2d(&p / "conv1", c, cfg.hidden, 3, 1, true),
            bn1: nn::batch_norm2d(&p / "bn1", cfg.hidden, bn1),
            conv2: layers::conv2d(&p / "conv2", cfg.hidden, 32, 3, 1, true),
            conv3: layers::conv2d(&p / "conv3", 32, 8, 3, 1, true),
            conv4: layers::conv2d(&p / "conv4", 8, 4, 3, 1, true),
            conv5: layers::conv2d(&p / "conv5", 4, 2, 3, 1, true),
            cfg: cfg.clone(),
        }
    }

    /// Residuals (one N×C_k×h_k×w_k tensor per block, finest first) → N×2×out×out logits.
    pub fn forward_t(&self, residuals: &[Tensor], out_size: i64, train: bool) -> Tensor {
        let selected = self.select(residuals, train);
        self.discriminate(&selected, out_size, train)
    }

    /// Steps 1–3 of spec §4.5: resample, rank, gather (rank order, max-ranked first).
    pub fn select(&self, residuals: &[Tensor], train: bool) -> Tensor {
        let (h, w) = {
            let s = residuals[0].size();
            (s[2], s[3])
        };
        let up: Vec<Tensor> = residuals
            .iter()
            .map(|r| {
                let s = r.size();
                if s[2] == h && s[3] == w {
                    r.shallow_clone()
                } else {
                    upsample_bilinear(r, h, w)
                }
            })
            .collect();
        let r = Tensor::cat(&up, 1);
        let (n, c) = (r.size()[0], r.size()[1]);
        // Ranking never receives gradients; only the gathered raw residuals do.
        let ranked = tch::no_grad(|| self.rank_norm.forward_t(&r.detach(), train));
        let flat_rank = ranked.reshape([n, c, h * w]);
        let by_max = flat_rank
            .amax([2], false)
            .topk(self.cfg.top_max.min(c), 1, true, true)
            .1;
        let by_mean = flat_rank
            .mean_dim(2i64, false, tch::Kind::Float)
            .topk(self.cfg.top_mean.min(c), 1, true, true)
            .1;
        let idx = Tensor::cat(&[by_max, by_mean], 1); // N×k
        let k = idx.size()[1];
        let flat = r.reshape([n, c, h * w]);
        flat.gather(1, &idx.unsqueeze(-1).expand([n, k, h * w], false), false)
            .reshape([n, k, h, w])
    }

    /// Step 4 of spec §4.5: the discriminator.
    pub fn discriminate(&self, x: &Tensor, out_size: i64, train: bool) -> Tensor {
        let mut x = x.shallow_clone();
        for (c3, c1) in &self.res_stack {
            x = &x + c1.forward(&layers::conv3x3_fwd(c3, &x.relu()).relu());
        }
        let x = x.relu();
        let x = self
            .bn1
            .forward_t(&layers::conv3x3_fwd(&self.conv1, &x), train)
            .relu();
        let x = layers::conv3x3_fwd(&self.conv2, &x).relu();
        let x = layers::conv3x3_fwd(&self.conv3, &x).relu();
        let s = x.size();
        let x = upsample_bilinear(&x, s[2] * 2, s[3] * 2);
        let x = layers::conv3x3_fwd(&self.conv4, &x).relu();
        let x = layers::conv3x3_fwd(&self.conv5, &x);
        x.upsample_bilinear2d([out_size, out_size], true, None, None)
    }
}

/// Bilinear resampling (align_corners, as the official code) of a many-channel map, done
/// channels-last: libtorch's NCHW kernel on CUDA runs one thread per output pixel looping over
/// N·C, which left the GPU idle here (paper config, H200: the RRS head took 0.69 of 1.85 ms per
/// image at batch 32 in bf16, and 16 of 36 ms at batch 1; 0.28 and 0.65 ms channels-last). On the
/// CPU the channels-last kernel is as fast or faster (small config, one thread).
fn upsample_bilinear(x: &Tensor, h: i64, w: i64) -> Tensor {
    crate::precision::channels_last(x).upsample_bilinear2d([h, w], true, None, None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{Device, Kind};

    fn paper() -> RrsConfig {
        RrsConfig {
            top_max: 256,
            top_mean: 256,
            residual_layers: 2,
            hidden: 128,
        }
    }

    #[test]
    fn channels_last_resampling_gives_the_nchw_kernel_values() {
        let x = Tensor::randn([2, 5, 4, 6], (Kind::Float, Device::Cpu));
        let want = x.upsample_bilinear2d([8, 12], true, None, None);
        let got = upsample_bilinear(&x, 8, 12);
        assert!(crate::precision::is_channels_last(&got));
        assert_eq!(got.size(), [2, 5, 8, 12]);
        let diff = f64::try_from((got - want).abs().max()).unwrap();
        assert!(diff < 1e-6, "{diff}");
    }

    /// Spec §4.9 / the PyTorch reference: 5,872,662 trainable parameters.
    #[test]
    fn paper_parameter_count() {
        let vs = nn::VarStore::new(Device::Cpu);
        let _ = Rrs::new(vs.root(), 1536, &paper());
        let n: i64 = vs
            .trainable_variables()
            .iter()
            .map(|t| t.numel() as i64)
            .sum();
        assert_eq!(n, 5_872_662);
    }

    /// The gather takes raw residual channels in rank order, max-ranked first.
    #[test]
    fn selects_raw_channels_in_rank_order() {
        let vs = nn::VarStore::new(Device::Cpu);
        let cfg = RrsConfig {
            top_max: 2,
            top_mean: 1,
            residual_layers: 1,
            hidden: 4,
        };
        let rrs = Rrs::new(vs.root(), 4, &cfg);
        // One sample, 4 channels of 2×2; eval mode with fresh running stats (mean 0, var 1) = identity ranking.
        let r = Tensor::from_slice(&[
            0.0f32, 0.0, 0.0, 1.0, // ch0: max 1, mean .25
            5.0, 0.0, 0.0, 0.0, // ch1: max 5, mean 1.25
            2.0, 2.0, 2.0, 2.0, // ch2: max 2, mean 2
            3.0, 0.0, 0.0, 0.0, // ch3: max 3, mean .75
        ])
        .reshape([1, 4, 2, 2]);
        let sel = rrs.select(&[r.shallow_clone()], false);
        let picked: Vec<f32> = Vec::try_from(sel.amax([2, 3], false).flatten(0, -1)).unwrap();
        assert_eq!(picked, vec![5.0, 3.0, 2.0]);
    }

    #[test]
    fn output_is_two_class_logits_at_out_size() {
        let vs = nn::VarStore::new(Device::Cpu);
        let cfg = RrsConfig {
            top_max: 4,
            top_mean: 4,
            residual_layers: 1,
            hidden: 8,
        };
        let rrs = Rrs::new(vs.root(), 12, &cfg);
        let r1 = Tensor::rand([2, 8, 16, 16], (Kind::Float, Device::Cpu));
        let r2 = Tensor::rand([2, 4, 8, 8], (Kind::Float, Device::Cpu));
        let y = rrs.forward_t(&[r1, r2], 64, true);
        assert_eq!(y.size(), vec![2, 2, 64, 64]);
    }
}
