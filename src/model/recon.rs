//! Reconstruction networks G_k (spec §4.4, official `ReconstructionLayer`): one UNet per feature
//! block that maps (possibly anomalous) selected features back to the features of a normal image.
//! Single-conv ResBlocks, average-pool down, transposed-conv up, attention at the configured
//! downsample factors and in the middle, zero-initialised output head (initial reconstruction = 0).
use super::attention::AttentionBlock;
use super::layers;
use serde::{Deserialize, Serialize};
use tch::{nn, nn::Module, Tensor};

/// Shape of one reconstruction UNet.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReconConfig {
    /// Input = output channels (the AFS-selected channels of the block).
    pub channels: i64,
    /// Width of the first level (official: ½ · channels).
    pub base_channels: i64,
    /// Width multiplier per level (official: 1, 2, 4).
    pub channel_mult: Vec<i64>,
    /// ResBlocks per encoder level (the decoder uses one more), official 2.
    pub num_res_blocks: usize,
    /// Downsample factors with attention after each ResBlock (official: 2, 4); the middle always has it.
    pub attention_mult: Vec<i64>,
    /// Channels per attention head (official 64).
    pub head_channels: i64,
    /// GroupNorm keeps at least this many channels per group (1 = the official rule).
    #[serde(default = "crate::model::layers::official_min_group_channels")]
    pub norm_min_group_channels: i64,
}

/// `h = conv3×3(SiLU(GN(x)))`, `out = skip(x) + h`, optionally with ×½ or ×2 resampling.
#[derive(Debug)]
struct ResBlock {
    norm: nn::GroupNorm,
    resample: Resample,
    conv: nn::Conv2D,
    skip: Skip,
}

#[derive(Debug)]
enum Resample {
    None,
    Down,
    Up(nn::ConvTranspose2D),
}

#[derive(Debug)]
enum Skip {
    Identity,
    Conv(nn::Conv2D),
    Down,
    Up(nn::ConvTranspose2D),
}

impl ResBlock {
    fn new(p: nn::Path, cin: i64, cout: i64, gmin: i64) -> Self {
        let skip = if cin == cout {
            Skip::Identity
        } else {
            Skip::Conv(layers::conv2d(
                &p / "skip_connection",
                cin,
                cout,
                1,
                1,
                true,
            ))
        };
        Self {
            norm: layers::group_norm(&p / "in_norm", cin, gmin),
            resample: Resample::None,
            conv: layers::conv2d(&p / "in_conv", cin, cout, 3, 1, true),
            skip,
        }
    }

    fn down(p: nn::Path, c: i64, gmin: i64) -> Self {
        Self {
            norm: layers::group_norm(&p / "in_norm", c, gmin),
            resample: Resample::Down,
            conv: layers::conv2d(&p / "in_conv", c, c, 3, 1, true),
            skip: Skip::Down,
        }
    }

    fn up(p: nn::Path, c: i64, gmin: i64) -> Self {
        Self {
            norm: layers::group_norm(&p / "in_norm", c, gmin),
            resample: Resample::Up(layers::up_conv(&p / "h_upd", c, c)),
            conv: layers::conv2d(&p / "in_conv", c, c, 3, 1, true),
            skip: Skip::Up(layers::up_conv(&p / "x_upd", c, c)),
        }
    }

    fn forward(&self, x: &Tensor) -> Tensor {
        let h = layers::group_norm_fwd(&self.norm, x).silu();
        let h = match &self.resample {
            Resample::None => h,
            Resample::Down => avg_pool2(&h),
            Resample::Up(up) => up.forward(&h),
        };
        let h = layers::conv3x3_fwd(&self.conv, &h);
        let skip = match &self.skip {
            Skip::Identity => x.shallow_clone(),
            Skip::Conv(c) => c.forward(x),
            Skip::Down => avg_pool2(x),
            Skip::Up(up) => up.forward(x),
        };
        skip + h
    }
}

