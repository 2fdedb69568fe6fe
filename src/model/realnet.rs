//! The RealNet network (spec §4): AFS-selected frozen backbone features → one reconstruction UNet
//! per block → residuals → RRS + discriminator → 2-class logits. The backbone lives outside this
//! struct (it is frozen, shared, and its weights come from their own file).
use super::memory::PatchMemory;
use super::recon::ReconUnet;
use super::rrs::Rrs;
use crate::config::ModelConfig;
use crate::precision::Precision;
use tch::{nn, Kind, Tensor};

/// The var-store path of the AFS indices (`afs.<block>`), stored as floats.
const AFS_VARS: &str = "afs";

/// Casts RealNet's networks in `vs` to `precision` for inference; the AFS indices stay f32 (bf16
/// holds integers exactly only up to 256).
pub fn cast_networks(vs: &nn::VarStore, precision: Precision) {
    precision.cast_vars(vs, &[AFS_VARS]);
}

#[derive(Debug)]
pub struct RealNet {
    /// AFS indices per block, kept in the VarStore (as non-trainable f32) so they travel with the model.
    afs: Vec<Tensor>,
    /// Per-block feature scale, 1 / RMS of the clean training features (set once after AFS): keeps
    /// the reconstruction loss near 1 whatever the backbone's feature magnitudes (WRN features are
    /// O(1); EfficientNet-Lite block outputs are unbounded projections with MSE in the hundreds, which
    /// drowns the segmentation loss).
    scale: Vec<Tensor>,
    recon: Vec<ReconUnet>,
    rrs: Rrs,
    image_size: i64,
    /// The patch memory fused into the map (beyond the paper; `model.memory`), once built.
    memory: Option<PatchMemory>,
}

/// What one forward pass produces.
#[derive(Debug)]
pub struct Output {
    /// G_k(F_k), one per block.
    pub recon: Vec<Tensor>,
    /// N×2×S×S segmentation logits.
    pub logits: Tensor,
}

impl RealNet {
    /// Builds the trainable network under `p` (AFS indices start as 0..keep).
    pub fn new(p: &nn::Path, cfg: &crate::config::Config) -> Self {
        let m: &ModelConfig = &cfg.model;
        let afs = m
            .afs_keep
            .iter()
            .enumerate()
            .map(|(k, &keep)| {
                let t = (p / AFS_VARS).zeros_no_train(&k.to_string(), &[keep]);
                let mut dst = t.shallow_clone();
                tch::no_grad(|| {
                    dst.copy_(&Tensor::arange(keep, (Kind::Float, t.device())));
                });
                t
            })
            .collect();
        let scale = (0..m.afs_keep.len())
            .map(|k| {
                let t = (p / "feat_scale").zeros_no_train(&k.to_string(), &[1]);
                let _ = tch::no_grad(|| t.shallow_clone().fill_(1.0));
                t
            })
            .collect();
        let recon = cfg
            .recon_configs()
            .iter()
            .enumerate()
            .map(|(k, rc)| ReconUnet::new(p / "recon" / k, rc))
            .collect();
        let total: i64 = m.afs_keep.iter().sum();
        Self {
            afs,
            scale,
            recon,
            rrs: Rrs::new(p / "rrs", total, &m.rrs),
            image_size: m.image_size,
            memory: None,
        }
    }

    /// Stores the AFS selection (spec §4.3), one ascending index list per block.
    pub fn set_afs(&self, indices: &[Vec<i64>]) {
        tch::no_grad(|| {
            for (t, idx) in self.afs.iter().zip(indices) {
                let v: Vec<f32> = idx.iter().map(|&i| i as f32).collect();
                let mut dst = t.shallow_clone();
                dst.copy_(&Tensor::from_slice(&v).to_device(t.device()));
            }
        })
    }

    pub fn afs_indices(&self) -> Vec<Vec<i64>> {
        self.afs
            .iter()
            .map(|t| {
                Vec::<f32>::try_from(t.to_device(tch::Device::Cpu))
                    .unwrap_or_default()
                    .into_iter()
                    .map(|v| v as i64)
                    .collect()
            })
            .collect()
    }

    /// F_k: the AFS-selected channels of each backbone block, scaled.
    pub fn select(&self, features: &[Tensor]) -> Vec<Tensor> {
        features
            .iter()
            .zip(&self.afs)
            .zip(&self.scale)
            .map(|((f, idx), s)| f.index_select(1, &idx.to_kind(Kind::Int64)) * s)
            .collect()
    }

