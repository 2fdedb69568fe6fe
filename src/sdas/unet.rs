//! The SDAS denoiser: guided-diffusion's class-conditional `UNetModel` (spec §2.3) with scale-shift
//! norm, ResBlock up/down-sampling and legacy-order attention. Variable names equal guided-diffusion's
//! state-dict names, so OpenAI's `256x256_diffusion.pt`, once converted, initialises it directly.
use crate::model::attention::AttentionBlock;
use crate::model::layers;
use crate::precision::Precision;
use serde::{Deserialize, Serialize};
use tch::{nn, nn::Module, Kind, Tensor};

/// The architecture (guided-diffusion's `create_model` arguments).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UNetConfig {
    pub image_size: i64,
    /// Base width (`model_channels`; the official yaml calls it `classifier_width`).
    pub model_channels: i64,
    pub channel_mult: Vec<i64>,
    /// Residual blocks per level in the encoder (the decoder has one more).
    pub num_res_blocks: usize,
    /// Feature-map sizes with attention, e.g. [32, 16, 8] at 256² (plus the middle block).
    pub attention_resolutions: Vec<i64>,
    pub num_head_channels: i64,
    /// Class-embedding rows (categories); 0 = unconditional.
    pub num_classes: i64,
    /// Fewest channels per GroupNorm group (guided-diffusion: 32 groups, ≥ 8 channels at its
    /// widths). Narrow presets need ≥ 4: with one channel per group the norm before the output
    /// erases each channel's mean and samples get random colour casts. Missing in configs saved
    /// before it existed = 1, their behaviour.
    #[serde(default = "crate::model::layers::official_min_group_channels")]
    pub norm_min_group_channels: i64,
}

impl UNetConfig {
    /// The paper's denoiser (≈ 552.8 M parameters with 15 classes).
    pub fn paper(num_classes: i64) -> Self {
        UNetConfig {
            image_size: 256,
            model_channels: 256,
            channel_mult: vec![1, 1, 2, 2, 4, 4],
            num_res_blocks: 2,
            attention_resolutions: vec![32, 16, 8],
            num_head_channels: 64,
            num_classes,
            norm_min_group_channels: 4,
        }
    }

    /// What trains on a 2-core CPU in tens of minutes (≈ 1.9 M parameters): 64², width 32, four
    /// levels, one residual block per level, attention at 16² and in the middle.
    pub fn lite(num_classes: i64) -> Self {
        UNetConfig {
            image_size: 64,
            model_channels: 32,
            channel_mult: vec![1, 2, 2, 2],
            num_res_blocks: 1,
            attention_resolutions: vec![16],
            num_head_channels: 32,
            num_classes,
            norm_min_group_channels: 4,
        }
    }

    pub fn validate(&self) -> Result<(), String> {
        let levels = self.channel_mult.len() as u32;
        if self.channel_mult.is_empty() || self.channel_mult.iter().any(|&m| m < 1) {
            return Err("channel_mult must list one or more positive multipliers".into());
        }
        if self.norm_min_group_channels < 1 {
            return Err("norm_min_group_channels must be ≥ 1".into());
        }
        if self.model_channels < 2 || self.num_head_channels < 1 || self.num_res_blocks < 1 {
            return Err(
                "model_channels must be ≥ 2, num_head_channels and num_res_blocks ≥ 1".into(),
            );
        }
        let down = 1i64 << (levels - 1);
        if self.image_size > crate::config::MAX_IMAGE_SIZE {
            return Err(format!(
                "image_size {} is over the limit of {}",
                self.image_size,
                crate::config::MAX_IMAGE_SIZE
            ));
        }
        if self.image_size < down || self.image_size % down != 0 {
            return Err(format!(
                "image_size {} must be a multiple of {down} ({} levels halve it {} times)",
                self.image_size,
                levels,
                levels - 1
            ));
        }
        if self.num_classes < 0 {
            return Err("num_classes must be ≥ 0".into());
        }
        // Every attention block (at attention_resolutions, and the middle one) must split its
        // channels evenly into heads.
        let mut ds = 1;
        for (level, &mult) in self.channel_mult.iter().enumerate() {
            if level + 1 == self.channel_mult.len() || self.attention_at(ds) {
                crate::model::attention::check_heads(
                    mult * self.model_channels,
                    self.num_head_channels,
                )
                .map_err(|e| format!("num_head_channels = {}: {e}", self.num_head_channels))?;
            }
            ds *= 2;
        }
        Ok(())
    }

