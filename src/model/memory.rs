//! Patch memory — beyond the paper: a PatchCore-style bank of the frozen backbone's normal patch
//! features, fused with RealNet's map.
//!
//! RealNet's discriminator reads reconstruction residuals and misses what a residual does not show
//! (a whole region recoloured: bottle's contamination); a nearest-neighbour distance to normal
//! patches misses what it shows weakly but is sharp where the discriminator is vague. Their errors
//! differ, so a weighted mean of the two log maps, each standardised on normal pixels, beats both
//! (bottle, docs/results.md). Everything here is computed from the same frozen backbone pass the
//! detector already makes.
//!
//! Patch features as PatchCore: strides 8 and 16, 3×3 average pooled, the stride-16 map upsampled
//! (bilinear) and concatenated. The bank is a greedy k-center coreset of the training images'
//! patches (selected on a seeded random projection); a patch's score is its Euclidean distance to
//! the nearest bank row, the map is upsampled to the image size and Gaussian blurred.
use serde::{Deserialize, Serialize};
use tch::{Device, Kind, Tensor};

/// `model.memory` in the configuration. Configs saved before the key load as disabled.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MemoryConfig {
    pub enabled: bool,
    /// Share of the training patches the greedy coreset keeps.
    pub coreset: f64,
    /// RealNet's share w of the fused map (1: RealNet alone, 0: the memory alone; see [`fuse`]:
    /// both log maps standardised on held-out normal pixels, so ½ weighs them equally).
    /// With `auto_weight` it only breaks ties between equally good candidates.
    pub weight: f64,
    /// Choose the weight on the validation data (held-out normal images and synthetic anomalies
    /// on them) from 0, 0.1, …, 1 instead of using `weight`. Configs saved before the key: off.
    #[serde(default)]
    pub auto_weight: bool,
    /// σ (pixels at the network size) of the Gaussian blur of the distance map; 0 = none.
    /// With `blur_choices` the prior that breaks ties.
    pub blur_sigma: f64,
    /// σ values validation may choose the blur from instead: each σ at its best weight (every
    /// candidate weight with `auto_weight`, else `weight`), by the weight's merit. Empty: always
    /// `blur_sigma`. Configs saved before the key load as empty.
    #[serde(default)]
    pub blur_choices: Vec<f64>,
    /// Dimension of the random projection the coreset is selected on.
    pub projection: i64,
    /// Patches per chunk of the coreset selection: the rows (in image order) are cut into equal
    /// consecutive chunks of at most this many and each keeps `coreset` of its own rows, which
    /// costs 1/K of one greedy pass over all K·chunk rows. 0: one chunk, the exact global selection
    /// (configs saved before the key). Meant for large shares: at 10 % the chunked bank scored as
    /// the global one, at 1 % its few centres per chunk cost 0.01–0.02 AUROC (docs/results.md).
    #[serde(default)]
    pub coreset_chunk: i64,
    /// Score on a grid twice as fine in each direction (stride 4 instead of 8): the image embedded
    /// four more times, shifted by ±2 px, and the four distance grids interleaved ([`interleave`])
    /// from the same bank. Costs four backbone passes and searches per image instead of one; on
    /// Magnetic Tile every metric of the memory rose, AUPRO most (docs/results.md). Test time only:
    /// the bank is unchanged. Configs saved before the key: off.
    #[serde(default)]
    pub subgrid: bool,
}

impl Default for MemoryConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            coreset: 0.01,
            weight: 0.5,
            auto_weight: false,
            blur_sigma: 4.0,
            blur_choices: Vec::new(),
            projection: 128,
            coreset_chunk: 0,
            subgrid: false,
        }
    }
}

impl MemoryConfig {
    pub fn validate(&self) -> Result<(), String> {
        use crate::config::range_check;
        let (c, w, b) = (self.coreset, self.weight, self.blur_sigma);
        range_check("model.memory.coreset", c, c > 0.0 && c <= 1.0, "(0, 1]")?;
        range_check("model.memory.weight", w, (0.0..=1.0).contains(&w), "[0, 1]")?;
        for b in std::iter::once(b).chain(self.blur_choices.iter().copied()) {
            range_check(
                "model.memory.blur_sigma / blur_choices",
                b,
                (0.0..=MAX_BLUR).contains(&b),
                &format!("[0, {MAX_BLUR}]"),
            )?;
        }
        if self.projection < 1 {
            return Err("model.memory.projection must be ≥ 1".into());
        }
        if self.coreset_chunk < 0 {
            return Err("model.memory.coreset_chunk must be ≥ 0 (0: one chunk)".into());
        }
        Ok(())
    }
}

/// Tensor names in `model.safetensors`.
pub const BANK: &str = "memory.bank";
pub const SCALE: &str = "memory.scale";
/// The fusion weight in use (the chosen one with `auto_weight`); models saved before it have the
/// config's.
pub const WEIGHT: &str = "memory.weight";
/// The fusion's [`Balance`] (μ_p, σ_p, μ_q, σ_q); models saved before it fuse unstandardised.
pub const BALANCE: &str = "memory.balance";
/// The weight of the map the image score is taken from; models saved before it use `WEIGHT`.
pub const IMAGE_WEIGHT: &str = "memory.image_weight";
/// The blur σ in use (the chosen one with `blur_choices`); models saved before it use the config's.
pub const BLUR: &str = "memory.blur_sigma";
/// The widest blur σ accepted (config, model file, `calibrate --blur-choices`).
pub const MAX_BLUR: f64 = 64.0;

/// The bank and the distance that counts as typical for a normal patch (the map's unit).
#[derive(Debug)]
pub struct PatchMemory {
    bank: Tensor,
    scale: f64,
    weight: f64,
    /// The weight of the map the image score is taken from (see `calibration::choose_image_score`).
    image_weight: f64,
    balance: Balance,
    blur_sigma: f64,
    /// [`MemoryConfig::subgrid`].
    subgrid: bool,
}

/// D of [`embed`]'s patches for a backbone whose four blocks have `channels`.
pub fn patch_dim(channels: [i64; 4]) -> i64 {
    channels[1] + channels[2]
}