    /// Multiplies each block's feature scale by `factor[k]`.
    pub fn rescale(&self, factor: &[f64]) {
        tch::no_grad(|| {
            for (s, f) in self.scale.iter().zip(factor) {
                let _ = s.shallow_clone().g_mul_scalar_(*f);
            }
        })
    }

    /// Reconstruction, residuals E_k = (F_k − G_k(F_k))², RRS and the discriminator.
    pub fn forward_t(&self, selected: &[Tensor], train: bool) -> Output {
        let (recon, residuals) = self.reconstruct(selected);
        let logits = self.rrs.forward_t(&residuals, self.image_size, train);
        Output { recon, logits }
    }

    /// The reconstructions G_k(F_k) and the residuals E_k = (F_k − G_k(F_k))².
    pub fn reconstruct(&self, selected: &[Tensor]) -> (Vec<Tensor>, Vec<Tensor>) {
        let recon: Vec<Tensor> = self
            .recon
            .iter()
            .zip(selected)
            .map(|(g, f)| g.forward(f))
            .collect();
        let residuals = selected
            .iter()
            .zip(&recon)
            .map(|(f, r)| (f - r).square())
            .collect();
        (recon, residuals)
    }

    /// One training step's forward and backward (spec §4.6) in `precision`: `selected` are the
    /// anomalous batch's AFS features, `clean_selected` the clean images' (the MSE targets),
    /// `masks` N×1×S×S. Returns the losses and the gradients of `params` (the trainable
    /// variables of `vs`, in their order; undefined where one got none). In bf16 the pass runs
    /// on bf16 copies of the weights and features and the loss is taken in f32; the gradients
    /// are bf16 and the f32 weights are untouched (the optimiser casts).
    pub fn forward_backward(
        &self,
        vs: &nn::VarStore,
        params: &[Tensor],
        selected: &[Tensor],
        masks: &Tensor,
        clean_selected: &[Tensor],
        precision: Precision,
    ) -> (Losses, Vec<Tensor>) {
        let _weights = precision.compute_weights(vs);
        let feats: Vec<Tensor> = selected.iter().map(|f| precision.cast(f)).collect();
        let out = self.forward_t(&feats, true);
        let (loss, ce, mse) = loss(&out, masks, clean_selected);
        let grads = Tensor::run_backward(&[&loss], params, false, false);
        let losses = Losses {
            total: loss.double_value(&[]),
            ce: ce.double_value(&[]),
            mse: mse.double_value(&[]),
        };
        (losses, grads)
    }
}

/// One step's losses, read back to the host.
#[derive(Debug, Clone, Copy)]
pub struct Losses {
    pub total: f64,
    pub ce: f64,
    pub mse: f64,
}

impl RealNet {
    /// From now on every map is fused with `memory`'s.
    pub fn set_memory(&mut self, memory: PatchMemory) {
        self.memory = Some(memory);
    }

    pub fn memory(&self) -> Option<&PatchMemory> {
        self.memory.as_ref()
    }

    /// Eval-mode anomaly maps (N×S×S) and image scores (N) of the normalised batch `x`, whose
    /// frozen features `backbone` gives: the one inference computation, shared by validation,
    /// `test`, `predict` and `serve`.
    pub fn maps_and_scores(
        &self,
        x: &Tensor,
        backbone: &dyn Fn(&Tensor) -> Vec<Tensor>,
        pool: i64,
    ) -> (Tensor, Tensor) {
        tch::no_grad(|| {
            let (p, q) = self.component_maps(x, backbone);
            let (maps, scored) = match (&self.memory, q) {
                (Some(m), Some(q)) => {
                    let maps = m.fuse(&p, &q);
                    let scored = m.image_map(&p, &q, &maps);
                    (maps, scored)
                }
                _ => (p.shallow_clone(), p),
            };
            let scores = image_scores(&scored, pool);
            (maps, scores)
        })
    }