    fn attention_at(&self, ds: i64) -> bool {
        self.attention_resolutions
            .iter()
            .any(|&r| r > 0 && self.image_size / r == ds)
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Resample {
    None,
    Down,
    Up,
}

/// ResBlock: GN→SiLU→(resample)→conv3×3, FiLM scale-shift after the second GN from the
/// embedding, SiLU, zero-initialised conv3×3, plus a skip (identity or 1×1 conv).
#[derive(Debug)]
struct ResBlock {
    in_norm: nn::GroupNorm,
    in_conv: nn::Conv2D,
    emb: nn::Linear,
    out_norm: nn::GroupNorm,
    out_conv: nn::Conv2D,
    skip: Option<nn::Conv2D>,
    resample: Resample,
}

fn linear(p: nn::Path, cin: i64, cout: i64) -> nn::Linear {
    let cfg = nn::LinearConfig {
        ws_init: layers::TORCH_DEFAULT_W,
        bs_init: Some(layers::torch_default_bias(cin)),
        bias: true,
    };
    nn::linear(p, cin, cout, cfg)
}

impl ResBlock {
    /// Boxed: a ResBlock is twice the size of the other layers.
    fn new(
        p: nn::Path,
        (cin, cout): (i64, i64),
        emb_dim: i64,
        resample: Resample,
        gmin: i64,
    ) -> Box<Self> {
        let inl = &p / "in_layers";
        let outl = &p / "out_layers";
        Box::new(ResBlock {
            in_norm: layers::group_norm(&inl / "0", cin, gmin),
            in_conv: layers::conv2d(&inl / "2", cin, cout, 3, 1, true),
            emb: linear(&p / "emb_layers" / "1", emb_dim, 2 * cout),
            out_norm: layers::group_norm(&outl / "0", cout, gmin),
            out_conv: layers::zero_conv2d(&outl / "3", cout, cout, 3),
            skip: (cin != cout)
                .then(|| layers::conv2d(&p / "skip_connection", cin, cout, 1, 1, true)),
            resample,
        })
    }

    fn forward(&self, x: &Tensor, emb: &Tensor) -> Tensor {
        let mut h = layers::group_norm_fwd(&self.in_norm, x).silu();
        let mut x = x.shallow_clone();
        match self.resample {
            Resample::None => {}
            Resample::Down => {
                h = avg_pool2(&h);
                x = avg_pool2(&x);
            }
            Resample::Up => {
                h = nearest_up2(&h);
                x = nearest_up2(&x);
            }
        }
        let h = layers::conv3x3_fwd(&self.in_conv, &h);
        let e = self.emb.forward(&emb.silu()).unsqueeze(-1).unsqueeze(-1);
        let ss = e.chunk(2, 1);
        let h = layers::group_norm_fwd(&self.out_norm, &h) * (&ss[0] + 1.0) + &ss[1];
        let h = layers::conv3x3_fwd(&self.out_conv, &h.silu());
        match &self.skip {
            Some(s) => s.forward(&x) + h,
            None => x + h,
        }
    }
}

fn avg_pool2(x: &Tensor) -> Tensor {
    x.avg_pool2d([2, 2], [2, 2], [0, 0], false, true, None::<i64>)
}

fn nearest_up2(x: &Tensor) -> Tensor {
    let s = x.size();
    x.upsample_nearest2d([s[2] * 2, s[3] * 2], Some(2.0), Some(2.0))
}

#[derive(Debug)]
enum Layer {
    Conv(nn::Conv2D),
    Res(Box<ResBlock>),
    Attn(Box<AttentionBlock>),
}

impl Layer {
    fn forward(&self, x: &Tensor, emb: &Tensor) -> Tensor {
        match self {
            Layer::Conv(c) => c.forward(x),
            Layer::Res(r) => r.forward(x, emb),
            Layer::Attn(a) => a.forward(x),
        }
    }
}

fn run(seq: &[Layer], x: &Tensor, emb: &Tensor) -> Tensor {
    let mut h = seq[0].forward(x, emb);
    for l in &seq[1..] {
        h = l.forward(&h, emb);
    }
    h
}

#[derive(Debug)]
pub struct DiffusionUNet {
    pub config: UNetConfig,
    time_embed: (nn::Linear, nn::Linear),
    label_emb: Option<nn::Embedding>,
    input_blocks: Vec<Vec<Layer>>,
    middle_block: Vec<Layer>,
    output_blocks: Vec<Vec<Layer>>,
    out_norm: nn::GroupNorm,
    out_conv: nn::Conv2D,
}

impl DiffusionUNet {
    /// Builds the network under `p` (names as guided-diffusion's state dict). 3 input channels,
    /// 6 output channels (ε̂ and the variance interpolation v).
    pub fn new(p: &nn::Path, cfg: &UNetConfig) -> Self {
        let mc = cfg.model_channels;
        let gmin = cfg.norm_min_group_channels;
        let emb_dim = 4 * mc;
        let te = p / "time_embed";
        let time_embed = (
            linear(&te / "0", mc, emb_dim),
            linear(&te / "2", emb_dim, emb_dim),
        );
        let label_emb = (cfg.num_classes > 0).then(|| {
            nn::embedding(
                p / "label_emb",
                cfg.num_classes,
                emb_dim,
                Default::default(),
            )
        });
        let ib = p / "input_blocks";
        let mut ch = cfg.channel_mult[0] * mc;
        let mut input_blocks = vec![vec![Layer::Conv(layers::conv2d(
            &ib / "0" / "0",
            3,
            ch,
            3,
            1,
            true,
        ))]];
        let mut chans = vec![ch];
        let mut ds = 1;
        let levels = cfg.channel_mult.len();
        for (level, &mult) in cfg.channel_mult.iter().enumerate() {
            for _ in 0..cfg.num_res_blocks {
                let bp = &ib / input_blocks.len();
                let mut l = vec![Layer::Res(ResBlock::new(
                    &bp / "0",
                    (ch, mult * mc),
                    emb_dim,
                    Resample::None,
                    gmin,
                ))];
                ch = mult * mc;
                if cfg.attention_at(ds) {
                    l.push(Layer::Attn(Box::new(AttentionBlock::new(
                        &bp / "1",
                        ch,
                        cfg.num_head_channels,
                        gmin,
                    ))));
                }
                input_blocks.push(l);
                chans.push(ch);
            }
            if level != levels - 1 {
                let bp = &ib / input_blocks.len();
                input_blocks.push(vec![Layer::Res(ResBlock::new(
                    &bp / "0",
                    (ch, ch),
                    emb_dim,
                    Resample::Down,
                    gmin,
                ))]);
                chans.push(ch);
                ds *= 2;
            }
        }
        let mb = p / "middle_block";
        let middle_block = vec![
            Layer::Res(ResBlock::new(
                &mb / "0",
                (ch, ch),
                emb_dim,
                Resample::None,
                gmin,
            )),
            Layer::Attn(Box::new(AttentionBlock::new(
                &mb / "1",
                ch,
                cfg.num_head_channels,
                gmin,
            ))),
            Layer::Res(ResBlock::new(
                &mb / "2",
                (ch, ch),
                emb_dim,
                Resample::None,
                gmin,
            )),
        ];
        let ob = p / "output_blocks";
        let mut output_blocks: Vec<Vec<Layer>> = Vec::new();
        for (level, &mult) in cfg.channel_mult.iter().enumerate().rev() {
            for i in 0..=cfg.num_res_blocks {
                let ich = chans.pop().unwrap_or(ch);
                let bp = &ob / output_blocks.len();
                let mut l = vec![Layer::Res(ResBlock::new(
                    &bp / "0",
                    (ch + ich, mc * mult),
                    emb_dim,
                    Resample::None,
                    gmin,
                ))];
                ch = mc * mult;
                if cfg.attention_at(ds) {
                    l.push(Layer::Attn(Box::new(AttentionBlock::new(
                        &bp / "1",
                        ch,
                        cfg.num_head_channels,
                        gmin,
                    ))));
                }
                if level > 0 && i == cfg.num_res_blocks {
                    let idx = l.len();
                    l.push(Layer::Res(ResBlock::new(
                        &bp / idx,
                        (ch, ch),
                        emb_dim,
                        Resample::Up,
                        gmin,
                    )));
                    ds /= 2;
                }
                output_blocks.push(l);
            }
        }
        DiffusionUNet {
            config: cfg.clone(),
            time_embed,
            label_emb,
            input_blocks,
            middle_block,
            output_blocks,
            out_norm: layers::group_norm(p / "out" / "0", ch, gmin),
            out_conv: layers::zero_conv2d(p / "out" / "2", ch, 6, 3),
        }
    }

    /// ε̂ and v (N×6×H×W, f32) for images `x` in [−1, 1] (f32) at timesteps `t` (int64,
    /// original scale) and class ids `y`. Computed in the precision of the weights: bf16 (channels-
    /// last) when the model was loaded in bf16 or a mixed-precision step swapped bf16 copies in.
    pub fn forward(&self, x: &Tensor, t: &Tensor, y: Option<&Tensor>) -> Tensor {
        let p = self.precision();
        let x = p.cast(x);
        let temb = p.cast(&timestep_embedding(t, self.config.model_channels));
        let mut emb = self
            .time_embed
            .1
            .forward(&self.time_embed.0.forward(&temb).silu());
        if let (Some(le), Some(y)) = (&self.label_emb, y) {
            emb += le.forward(y);
        }
        let mut hs = Vec::with_capacity(self.input_blocks.len());
        let mut h = x;
        for b in &self.input_blocks {
            h = run(b, &h, &emb);
            hs.push(h.shallow_clone());
        }
        h = run(&self.middle_block, &h, &emb);
        for b in &self.output_blocks {
            let skip = hs.pop().unwrap_or_else(|| h.zeros_like());
            h = run(b, &Tensor::cat(&[&h, &skip], 1), &emb);
        }
        self.out_conv
            .forward(&layers::group_norm_fwd(&self.out_norm, &h).silu())
            .to_kind(Kind::Float)
    }

    /// The precision the weights are in now.
    pub fn precision(&self) -> Precision {
        if self.out_conv.ws.kind() == Kind::BFloat16 {
            Precision::Bf16
        } else {
            Precision::F32
        }
    }
}

/// Sinusoidal embedding of the (original-scale) timesteps: [cos, sin] halves, max period 10000.
pub fn timestep_embedding(t: &Tensor, dim: i64) -> Tensor {
    let half = dim / 2;
    let freqs =
        (Tensor::arange(half, (Kind::Float, t.device())) * (-(10000f64.ln()) / half as f64)).exp();
    let args = t.to_kind(Kind::Float).unsqueeze(1) * freqs.unsqueeze(0);
    let mut e = Tensor::cat(&[args.cos(), args.sin()], -1);
    if dim % 2 == 1 {
        e = Tensor::cat(&[&e, &e.narrow(1, 0, 1).zeros_like()], -1);
    }
    e
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lite_and_paper_configs_are_valid() {
        assert!(UNetConfig::lite(1).validate().is_ok());
        assert!(UNetConfig::paper(15).validate().is_ok());
        let mut c = UNetConfig::lite(1);
        c.image_size = 60;
        assert!(c.validate().is_err());
    }

    #[test]
    fn lite_forward_keeps_the_shape() {
        let vs = nn::VarStore::new(tch::Device::Cpu);
        let mut cfg = UNetConfig::lite(2);
        cfg.image_size = 16;
        cfg.model_channels = 32;
        let net = DiffusionUNet::new(&vs.root(), &cfg);
        let x = Tensor::zeros([2, 3, 16, 16], (Kind::Float, tch::Device::Cpu));
        let t = Tensor::from_slice(&[0i64, 999]);
        let y = Tensor::from_slice(&[0i64, 1]);
        let out = tch::no_grad(|| net.forward(&x, &t, Some(&y)));
        assert_eq!(out.size(), vec![2, 6, 16, 16]);
        // Zero-initialised output conv: the untrained network predicts exactly 0.
        assert_eq!(out.abs().max().double_value(&[]), 0.0);
    }

    #[test]
    fn bf16_weights_give_an_f32_output_near_the_f32_ones() {
        tch::manual_seed(1);
        let vs = nn::VarStore::new(tch::Device::Cpu);
        let mut cfg = UNetConfig::lite(2);
        cfg.image_size = 16;
        cfg.channel_mult = vec![1, 2];
        let net = DiffusionUNet::new(&vs.root(), &cfg);
        // Off the zero-initialised output layers.
        tch::no_grad(|| {
            for p in vs.trainable_variables() {
                let _ = p.shallow_clone().g_add_(&(p.randn_like() * 0.05));
            }
        });
        let x = Tensor::randn([2, 3, 16, 16], (Kind::Float, tch::Device::Cpu));
        let t = Tensor::from_slice(&[3i64, 700]);
        let y = Tensor::from_slice(&[0i64, 1]);
        let run = || tch::no_grad(|| net.forward(&x, &t, Some(&y)));
        let a = run();
        assert_eq!(net.precision(), Precision::F32);
        Precision::Bf16.cast_vars(&vs, &[]);
        assert_eq!(net.precision(), Precision::Bf16);
        let b = run();
        assert_eq!((a.kind(), b.kind()), (Kind::Float, Kind::Float));
        let rel = (&b - &a).norm().double_value(&[]) / a.norm().double_value(&[]);
        assert!(
            a.norm().double_value(&[]) > 0.0 && rel > 0.0 && rel < 0.05,
            "{rel}"
        );
    }
}
