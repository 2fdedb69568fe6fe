//! Self-attention over the H·W positions of a feature map, as guided-diffusion's `AttentionBlock`
//! with the *legacy* head split (spec §2.3), used by the reconstruction UNets (spec §4.4) and SDAS.
use super::layers;
use tch::{nn, nn::Module, Tensor};

#[derive(Debug)]
pub struct AttentionBlock {
    pub(crate) norm: nn::GroupNorm,
    qkv: nn::Conv1D,
    proj_out: nn::Conv1D,
    heads: i64,
}

/// How many heads `channels` split into with heads of `head_channels` (at least one).
pub fn heads(channels: i64, head_channels: i64) -> i64 {
    (channels / head_channels.max(1)).max(1)
}

/// Checks that `channels` split evenly into heads of `head_channels` (what the configurations'
/// `validate` ask of every attention block, so that a bad width is refused instead of failing in
/// the forward pass).
pub fn check_heads(channels: i64, head_channels: i64) -> Result<(), String> {
    if head_channels < 1 {
        return Err(format!("head width {head_channels} must be ≥ 1"));
    }
    let h = heads(channels, head_channels);
    if channels % h != 0 {
        return Err(format!(
            "attention over {channels} channels with heads of {head_channels} gives {h} heads, \
             which do not divide {channels}; use a head width that divides {channels}"
        ));
    }
    Ok(())
}

impl AttentionBlock {
    /// `channels` split into heads of `head_channels` (at least one head); its GroupNorm with
    /// ≥ `min_per_group` channels per group (1 = the official rule).
    pub fn new(p: nn::Path, channels: i64, head_channels: i64, min_per_group: i64) -> Self {
        let heads = heads(channels, head_channels);
        let qkv_cfg = nn::ConvConfig {
            ws_init: layers::TORCH_DEFAULT_W,
            bs_init: layers::torch_default_bias(channels),
            ..Default::default()
        };
        let zero = nn::ConvConfig {
            ws_init: nn::Init::Const(0.0),
            bs_init: nn::Init::Const(0.0),
            ..Default::default()
        };
        Self {
            norm: layers::group_norm(&p / "norm", channels, min_per_group),
            qkv: nn::conv1d(&p / "qkv", channels, 3 * channels, 1, qkv_cfg),
            proj_out: nn::conv1d(&p / "proj_out", channels, channels, 1, zero),
            heads,
        }
    }

    pub fn forward(&self, x: &Tensor) -> Tensor {
        let (b, c, h, w) = x.size4().expect("attention input is N×C×H×W");
        let t = h * w;
        let xf = x.reshape([b, c, t]);
        let qkv = self.qkv.forward(&self.norm.forward(&xf));
        let ch = c / self.heads;
        // Legacy order: each head's q, k, v are consecutive ch-slices of its own 3·ch group.
        let qkv = qkv.reshape([b * self.heads, 3 * ch, t]);
        let parts = qkv.split(ch, 1);
        let scale = 1.0 / (ch as f64).sqrt().sqrt();
        let q = &parts[0] * scale;
        let k = &parts[1] * scale;
        // aᵀ = W·vᵀ rather than a = v·Wᵀ: the backward then gives ∂W contiguous, where the other
        // order hands softmax's backward a transposed (bh, t, t) gradient that it first copies
        // (at 1024 positions that copy was a fifth of the block's forward + backward).
        let weight = q.transpose(1, 2).bmm(&k).softmax(-1, q.kind()); // (bh, t_query, t_key)
        let a = weight.bmm(&parts[2].transpose(1, 2)).transpose(1, 2); // (bh, ch, t_query)
        let out = self.proj_out.forward(&a.reshape([b, c, t]));
        (xf + out).reshape([b, c, h, w])
    }
}