/// Locally aware patch features N×D×h×w from the backbone's four blocks (strides 4, 8, 16, 32).
pub fn embed(features: &[Tensor]) -> Tensor {
    // In f32 whatever the network's precision: the bank and the search are f32.
    let pool = |t: &Tensor| {
        t.to_kind(Kind::Float)
            .avg_pool2d([3, 3], [1, 1], [1, 1], false, true, None::<i64>)
    };
    let f8 = pool(&features[1]);
    let (h, w) = (f8.size()[2], f8.size()[3]);
    let f16 = pool(&features[2]).upsample_bilinear2d([h, w], false, None, None);
    Tensor::cat(&[f8, f16], 1)
}

/// N×D×h×w → (N·h·w)×D, one row per patch.
pub fn rows(e: &Tensor) -> Tensor {
    let d = e.size()[1];
    e.permute([0, 2, 3, 1]).reshape([-1, d])
}

/// The shifts (dy, dx) in pixels of [`MemoryConfig::subgrid`], in [`interleave`]'s order. A patch
/// of the stride-8 grid centred at 8i + 4 in the image shifted by dy is centred at 8i + 4 + dy in
/// the image, the centre 4k + 2 of the stride-4 cell k = 2i + (dy + 2) / 4.
pub const SUBGRID_SHIFTS: [(i64, i64); 4] = [(-2, -2), (-2, 2), (2, -2), (2, 2)];

/// `x` (N×C×H×W) moved so that pixel (u, v) of the result is x[u + dy, v + dx], borders
/// replicated (|dy|, |dx| < H, W).
pub fn shift(x: &Tensor, dy: i64, dx: i64) -> Tensor {
    let p = dy.abs().max(dx.abs());
    if p == 0 {
        return x.shallow_clone();
    }
    let (h, w) = (x.size()[2], x.size()[3]);
    x.replication_pad2d([p, p, p, p])
        .narrow(2, p + dy, h)
        .narrow(3, p + dx, w)
}

/// The grids N×C×h×w of the four [`SUBGRID_SHIFTS`] (in that order) as one N×C×2h×2w grid: cell
/// (2i + a, 2j + b) is cell (i, j) of grid 2a + b.
pub fn interleave(grids: &[Tensor]) -> Tensor {
    let s = grids[0].size();
    let (n, c, h, w) = (s[0], s[1], s[2], s[3]);
    // Columns first (b alternates along a row), then rows (a alternates down the grid).
    let rows: Vec<Tensor> = grids
        .chunks(2)
        .map(|pair| Tensor::stack(pair, 4).reshape([n, c, h, 2 * w]))
        .collect();
    Tensor::stack(&rows, 3).reshape([n, c, 2 * h, 2 * w])
}

/// Distance of every row of `q` to its nearest row of `bank` (length = rows of `q`), in blocks of
/// [`search_blocks`] rows, which bound the memory whatever the sizes.
///
/// ‖q − b‖² = ‖q‖² − 2q·b + ‖b‖²: the block's minimum over b of ‖b‖² − 2q·b comes from one
/// `addmm` and one pass, and only the minima get ‖q‖² and the square root. That is what `cdist`
/// computes too (the same matrix product), less its clamp and root over every pair: one image's
/// search in the tiles' 10 % bank (1024 × 70,250 × 168) 0.42 s against cdist's 0.54–0.59 s at one
/// thread, the same metrics (docs/results.md).
pub fn nn_distance(q: &Tensor, bank: &Tensor) -> Tensor {
    let (q_rows, b_rows) = search_blocks(q.device());
    nn_distance_in_blocks(q, bank, q_rows, b_rows)
}

/// Query × bank rows per block of [`nn_distance`]. On a CPU a block of 1024 × 4096 distances
/// (16 MB) is still in cache when the minimum reads it back, where a 512 MB block goes to memory
/// and back (one thread, 4096 queries × 140,496 × 168: 5.0–5.5 s against 7.2–7.4 s; docs/performance.md).
/// On a GPU large blocks keep the device busy with few launches.
pub fn search_blocks(device: Device) -> (i64, i64) {
    match device {
        Device::Cpu => (1024, 4096),
        _ => (8192, 16384),
    }
}

fn nn_distance_in_blocks(q: &Tensor, bank: &Tensor, q_rows: i64, b_rows: i64) -> Tensor {
    let (nq, nb) = (q.size()[0], bank.size()[0]);
    if nq == 0 || nb == 0 {
        return Tensor::full([nq], f64::NAN, (Kind::Float, q.device()));
    }
    let sq = |t: &Tensor| t.square().sum_dim_intlist(1, false, Kind::Float);
    let bank_sq = sq(bank).unsqueeze(0);
    let parts: Vec<Tensor> = (0..nq)
        .step_by(q_rows as usize)
        .map(|j| {
            let qj = q.narrow(0, j, q_rows.min(nq - j));
            // −2q (exact in floating point) so that a plain addmm adds ‖b‖².
            let q2 = &qj * -2.0;
            let nearest = (0..nb)
                .step_by(b_rows as usize)
                .map(|i| {
                    let n = b_rows.min(nb - i);
                    bank_sq
                        .narrow(1, i, n)
                        .addmm(&q2, &bank.narrow(0, i, n).tr())
                        .min_dim(1, false)
                        .0
                })
                .reduce(|a, b| a.minimum(&b))
                .unwrap_or_else(|| Tensor::zeros([0], (Kind::Float, q.device())));
            // Rounding can take an exact match a hair below zero.
            (nearest + sq(&qj)).clamp_min(0.0).sqrt()
        })
        .collect();
    Tensor::cat(&parts, 0)
}

/// Greedy k-center (farthest-point) selection of `n` rows of `z`, starting at row `start`: each
/// step takes the row farthest from those chosen (first index on ties). Squared distances from
/// ‖x‖² − 2x·c + ‖c‖² cost one matrix-vector product per step.
pub fn greedy_coreset(z: &Tensor, n: usize, start: i64) -> Vec<i64> {
    let rows = z.size()[0];
    let n = n.min(rows as usize);
    if n == 0 {
        return Vec::new();
    }
    tch::no_grad(|| {
        let z = z.to_kind(Kind::Float);
        let norms = z.square().sum_dim_intlist(1i64, false, Kind::Float);
        let dist2 = |j: i64| {
            let c = z.get(j);
            (&norms - z.mv(&c) * 2.0 + norms.get(j)).clamp_min(0.0)
        };
        let mut chosen = vec![start];
        let mut min_d = dist2(start);
        while chosen.len() < n {
            let j = min_d.argmax(0, false).int64_value(&[]);
            chosen.push(j);
            min_d = min_d.minimum(&dist2(j));
        }
        chosen
    })
}