fn avg_pool2(x: &Tensor) -> Tensor {
    x.avg_pool2d([2, 2], [2, 2], [0, 0], false, true, None::<i64>)
}

/// One UNet stage: a ResBlock with optional attention after it.
#[derive(Debug)]
struct Stage {
    res: ResBlock,
    attn: Option<AttentionBlock>,
}

impl Stage {
    fn forward(&self, x: &Tensor) -> Tensor {
        let h = self.res.forward(x);
        match &self.attn {
            Some(a) => a.forward(&h),
            None => h,
        }
    }
}

/// One reconstruction UNet G_k.
#[derive(Debug)]
pub struct ReconUnet {
    stem: nn::Conv2D,
    encoder: Vec<Stage>,
    middle: (ResBlock, AttentionBlock, ResBlock),
    decoder: Vec<Stage>,
    out_norm: nn::GroupNorm,
    out_conv: nn::Conv2D,
}

impl ReconUnet {
    pub fn new(p: nn::Path, cfg: &ReconConfig) -> Self {
        let base = cfg.base_channels;
        let gmin = cfg.norm_min_group_channels;
        let stem = layers::conv2d(&p / "stem", cfg.channels, base, 3, 1, true);
        let mut skips = vec![base];
        let mut encoder = Vec::new();
        let mut ch = base;
        let mut ds = 1;
        let levels = cfg.channel_mult.len();
        let attn_at = |ds: i64, c: i64, p: nn::Path| {
            cfg.attention_mult
                .contains(&ds)
                .then(|| AttentionBlock::new(p, c, cfg.head_channels, gmin))
        };
        for (level, mult) in cfg.channel_mult.iter().enumerate() {
            for _ in 0..cfg.num_res_blocks {
                let q = &p / "encoder" / encoder.len();
                let out = mult * base;
                let res = ResBlock::new(&q / "res", ch, out, gmin);
                encoder.push(Stage {
                    res,
                    attn: attn_at(ds, out, &q / "attn"),
                });
                ch = out;
                skips.push(ch);
            }
            if level + 1 < levels {
                let q = &p / "encoder" / encoder.len();
                encoder.push(Stage {
                    res: ResBlock::down(&q / "res", ch, gmin),
                    attn: None,
                });
                skips.push(ch);
                ds *= 2;
            }
        }
        let m = &p / "middle";
        let middle = (
            ResBlock::new(&m / "res0", ch, ch, gmin),
            AttentionBlock::new(&m / "attn", ch, cfg.head_channels, gmin),
            ResBlock::new(&m / "res1", ch, ch, gmin),
        );
        let mut decoder = Vec::new();
        for (level, mult) in cfg.channel_mult.iter().enumerate().rev() {
            for i in 0..=cfg.num_res_blocks {
                let q = &p / "decoder" / decoder.len();
                let skip_ch = skips.pop().unwrap_or(0);
                let out = mult * base;
                let res = ResBlock::new(&q / "res", ch + skip_ch, out, gmin);
                decoder.push(Stage {
                    res,
                    attn: attn_at(ds, out, &q / "attn"),
                });
                ch = out;
                if level > 0 && i == cfg.num_res_blocks {
                    let q = &p / "decoder" / decoder.len();
                    decoder.push(Stage {
                        res: ResBlock::up(&q / "res", ch, gmin),
                        attn: None,
                    });
                    ds /= 2;
                }
            }
        }
        Self {
            stem,
            encoder,
            middle,
            decoder,
            out_norm: layers::group_norm(&p / "out_norm", ch, gmin),
            out_conv: layers::zero_conv2d(&p / "out_conv", ch, cfg.channels, 3),
        }
    }