    /// The unfused parts of the map: RealNet's own probability map and, with a memory, its
    /// distance map (both N×S×S) — what choosing the fusion weight needs.
    pub fn component_maps(
        &self,
        x: &Tensor,
        backbone: &dyn Fn(&Tensor) -> Vec<Tensor>,
    ) -> (Tensor, Option<Tensor>) {
        let (p, grid) = self.component_parts(x, backbone);
        let size = p.size()[1];
        let q = self
            .memory
            .as_ref()
            .zip(grid)
            .map(|(m, g)| m.maps_from_grid(&g, size, m.blur_sigma()));
        (p, q)
    }

    /// RealNet's map (N×S×S) and, with a memory, its distances at the patch grid
    /// (`PatchMemory::distance_grid`), before upsampling and blur.
    pub fn component_parts(
        &self,
        x: &Tensor,
        backbone: &dyn Fn(&Tensor) -> Vec<Tensor>,
    ) -> (Tensor, Option<Tensor>) {
        tch::no_grad(|| {
            let features = backbone(x);
            let out = self.forward_t(&self.select(&features), false);
            let p = anomaly_map(&out.logits);
            let grid = self
                .memory
                .as_ref()
                .map(|m| m.distance_grid(&features, x, backbone));
            (p, grid)
        })
    }

    pub fn memory_mut(&mut self) -> Option<&mut PatchMemory> {
        self.memory.as_mut()
    }
}

/// The anomaly map: softmax probability of the anomalous class, N×S×S.
pub fn anomaly_map(logits: &Tensor) -> Tensor {
    logits.softmax(1, Kind::Float).select(1, 1)
}

/// Image score (spec §4.8): maximum of the map mean-pooled with a k×k window, stride 1, no padding.
/// The box mean is separable, and each 1-D pass is a difference of running sums (one add per pixel
/// instead of k): libtorch's stride-1 average pool sums every window anew, which took 3 ms per
/// 256² map at one thread (≈ 1.3 % of small-config inference; the running sums 0.9 ms). The sums
/// run in f64, so the result equals the pooled mean to f32 rounding. A window larger than the map
/// is the whole map.
pub fn image_scores(maps: &Tensor, k: i64) -> Tensor {
    let k = k.min(maps.size()[1]).min(maps.size()[2]).max(1);
    let box_sum = |t: Tensor, dim: i64| {
        let n = t.size()[dim as usize];
        let c = t.cumsum(dim, Kind::Double);
        let z = Tensor::cat(&[c.narrow(dim, 0, 1).zeros_like(), c], dim);
        z.narrow(dim, k, n - k + 1) - z.narrow(dim, 0, n - k + 1)
    };
    (box_sum(box_sum(maps.shallow_clone(), 1), 2) / (k * k) as f64)
        .amax([1, 2], false)
        .to_kind(maps.kind())
}