/// [`greedy_coreset`] within each of K equal consecutive chunks of at most `chunk` rows of `z`
/// (K = 1 when `chunk` is 0), keeping ⌈`share`·rows⌉ of each chunk and starting at row
/// `seed mod rows` of it; indices into `z`, chunk by chunk. One chunk is the global selection; K
/// chunks cost 1/K of it (each step scans one chunk), so a 10 % bank of Magnetic Tile's 702k
/// patches takes about what 1 % took globally. Every row stays within its own chunk's covering
/// radius, so the union covers all rows at least that well.
pub fn chunked_coreset(z: &Tensor, share: f64, chunk: i64, seed: u64) -> Vec<i64> {
    let rows = z.size()[0];
    let k = if chunk > 0 {
        (rows + chunk - 1) / chunk
    } else {
        1
    }
    .max(1);
    (0..k)
        .flat_map(|c| {
            let (a, b) = (rows * c / k, rows * (c + 1) / k);
            let len = b - a;
            if len == 0 {
                return Vec::new();
            }
            let n = ((share * len as f64).ceil() as usize).clamp(1, len as usize);
            let start = (seed % len as u64) as i64;
            greedy_coreset(&z.narrow(0, a, len), n, start)
                .into_iter()
                .map(|i| i + a)
                .collect()
        })
        .collect()
}

/// Separable Gaussian blur of N×1×H×W maps (radius 4σ, reflected borders), as PatchCore smooths.
pub fn gaussian_blur(x: &Tensor, sigma: f64) -> Tensor {
    if sigma <= 0.0 {
        return x.shallow_clone();
    }
    let h = x.size()[2].min(x.size()[3]);
    // Reflection needs a pad smaller than the side.
    let r = ((4.0 * sigma + 0.5) as i64).min(h - 1).max(0);
    let k: Vec<f32> = (-r..=r)
        .map(|t| (-0.5 * (t as f64 / sigma).powi(2)).exp() as f32)
        .collect();
    let sum: f32 = k.iter().sum();
    let k = Tensor::from_slice(&k.iter().map(|v| v / sum).collect::<Vec<_>>())
        .to_device(x.device())
        .to_kind(x.kind());
    let len = 2 * r + 1;
    let padded = x.reflection_pad2d([r, r, r, r]);
    let conv = |t: &Tensor, w: Tensor| t.conv2d(&w, None::<Tensor>, [1, 1], [0, 0], [1, 1], 1);
    let horiz = conv(&padded, k.reshape([1, 1, 1, len]));
    conv(&horiz, k.reshape([1, 1, len, 1]))
}

/// Where the two maps' logarithms sit on normal pixels: mean and standard deviation of ln p and
/// ln q over the held-out normal images. RealNet's ln p spreads over several units on normal
/// pixels while the memory's ln q spreads over a tenth of one (bottle and tiles alike), so in the
/// raw geometric mean any w > 0 lets RealNet decide the ranking; standardised, w is the share each
/// part really has.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Balance {
    pub log_p: (f64, f64),
    pub log_q: (f64, f64),
}

impl Balance {
    /// No standardisation: the plain weighted geometric mean (models saved before the balance).
    pub const IDENTITY: Balance = Balance {
        log_p: (0.0, 1.0),
        log_q: (0.0, 1.0),
    };

    /// The balance of normal pixels' values of the two maps (the same pixels, any order).
    pub fn of_normal(p: &[f64], q: &[f64]) -> Balance {
        let stats = |v: &[f64]| {
            let n = v.len().max(1) as f64;
            let logs = v.iter().map(|&x| x.max(FLOOR).ln());
            let mean = logs.clone().sum::<f64>() / n;
            let var = logs.map(|l| (l - mean).powi(2)).sum::<f64>() / n;
            // A constant map (a part that says nothing on normals) must not divide by zero.
            (mean, var.sqrt().max(1e-6))
        };
        Balance {
            log_p: stats(p),
            log_q: stats(q),
        }
    }

    fn values(&self) -> [f64; 4] {
        [self.log_p.0, self.log_p.1, self.log_q.0, self.log_q.1]
    }
}

/// Values below this count as this (ln 0 would be −∞).
const FLOOR: f64 = 1e-6;

/// The fused map: z = w·(ln p − μ_p)/σ_p + (1−w)·(ln q − μ_q)/σ_q with the [`Balance`] of normal
/// pixels, then the logistic function, which keeps the ranking and brings the map into (0, 1) for
/// the fixed overlay scale and the score normalisation. With [`Balance::IDENTITY`] this is
/// x/(1+x) of the weighted geometric mean x = p^w · q^(1−w).
pub fn fuse(p: &Tensor, q: &Tensor, weight: f64, balance: &Balance) -> Tensor {
    let part = |t: &Tensor, (mean, sd): (f64, f64), share: f64| {
        (t.clamp_min(FLOOR).log() - mean) * (share / sd)
    };
    (part(p, balance.log_p, weight) + part(q, balance.log_q, 1.0 - weight)).sigmoid()
}

/// RealNet's map fused with the memory's when there is one, else RealNet's alone.
pub fn fuse_if(p: &Tensor, q: Option<&Tensor>, weight: f64, balance: &Balance) -> Tensor {
    q.map_or_else(|| p.shallow_clone(), |q| fuse(p, q, weight, balance))
}

/// The candidates `auto_weight` tries: RealNet's share 0, 0.1, …, 1.
pub fn weight_grid() -> Vec<f64> {
    (0..=10).map(|i| f64::from(i) / 10.0).collect()
}

/// Two validation AUROCs closer than this are a tie (a few validation images are noise).
pub const WEIGHT_TIE: f64 = 0.001;