    pub fn forward(&self, x: &Tensor) -> Tensor {
        let mut h = layers::conv3x3_fwd(&self.stem, x);
        let mut skips = vec![h.shallow_clone()];
        for stage in &self.encoder {
            h = stage.forward(&h);
            skips.push(h.shallow_clone());
        }
        h = self.middle.0.forward(&h);
        h = self.middle.1.forward(&h);
        h = self.middle.2.forward(&h);
        for stage in &self.decoder {
            // Up-sampling blocks take no skip; every other decoder block concatenates one.
            if matches!(stage.res.resample, Resample::Up(_)) {
                h = stage.forward(&h);
            } else {
                let skip = skips.pop().expect("one skip per decoder ResBlock");
                h = stage.forward(&Tensor::cat(&[h, skip], 1));
            }
        }
        layers::conv3x3_fwd(
            &self.out_conv,
            &layers::group_norm_fwd(&self.out_norm, &h).silu(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn paper(c: i64) -> ReconConfig {
        ReconConfig {
            channels: c,
            base_channels: c / 2,
            channel_mult: vec![1, 2, 4],
            num_res_blocks: 2,
            attention_mult: vec![2, 4],
            head_channels: 64,
            norm_min_group_channels: 1,
        }
    }

    fn n_params(vs: &nn::VarStore) -> i64 {
        vs.trainable_variables()
            .iter()
            .map(|t| t.numel() as i64)
            .sum()
    }

    /// Spec §4.9 / the PyTorch reference: 51,846,144 (C = 256) and 207,271,936 (C = 512).
    #[test]
    fn paper_parameter_counts() {
        for (c, want) in [(256, 51_846_144), (512, 207_271_936)] {
            let vs = nn::VarStore::new(tch::Device::Cpu);
            let _ = ReconUnet::new(vs.root(), &paper(c));
            assert_eq!(n_params(&vs), want, "C = {c}");
        }
    }

    #[test]
    fn zero_head_reconstructs_zero_and_keeps_shape() {
        let vs = nn::VarStore::new(tch::Device::Cpu);
        let cfg = ReconConfig {
            channels: 8,
            base_channels: 8,
            channel_mult: vec![1, 2],
            num_res_blocks: 1,
            attention_mult: vec![2],
            head_channels: 8,
            norm_min_group_channels: 1,
        };
        let net = ReconUnet::new(vs.root(), &cfg);
        let x = Tensor::randn([2, 8, 8, 8], (tch::Kind::Float, tch::Device::Cpu));
        let y = net.forward(&x);
        assert_eq!(y.size(), vec![2, 8, 8, 8]);
        assert_eq!(y.abs().max().double_value(&[]), 0.0);
    }

    /// Lite widths (16…32): the official rule gives one channel per group; the minimum widens them
    /// everywhere, the attention blocks included, and leaves the parameter count unchanged.
    #[test]
    fn norm_min_group_channels_widens_every_group() {
        let lite = |gmin| ReconConfig {
            channels: 24,
            base_channels: 16,
            channel_mult: vec![1, 2, 4],
            num_res_blocks: 2,
            attention_mult: vec![4],
            head_channels: 64,
            norm_min_group_channels: gmin,
        };
        let vs1 = nn::VarStore::new(tch::Device::Cpu);
        let official = ReconUnet::new(vs1.root(), &lite(1));
        assert_eq!(official.out_norm.num_groups, 16);
        let vs4 = nn::VarStore::new(tch::Device::Cpu);
        let wide = ReconUnet::new(vs4.root(), &lite(4));
        assert_eq!(wide.out_norm.num_groups, 4);
        let mut norms = vec![&wide.middle.0.norm, &wide.middle.2.norm];
        norms.extend(
            wide.encoder
                .iter()
                .chain(&wide.decoder)
                .map(|s| &s.res.norm),
        );
        for n in norms {
            assert!(
                n.num_channels / n.num_groups >= 4,
                "{} / {}",
                n.num_channels,
                n.num_groups
            );
        }
        assert_eq!(official.middle.1.norm.num_groups, 32);
        assert_eq!(wide.middle.1.norm.num_groups, 16);
        assert_eq!(n_params(&vs1), n_params(&vs4));
    }
}
