//! Self-attention over the H·W positions of a feature map, as guided-diffusion's `AttentionBlock`
//! with the *legacy* head split (spec §2.3), used by the reconstruction UNets (spec §4.4) and SDAS.
use super::layers;
use tch::{nn, nn::Module, Tensor};

#[derive(Debug)]
pub struct AttentionBlock {
    norm: nn::GroupNorm,
    qkv: nn::Conv1D,
    proj_out: nn::Conv1D,
    heads: i64,
}

impl AttentionBlock {
    /// `channels` split into heads of `head_channels` (at least one head).
    pub fn new(p: nn::Path, channels: i64, head_channels: i64) -> Self {
        let heads = (channels / head_channels.max(1)).max(1);
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
            norm: layers::group_norm(&p / "norm", channels),
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
        let weight = q.transpose(1, 2).bmm(&k).softmax(-1, q.kind()); // (bh, t_query, t_key)
        let a = parts[2].bmm(&weight.transpose(1, 2)); // (bh, ch, t_query)
        let out = self.proj_out.forward(&a.reshape([b, c, t]));
        (xf + out).reshape([b, c, h, w])
    }
}