/// Index of the best candidate (value, image AUROC, pixel AUROC) by the mean of image and pixel
/// validation AUROC; among those within [`WEIGHT_TIE`] of the best, the one whose value is closest
/// to `prior` (the configured one), so that a category where both parts are perfect on synthetic
/// anomalies keeps the prior. The value is the map's weight, or the memory's blur σ (each at its
/// best weight).
pub fn choose_weight(candidates: &[(f64, f64, f64)], prior: f64) -> Option<usize> {
    let merit = |c: &(f64, f64, f64)| (c.1 + c.2) / 2.0;
    let best = candidates
        .iter()
        .map(&merit)
        .fold(f64::NEG_INFINITY, f64::max);
    (0..candidates.len())
        .filter(|&i| merit(&candidates[i]) >= best - WEIGHT_TIE)
        .min_by(|&a, &b| {
            let d = |i: usize| (candidates[i].0 - prior).abs();
            d(a).total_cmp(&d(b))
        })
}

impl PatchMemory {
    /// Builds the bank from the patch rows of the training images (P×D), seeded.
    pub fn build(patches: &Tensor, cfg: &MemoryConfig, seed: u64) -> PatchMemory {
        tch::no_grad(|| {
            let p = patches.size()[0];
            let d = patches.size()[1];
            // Seeds libtorch's global generator: called once training is over, so no later
            // draw of the run depends on it.
            tch::manual_seed((seed & 0x7fff_ffff_ffff_ffff) as i64);
            let proj = Tensor::randn([d, cfg.projection], (Kind::Float, patches.device()))
                / (cfg.projection as f64).sqrt();
            let z = patches.matmul(&proj);
            let idx = chunked_coreset(&z, cfg.coreset, cfg.coreset_chunk, seed);
            let bank = patches
                .index_select(0, &Tensor::from_slice(&idx).to_device(patches.device()))
                .contiguous();
            // The unit of the map: the mean distance of a seeded sample of training patches.
            let sample = crate::sampling::permutation(p as usize, seed ^ 0x5CA1E);
            let sample: Vec<i64> = sample.into_iter().take(8192).map(|i| i as i64).collect();
            let q =
                patches.index_select(0, &Tensor::from_slice(&sample).to_device(patches.device()));
            let scale = nn_distance(&q, &bank)
                .mean(Kind::Double)
                .double_value(&[])
                .max(1e-12);
            PatchMemory {
                bank,
                scale,
                weight: cfg.weight,
                image_weight: cfg.weight,
                balance: Balance::IDENTITY,
                blur_sigma: cfg.blur_sigma,
                subgrid: cfg.subgrid,
            }
        })
    }

    pub fn bank_size(&self) -> i64 {
        self.bank.size()[0]
    }

    /// The patches' distances N×1×h×w in units of the typical normal distance, at the patch grid:
    /// the costly part of the map, kept when several blurs are compared ([`Self::maps_from_grid`]).
    /// `features` are the `backbone`'s of the normalised batch `x`; with `subgrid` the grid is the
    /// finer one of the shifted batches' features instead (N×1×2h×2w).
    pub fn distance_grid(
        &self,
        features: &[Tensor],
        x: &Tensor,
        backbone: &dyn Fn(&Tensor) -> Vec<Tensor>,
    ) -> Tensor {
        tch::no_grad(|| {
            if !self.subgrid {
                return self.grid_of(features);
            }
            // One backbone pass and one search over the four shifted copies: larger products.
            let shifted: Vec<Tensor> = SUBGRID_SHIFTS
                .iter()
                .map(|&(dy, dx)| shift(x, dy, dx))
                .collect();
            let grids = self.grid_of(&backbone(&Tensor::cat(&shifted, 0)));
            interleave(&grids.chunk(SUBGRID_SHIFTS.len() as i64, 0))
        })
    }

    /// The distance grid of one batch's features.
    fn grid_of(&self, features: &[Tensor]) -> Tensor {
        let e = embed(features);
        let s = e.size();
        nn_distance(&rows(&e), &self.bank).reshape([s[0], 1, s[2], s[3]]) / self.scale
    }

    pub fn subgrid(&self) -> bool {
        self.subgrid
    }

    /// A [`Self::distance_grid`] as maps N×S×S: upsampled, then blurred with `sigma`.
    pub fn maps_from_grid(&self, grid: &Tensor, size: i64, sigma: f64) -> Tensor {
        tch::no_grad(|| {
            let up = grid.upsample_bilinear2d([size, size], false, None, None);
            gaussian_blur(&up, sigma).squeeze_dim(1)
        })
    }

    pub fn blur_sigma(&self) -> f64 {
        self.blur_sigma
    }

    /// Replaces the blur σ (the one chosen on validation data).
    pub fn set_blur_sigma(&mut self, sigma: f64) {
        self.blur_sigma = sigma;
    }

    pub fn weight(&self) -> f64 {
        self.weight
    }

    pub fn image_weight(&self) -> f64 {
        self.image_weight
    }

    pub fn balance(&self) -> &Balance {
        &self.balance
    }

    /// Replaces the map's and the image score's fusion weights and the balance (the ones
    /// measured on validation data).
    pub fn set_fusion(&mut self, weight: f64, image_weight: f64, balance: Balance) {
        self.weight = weight;
        self.image_weight = image_weight;
        self.balance = balance;
    }

    /// This memory's map fused with RealNet's `p`.
    pub fn fuse(&self, p: &Tensor, q: &Tensor) -> Tensor {
        fuse(p, q, self.weight, &self.balance)
    }

    /// The map the image score is taken from: fused with the image weight, or `map` itself (the
    /// fused map) when both weights are the same.
    pub fn image_map(&self, p: &Tensor, q: &Tensor, map: &Tensor) -> Tensor {
        if self.image_weight == self.weight {
            map.shallow_clone()
        } else {
            fuse(p, q, self.image_weight, &self.balance)
        }
    }

    /// The tensors saved in `model.safetensors`.
    pub fn named(&self) -> Vec<(String, Tensor)> {
        vec![
            (BANK.into(), self.bank.to_device(Device::Cpu)),
            (
                SCALE.into(),
                Tensor::from_slice(&[self.scale as f32]).to_kind(Kind::Float),
            ),
            // f64, so inference fuses with exactly the weight validation chose.
            (WEIGHT.into(), Tensor::from_slice(&[self.weight])),
            (
                IMAGE_WEIGHT.into(),
                Tensor::from_slice(&[self.image_weight]),
            ),
            (BALANCE.into(), Tensor::from_slice(&self.balance.values())),
            (BLUR.into(), Tensor::from_slice(&[self.blur_sigma])),
        ]
    }