/// L = CE(logits, mask) + Σ_k MSE(G_k(F_k), F_k^clean) (spec §4.6), in f32 whatever the
/// networks ran in (the clean targets are f32: the backbone always is). Returns (total, ce, mse).
pub fn loss(out: &Output, masks: &Tensor, clean_selected: &[Tensor]) -> (Tensor, Tensor, Tensor) {
    let target = masks.squeeze_dim(1).to_kind(Kind::Int64);
    let ce = out
        .logits
        .to_kind(Kind::Float)
        .cross_entropy_loss::<Tensor>(&target, None, tch::Reduction::Mean, -100, 0.0);
    let mse = out
        .recon
        .iter()
        .zip(clean_selected)
        .map(|(r, c)| r.to_kind(Kind::Float).mse_loss(c, tch::Reduction::Mean))
        .fold(Tensor::zeros([], (Kind::Float, ce.device())), |a, b| a + b);
    (&ce + &mse, ce, mse)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Device;

    #[test]
    fn image_score_is_max_of_box_filtered_map() {
        let m = Tensor::zeros([1, 8, 8], (Kind::Float, Device::Cpu));
        let _ = m.narrow(1, 0, 2).narrow(2, 0, 2).fill_(1.0);
        // 4×4 windows: the best one covers the 2×2 block → 4/16.
        let s = image_scores(&m, 4).double_value(&[0]);
        assert!((s - 0.25).abs() < 1e-6, "{s}");
    }

    /// The two 1-D passes give the k×k box mean of every window, not only of the best one.
    #[test]
    fn separable_pool_equals_square_pool() {
        tch::manual_seed(3);
        let m = Tensor::rand([2, 40, 40], (Kind::Float, Device::Cpu));
        let square = m
            .unsqueeze(1)
            .avg_pool2d([16, 16], [1, 1], [0, 0], false, true, None::<i64>)
            .amax([1, 2, 3], false);
        let diff = (image_scores(&m, 16) - square)
            .abs()
            .max()
            .double_value(&[]);
        assert!(diff < 1e-6, "{diff}");
    }

    /// A window as large as the map, or larger, scores the map's mean.
    #[test]
    fn whole_map_window_is_the_mean() {
        tch::manual_seed(4);
        let m = Tensor::rand([3, 20, 20], (Kind::Float, Device::Cpu));
        let mean = m.mean_dim(&[1i64, 2][..], false, Kind::Float);
        for k in [20, 64] {
            let diff = (image_scores(&m, k) - &mean).abs().max().double_value(&[]);
            assert!(diff < 1e-6, "k {k}: {diff}");
        }
    }

    /// The paper preset's trainable parameters: 524,108,822 (spec §4.9, PyTorch reference).
    #[test]
    fn paper_trainable_parameters() {
        let vs = nn::VarStore::new(Device::Cpu);
        let _ = RealNet::new(&vs.root(), &crate::config::Config::paper());
        let n: i64 = vs
            .trainable_variables()
            .iter()
            .map(|t| t.numel() as i64)
            .sum();
        assert_eq!(n, 524_108_822);
    }

    /// A bf16 training pass (mixed precision) gives the f32 pass's loss and gradients to within
    /// bf16's rounding, returns bf16 gradients, and leaves the weights f32 and unchanged.
    #[test]
    fn bf16_training_pass_follows_the_f32_pass() {
        let mut cfg = crate::config::Config::lite();
        cfg.model.image_size = 128;
        cfg.model.afs_keep = vec![8, 8, 8, 8];
        cfg.model.rrs.top_max = 8;
        cfg.model.rrs.top_mean = 8;
        tch::manual_seed(0);
        let vs = nn::VarStore::new(Device::Cpu);
        let net = RealNet::new(&vs.root(), &cfg);
        let randn = |s: &[i64]| Tensor::randn(s, (Kind::Float, Device::Cpu));
        let feats: Vec<Tensor> = [32, 16, 8, 4]
            .iter()
            .map(|&s| randn(&[2, 8, s, s]))
            .collect();
        let clean: Vec<Tensor> = feats.iter().map(|f| f + randn(&f.size()) * 0.3).collect();
        let masks = Tensor::zeros([2, 1, 128, 128], (Kind::Float, Device::Cpu));
        let _ = masks.narrow(2, 32, 48).narrow(3, 40, 40).fill_(1.0);
        let params = vs.trainable_variables();
        let before: Vec<Tensor> = params.iter().map(Tensor::copy).collect();
        let pass = |p| net.forward_backward(&vs, &params, &feats, &masks, &clean, p);
        let (l32, g32) = pass(Precision::F32);
        let (l16, g16) = pass(Precision::Bf16);
        for (p, b) in params.iter().zip(&before) {
            assert_eq!(p.kind(), Kind::Float);
            assert!(p.equal(b));
        }
        assert!(
            (l16.total - l32.total).abs() < 0.01 * l32.total,
            "{l16:?} vs {l32:?}"
        );
        let flat = |g: &[Tensor]| {
            Tensor::cat(
                &g.iter()
                    .filter(|t| t.defined())
                    .map(|t| t.to_kind(Kind::Float).flatten(0, -1))
                    .collect::<Vec<_>>(),
                0,
            )
        };
        let kinds: Vec<Kind> = g16
            .iter()
            .filter(|t| t.defined())
            .map(Tensor::kind)
            .collect();
        let f32_grads = kinds.iter().filter(|&&k| k == Kind::Float).count();
        assert_eq!(
            f32_grads, 2,
            "only the discriminator's BatchNorm weight and bias stay f32"
        );
        assert!(
            kinds.len() > 20
                && kinds
                    .iter()
                    .all(|&k| k == Kind::Float || k == Kind::BFloat16)
        );
        let (a, b) = (flat(&g32), flat(&g16));
        let rel = (&b - &a).norm().double_value(&[]) / a.norm().double_value(&[]);
        assert!(a.norm().double_value(&[]) > 0.0);
        eprintln!("loss {l32:?} / {l16:?}, relative gradient difference {rel}");
        assert!(rel < 0.05, "relative gradient difference {rel}");
    }
}