    /// Reads the bank back; `dim` is the patch dimension the backbone gives.
    pub fn from_named(
        named: &std::collections::HashMap<String, Tensor>,
        cfg: &MemoryConfig,
        dim: i64,
        device: Device,
    ) -> Result<PatchMemory, String> {
        let bank = named
            .get(BANK)
            .ok_or_else(|| format!("missing tensor '{BANK}' (model.memory.enabled is true)"))?;
        let scale = named
            .get(SCALE)
            .ok_or_else(|| format!("missing tensor '{SCALE}' (model.memory.enabled is true)"))?;
        let s = bank.size();
        if s.len() != 2 || s[1] != dim || s[0] < 1 {
            return Err(format!(
                "'{BANK}' has shape {s:?}, the backbone's patches need [n, {dim}]"
            ));
        }
        let scale = if scale.numel() == 1 {
            scale.double_value(&[0])
        } else {
            f64::NAN
        };
        if !(scale.is_finite() && scale > 0.0) {
            return Err(format!("'{SCALE}' must be one positive number"));
        }
        // One number in [0, max]; `absent` for models saved before the tensor existed.
        let read_one = |name: &str, absent: f64, max: f64| {
            let v = match named.get(name) {
                Some(v) if v.numel() == 1 => v.double_value(&[0]),
                Some(_) => f64::NAN,
                None => absent,
            };
            if (0.0..=max).contains(&v) {
                Ok(v)
            } else {
                Err(format!("'{name}' must be one number in [0, {max}]"))
            }
        };
        let weight = read_one(WEIGHT, cfg.weight, 1.0)?;
        let image_weight = read_one(IMAGE_WEIGHT, weight, 1.0)?;
        let balance = match named.get(BALANCE) {
            None => Balance::IDENTITY,
            Some(b) => {
                let v = Vec::<f64>::try_from(b.to_kind(Kind::Double).flatten(0, -1))
                    .unwrap_or_default();
                match v[..] {
                    [mp, sp, mq, sq] if v.iter().all(|x| x.is_finite()) && sp > 0.0 && sq > 0.0 => {
                        Balance {
                            log_p: (mp, sp),
                            log_q: (mq, sq),
                        }
                    }
                    _ => {
                        return Err(format!(
                            "'{BALANCE}' must be four finite numbers (μ_p, σ_p > 0, μ_q, σ_q > 0)"
                        ))
                    }
                }
            }
        };
        let blur_sigma = read_one(BLUR, cfg.blur_sigma, MAX_BLUR)?;
        Ok(PatchMemory {
            bank: bank.to_kind(Kind::Float).to_device(device),
            scale,
            weight,
            image_weight,
            balance,
            blur_sigma,
            subgrid: cfg.subgrid,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_neighbour_distance() {
        let bank = Tensor::from_slice(&[0f32, 0., 3., 4., 10., 0.]).reshape([3, 2]);
        let q = Tensor::from_slice(&[0f32, 1., 3., 4.]).reshape([2, 2]);
        // Rows: (0,1) → 1 from (0,0); (3,4) → 0.
        assert_eq!(
            Vec::<f32>::try_from(nn_distance(&q, &bank)).unwrap(),
            [1.0, 0.0]
        );
    }

    #[test]
    fn nearest_neighbour_distance_is_the_same_across_blocks() {
        // More rows than one query block and one bank block: the blocked search must equal a
        // direct one — here cdist's pairwise mode (2), which does not expand the square. The
        // expansion's rounding is ‖q‖²·ε / d ≈ 1e-6 at these distances (≈ 0.05); a wrong block
        // would be off by the distance itself.
        tch::manual_seed(3);
        let bank = Tensor::randn([20000, 3], (Kind::Float, Device::Cpu));
        let q = Tensor::randn([9000, 3], (Kind::Float, Device::Cpu));
        let direct = Tensor::cdist(&q, &bank, 2.0, Some(2)).min_dim(1, false).0;
        assert!(direct.mean(Kind::Double).double_value(&[]) > 1e-2);
        // The CPU's blocks, the GPU's, and odd sizes that leave a remainder in both directions.
        let (gpu_q, gpu_b) = search_blocks(Device::Cuda(0));
        let searches = [
            nn_distance(&q, &bank),
            nn_distance_in_blocks(&q, &bank, gpu_q, gpu_b),
            nn_distance_in_blocks(&q, &bank, 1000, 3001),
        ];
        for found in searches {
            assert_eq!(found.size(), [9000]);
            let diff = (found - &direct).abs().max().double_value(&[]);
            assert!(diff < 1e-4, "{diff}");
        }
    }

    /// Plain farthest-point selection on host vectors: the reference the tensor version must follow.
    fn naive_coreset(z: &[Vec<f32>], n: usize, start: usize) -> Vec<i64> {
        let d2 = |a: &[f32], b: &[f32]| -> f64 {
            a.iter().zip(b).map(|(x, y)| f64::from(x - y).powi(2)).sum()
        };
        let mut chosen = vec![start];
        let mut min_d: Vec<f64> = z.iter().map(|x| d2(x, &z[start])).collect();
        while chosen.len() < n {
            let mut j = 0;
            for i in 0..z.len() {
                if min_d[i] > min_d[j] {
                    j = i;
                }
            }
            chosen.push(j);
            for i in 0..z.len() {
                min_d[i] = min_d[i].min(d2(&z[i], &z[j]));
            }
        }
        chosen.into_iter().map(|i| i as i64).collect()
    }

    /// `n` seeded random 4-d rows, as a tensor and on the host.
    fn random_rows(seed: i64, n: i64) -> (Tensor, Vec<Vec<f32>>) {
        tch::manual_seed(seed);
        let z = Tensor::randn([n, 4], (Kind::Float, Device::Cpu));
        let host = (0..n)
            .map(|i| Vec::<f32>::try_from(z.get(i)).unwrap())
            .collect();
        (z, host)
    }

    #[test]
    fn greedy_coreset_is_farthest_point_selection() {
        let (z, host) = random_rows(5, 300);
        assert_eq!(greedy_coreset(&z, 25, 7), naive_coreset(&host, 25, 7));
        // Asking for more rows than exist selects each row once.
        let all = greedy_coreset(&z.narrow(0, 0, 10), 50, 0);
        let mut sorted = all.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, (0..10).collect::<Vec<i64>>());
    }

    #[test]
    fn chunked_coreset_selects_within_each_chunk() {
        let (z, host) = random_rows(6, 301);
        // No chunking: the global selection from row seed mod rows, ⌈share·rows⌉ of them.
        assert_eq!(
            chunked_coreset(&z, 0.1, 0, 1000),
            naive_coreset(&host, 31, 1000 % 301)
        );
        assert_eq!(
            chunked_coreset(&z, 0.1, 301, 5),
            chunked_coreset(&z, 0.1, 0, 5)
        );
        // Chunks of at most 100 rows: 4 equal chunks [0, 75), [75, 150), [150, 225), [225, 301),
        // each selected on its own rows from its own start, indices offset into z.
        let got = chunked_coreset(&z, 0.1, 100, 1000);
        let mut want = Vec::new();
        for (a, b) in [(0, 75), (75, 150), (150, 225), (225, 301)] {
            let part = &host[a..b];
            let n = (0.1 * part.len() as f64).ceil() as usize;
            let sel = naive_coreset(part, n, 1000 % part.len());
            want.extend(sel.into_iter().map(|i| i + a as i64));
        }
        assert_eq!(got, want);
        assert_eq!(got.len(), 8 + 8 + 8 + 8);
    }

    /// A 1×1×H×W batch whose every pixel differs (row-major 0, 1, 2, …).
    fn ramp(h: i64, w: i64) -> Tensor {
        Tensor::arange(h * w, (Kind::Float, Device::Cpu)).reshape([1, 1, h, w])
    }

    #[test]
    fn shift_moves_pixels_and_replicates_the_border() {
        let x = ramp(5, 6);
        let at = |t: &Tensor, u: i64, v: i64| t.double_value(&[0, 0, u, v]);
        for (dy, dx) in [(2, -2), (-2, 2), (0, 1), (0, 0)] {
            let s = shift(&x, dy, dx);
            assert_eq!(s.size(), x.size());
            for u in 0..5 {
                for v in 0..6 {
                    let (su, sv) = ((u + dy).clamp(0, 4), (v + dx).clamp(0, 5));
                    assert_eq!(at(&s, u, v), at(&x, su, sv), "({dy}, {dx}) at ({u}, {v})");
                }
            }
        }
    }

    #[test]
    fn interleave_places_each_grid_on_its_own_cells() {
        // Grid g holds 100·g + its cell index, so every fine cell names its source.
        let grids: Vec<Tensor> = (0..4).map(|g| ramp(2, 3) + 100.0 * f64::from(g)).collect();
        let fine = interleave(&grids);
        assert_eq!(fine.size(), [1, 1, 4, 6]);
        for u in 0..4 {
            for v in 0..6 {
                let (g, i, j) = (2 * (u % 2) + v % 2, u / 2, v / 2);
                let want = 100 * g + 3 * i + j;
                assert_eq!(fine.double_value(&[0, 0, u, v]), want as f64, "({u}, {v})");
            }
        }
    }

    #[test]
    fn the_finer_grid_is_the_shifted_images_grids_interleaved() {
        // A "backbone" of average pools at strides 4–32: translation-equivariant like a CNN, so a
        // misplaced shift or interleave changes the cells.
        let backbone = |x: &Tensor| -> Vec<Tensor> {
            [4, 8, 16, 32]
                .iter()
                .map(|&s| x.avg_pool2d([s, s], [s, s], [0, 0], false, true, None::<i64>))
                .collect()
        };
        // Zero-mean pixels: features whose norm is not mostly a common offset, so the search's
        // ‖q‖² − 2q·b + ‖b‖² keeps its precision whatever the batch (the shifted copies are
        // searched as one batch, the reference image by image).
        tch::manual_seed(11);
        let normal = Tensor::randn([2, 3, 64, 64], (Kind::Float, Device::Cpu));
        let patches = rows(&embed(&backbone(&normal)));
        let cfg = MemoryConfig {
            enabled: true,
            coreset: 0.5,
            ..MemoryConfig::default()
        };
        let plain = PatchMemory::build(&patches, &cfg, 4);
        let fine_cfg = MemoryConfig {
            subgrid: true,
            ..cfg.clone()
        };
        let named: std::collections::HashMap<String, Tensor> = plain.named().into_iter().collect();
        let fine = PatchMemory::from_named(&named, &fine_cfg, 6, Device::Cpu).unwrap();
        assert!(fine.subgrid() && !plain.subgrid());
        // Two images: the copies of one image must not mix with the other's.
        let x = Tensor::randn([2, 3, 64, 64], (Kind::Float, Device::Cpu));
        let coarse = plain.distance_grid(&backbone(&x), &x, &backbone);
        let grid = fine.distance_grid(&backbone(&x), &x, &backbone);
        assert_eq!(
            (coarse.size(), grid.size()),
            (vec![2, 1, 8, 8], vec![2, 1, 16, 16])
        );
        // The shifted image built independently: rows and columns read at clamped indices.
        let moved = |d: i64| {
            let idx: Vec<i64> = (0..64).map(|u| (u + d).clamp(0, 63)).collect();
            Tensor::from_slice(&idx)
        };
        for &(dy, dx) in &SUBGRID_SHIFTS {
            let xs = x.index_select(2, &moved(dy)).index_select(3, &moved(dx));
            let want = plain.distance_grid(&backbone(&xs), &xs, &backbone);
            // Shifted by −2 the patch centres sit on the even fine cells, by +2 on the odd ones.
            let (a, b) = ((dy + 2) / 4, (dx + 2) / 4);
            let got = grid.slice(2, a, 16, 2).slice(3, b, 16, 2);
            let diff = (&got - &want).abs().max().double_value(&[]);
            assert!(diff < 1e-4, "shift ({dy}, {dx}): {diff}");
        }
        // The shifted grids see other patches than the plain one.
        assert!(
            (grid.slice(2, 0, 16, 2).slice(3, 0, 16, 2) - &coarse)
                .abs()
                .max()
                .double_value(&[])
                > 1e-3
        );
    }

    #[test]
    fn blur_keeps_constants_and_mass_and_spreads_a_point() {
        let c = Tensor::full([1, 1, 20, 20], 3.0, (Kind::Float, Device::Cpu));
        let diff = (gaussian_blur(&c, 2.0) - 3.0).abs().max().double_value(&[]);
        assert!(diff < 1e-5, "{diff}");
        let p = Tensor::zeros([1, 1, 41, 41], (Kind::Float, Device::Cpu));
        let _ = p.get(0).get(0).get(20).get(20).fill_(1.0);
        let b = gaussian_blur(&p, 2.0);
        // Far from the border the blur keeps the total and peaks at the point.
        assert!((b.sum(Kind::Double).double_value(&[]) - 1.0).abs() < 1e-5);
        assert_eq!(b.argmax(None, false).int64_value(&[]), 20 * 41 + 20);
        // The 1-D Gaussian's centre weight, squared: 1 / (2πσ²) up to the truncation.
        let peak = b.double_value(&[0, 0, 20, 20]);
        assert!(
            (peak - 1.0 / (2.0 * std::f64::consts::PI * 4.0)).abs() < 1e-3,
            "{peak}"
        );
    }

    #[test]
    fn fusion_is_monotone_in_both_maps_and_bounded() {
        let p = Tensor::from_slice(&[0.0f32, 0.1, 0.5, 0.5, 0.99]);
        let q = Tensor::from_slice(&[1.0f32, 1.0, 1.0, 4.0, 40.0]);
        let id = Balance::IDENTITY;
        let f = Vec::<f32>::try_from(fuse(&p, &q, 0.5, &id)).unwrap();
        assert!(f.windows(2).all(|w| w[0] < w[1]), "{f:?}");
        assert!(f.iter().all(|v| (0.0..1.0).contains(v)));
        // Unstandardised: the geometric mean before x/(1+x): √(0.5 · 4) = √2.
        let x = 2f32.sqrt();
        assert!((f[3] - x / (1.0 + x)).abs() < 1e-6);
        // Weight 1 is RealNet alone (squashed), weight 0 the memory alone.
        let r = Vec::<f32>::try_from(fuse(&p, &q, 1.0, &id)).unwrap();
        assert!((r[2] - 0.5 / 1.5).abs() < 1e-6);
        let m = Vec::<f32>::try_from(fuse(&p, &q, 0.0, &id)).unwrap();
        assert!((m[3] - 0.8).abs() < 1e-6);
        // Standardised: a pixel at both parts' normal means sits at ½, one σ above each at σ(1).
        let b = Balance {
            log_p: (0.5f64.ln(), 2.0),
            log_q: (4f64.ln(), 0.25),
        };
        let f = Vec::<f32>::try_from(fuse(&p, &q, 0.3, &b)).unwrap();
        assert!((f[3] - 0.5).abs() < 1e-6, "{f:?}");
        let one_up = fuse(
            &Tensor::from_slice(&[0.5f32 * 2f32.exp()]),
            &Tensor::from_slice(&[4f32 * 0.25f32.exp()]),
            0.3,
            &b,
        );
        let logistic_1 = 1.0 / (1.0 + (-1f64).exp());
        assert!((one_up.double_value(&[0]) - logistic_1).abs() < 1e-6);
    }

    #[test]
    fn balance_is_the_log_maps_mean_and_spread_and_makes_the_weight_scale_free() {
        let b = Balance::of_normal(&[1.0, std::f64::consts::E.powi(2)], &[0.0, 1.0]);
        assert!((b.log_p.0 - 1.0).abs() < 1e-12 && (b.log_p.1 - 1.0).abs() < 1e-12);
        // Zeros count as the floor; a constant part gets a tiny, not a zero, spread.
        assert!((b.log_q.0 - FLOOR.ln() / 2.0).abs() < 1e-9);
        assert!(Balance::of_normal(&[0.3; 4], &[2.0; 4]).log_p.1 > 0.0);
        // Whatever power or factor a part comes in, the standardised fusion is the same map: the
        // weight is each part's share in units of its own normal spread.
        // (Deterministic spread values, all above the floor even after the powers below.)
        let spread = |a: f64, b: f64, g: f64| {
            let v: Vec<f64> = (0..64)
                .map(|i| a + b * (f64::from(i) * g).fract())
                .collect();
            Tensor::from_slice(&v)
        };
        let (p, q) = (spread(0.2, 0.75, 0.618), spread(0.5, 3.0, 0.414));
        let host = |t: &Tensor| Vec::<f64>::try_from(t).unwrap();
        let base = fuse(&p, &q, 0.4, &Balance::of_normal(&host(&p), &host(&q)));
        let q3 = (&q * 7.0).pow_tensor_scalar(0.1);
        let p2 = p.pow_tensor_scalar(5.0);
        let other = fuse(&p2, &q3, 0.4, &Balance::of_normal(&host(&p2), &host(&q3)));
        let diff = (&base - &other).abs().max().double_value(&[]);
        assert!(diff < 1e-9, "{diff}");
        // Unstandardised the same change moves the map.
        let raw = (fuse(&p, &q, 0.4, &Balance::IDENTITY) - fuse(&p2, &q3, 0.4, &Balance::IDENTITY))
            .abs()
            .max()
            .double_value(&[]);
        assert!(raw > 0.01, "{raw}");
    }

    #[test]
    fn weight_choice_prefers_merit_then_the_prior() {
        let grid = weight_grid();
        assert_eq!(grid.len(), 11);
        assert_eq!((grid[0], grid[5], grid[10]), (0.0, 0.5, 1.0));
        // A clear winner wins whatever the prior.
        let c = [(0.0, 0.99, 0.95), (0.5, 0.95, 0.95), (1.0, 0.90, 0.97)];
        assert_eq!(choose_weight(&c, 0.5), Some(0));
        // Within the tie band the candidate nearest the prior.
        let c = [(0.0, 0.9995, 0.99), (0.5, 0.999, 0.99), (1.0, 0.9999, 0.99)];
        assert_eq!(choose_weight(&c, 0.5), Some(1));
        assert_eq!(choose_weight(&c, 0.9), Some(2));
        assert_eq!(choose_weight(&[], 0.5), None);
        // The image score's weight looks at image AUROC alone: here 0 for the image score,
        // where the mean of both picks 1 for the map.
        let c = [
            (0.0, 0.993, 0.869),
            (0.5, 0.991, 0.915),
            (1.0, 0.954, 0.923),
        ];
        assert_eq!(choose_weight(&c, 0.5), Some(1));
        let image = |c: &[(f64, f64, f64)]| {
            let one_window: Vec<_> = c.iter().map(|&(w, img, _)| (16, w, img)).collect();
            crate::calibration::choose_image_score(&one_window, 16, 0.5)
        };
        assert_eq!(image(&c), Some(0));
        let c = [(0.0, 0.9935, 0.8), (0.5, 0.993, 0.9), (1.0, 0.9, 0.95)];
        assert_eq!(image(&c), Some(1));
        // Without a memory the map is RealNet's whatever the weight.
        let p = Tensor::from_slice(&[0.2f32, 0.7]);
        let b = Balance::IDENTITY;
        assert!(fuse_if(&p, None, 0.0, &b).equal(&p));
        let q = Tensor::from_slice(&[1f32, 3.]);
        assert!(fuse_if(&p, Some(&q), 0.3, &b).equal(&fuse(&p, &q, 0.3, &b)));
    }

    #[test]
    fn bank_round_trips_and_bad_banks_are_refused() {
        tch::manual_seed(1);
        let patches = Tensor::randn([500, 6], (Kind::Float, Device::Cpu));
        let cfg = MemoryConfig {
            enabled: true,
            coreset: 0.1,
            ..MemoryConfig::default()
        };
        let m = PatchMemory::build(&patches, &cfg, 9);
        assert_eq!(m.bank_size(), 50);
        // The same seed picks the same bank.
        let again = PatchMemory::build(&patches, &cfg, 9);
        assert!(m.bank.equal(&again.bank) && m.scale == again.scale);
        let named: std::collections::HashMap<String, Tensor> = m.named().into_iter().collect();
        let back = PatchMemory::from_named(&named, &cfg, 6, Device::Cpu).unwrap();
        assert!(back.bank.equal(&m.bank));
        assert!((back.scale - m.scale).abs() < 1e-6 * m.scale);
        let e = PatchMemory::from_named(&named, &cfg, 7, Device::Cpu).unwrap_err();
        assert!(e.contains("[n, 7]"), "{e}");
        let e = PatchMemory::from_named(&Default::default(), &cfg, 6, Device::Cpu).unwrap_err();
        assert!(e.contains("missing tensor 'memory.bank'"), "{e}");
        // A chosen weight travels in the model, overriding the config's; without it the config's.
        let mut chosen = PatchMemory::build(&patches, &cfg, 9);
        assert_eq!(chosen.balance(), &Balance::IDENTITY);
        let balance = Balance {
            log_p: (-7.1, 1.6),
            log_q: (0.12, 0.121),
        };
        chosen.set_fusion(0.2, 0.1, balance);
        let mut named: std::collections::HashMap<String, Tensor> =
            chosen.named().into_iter().collect();
        let back = PatchMemory::from_named(&named, &cfg, 6, Device::Cpu).unwrap();
        assert!(back.weight() == 0.2 && back.image_weight() == 0.1 && cfg.weight == 0.5);
        assert_eq!(back.balance(), &balance);
        // The image score's map is fused with its own weight; with equal weights it is the map.
        let (p, q) = (
            Tensor::from_slice(&[0.2f32, 0.7]),
            Tensor::from_slice(&[1f32, 3.]),
        );
        let map = back.fuse(&p, &q);
        assert!(back
            .image_map(&p, &q, &map)
            .equal(&fuse(&p, &q, 0.1, &balance)));
        assert!(!back.image_map(&p, &q, &map).equal(&map));
        let mut same = PatchMemory::build(&patches, &cfg, 9);
        same.set_fusion(0.2, 0.2, balance);
        assert!(same.image_map(&p, &q, &map).equal(&map));
        // Without an image weight (older models) the image score uses the map's weight.
        named.remove(IMAGE_WEIGHT);
        let back = PatchMemory::from_named(&named, &cfg, 6, Device::Cpu).unwrap();
        assert_eq!(back.image_weight(), 0.2);
        named.insert(IMAGE_WEIGHT.into(), Tensor::from_slice(&[-0.1f64]));
        let e = PatchMemory::from_named(&named, &cfg, 6, Device::Cpu).unwrap_err();
        assert!(e.contains("'memory.image_weight'"), "{e}");
        named.remove(IMAGE_WEIGHT);
        // Without the balance (older models) the fusion is unstandardised; a broken one is refused.
        named.remove(BALANCE);
        let back = PatchMemory::from_named(&named, &cfg, 6, Device::Cpu).unwrap();
        assert_eq!(back.balance(), &Balance::IDENTITY);
        for bad in [
            vec![0.0, 1.0, 0.0],
            vec![0.0, 0.0, 0.0, 1.0],
            vec![f64::NAN, 1.0, 0.0, 1.0],
        ] {
            named.insert(BALANCE.into(), Tensor::from_slice(&bad));
            let e = PatchMemory::from_named(&named, &cfg, 6, Device::Cpu).unwrap_err();
            assert!(e.contains("'memory.balance'"), "{e}");
        }
        named.remove(BALANCE);
        named.insert(WEIGHT.into(), Tensor::from_slice(&[1.5f32]));
        let e = PatchMemory::from_named(&named, &cfg, 6, Device::Cpu).unwrap_err();
        assert!(e.contains("'memory.weight'"), "{e}");
        named.remove(WEIGHT);
        let back = PatchMemory::from_named(&named, &cfg, 6, Device::Cpu).unwrap();
        assert_eq!(back.weight(), 0.5);
        // The blur σ in the model overrides the config's; without it (older models) the config's;
        // out of range is refused.
        assert_eq!(back.blur_sigma(), 4.0);
        named.insert(BLUR.into(), Tensor::from_slice(&[9.0f64]));
        let back = PatchMemory::from_named(&named, &cfg, 6, Device::Cpu).unwrap();
        assert!(back.blur_sigma() == 9.0 && cfg.blur_sigma == 4.0);
        named.remove(BLUR);
        assert_eq!(
            PatchMemory::from_named(&named, &cfg, 6, Device::Cpu)
                .unwrap()
                .blur_sigma(),
            4.0
        );
        named.insert(BLUR.into(), Tensor::from_slice(&[-1.0f64]));
        let e = PatchMemory::from_named(&named, &cfg, 6, Device::Cpu).unwrap_err();
        assert!(e.contains("'memory.blur_sigma'"), "{e}");
    }
}
