//! The Gaussian diffusion process of spec §2.2 (guided-diffusion's `GaussianDiffusion` with
//! learned-range variance and ε prediction): the β schedule, respacing, q(x_t | x_0), the model's
//! mean and variance, and the hybrid training loss. Schedule arithmetic is f64 on the host, cast to
//! f32 per timestep as guided-diffusion's `_extract_into_tensor` does.
use crate::error::UserError;
use tch::{Kind, Tensor};

#[derive(Debug, Clone)]
pub struct Schedule {
    pub betas: Vec<f64>,
    pub alphas_cumprod: Vec<f64>,
    alphas_cumprod_prev: Vec<f64>,
    sqrt_alphas_cumprod: Vec<f64>,
    sqrt_one_minus_alphas_cumprod: Vec<f64>,
    sqrt_recip_alphas_cumprod: Vec<f64>,
    sqrt_recipm1_alphas_cumprod: Vec<f64>,
    pub posterior_log_variance_clipped: Vec<f64>,
    posterior_mean_coef1: Vec<f64>,
    posterior_mean_coef2: Vec<f64>,
    log_betas: Vec<f64>,
    /// Original timestep of each (respaced) index: the network is always called with these.
    pub timestep_map: Vec<i64>,
}

/// The network's prediction turned into the reverse step's Gaussian.
pub struct MeanVariance {
    pub mean: Tensor,
    pub log_variance: Tensor,
    pub pred_xstart: Tensor,
}

impl Schedule {
    /// `get_named_beta_schedule("linear", T)`: β = linspace(1e-4·1000/T, 0.02·1000/T, T).
    pub fn linear(steps: usize) -> Schedule {
        let scale = 1000.0 / steps as f64;
        let (lo, hi) = (scale * 1e-4, scale * 0.02);
        let betas = (0..steps)
            .map(|i| {
                if steps == 1 {
                    lo
                } else {
                    // numpy.linspace: start + i·step, with the last point exactly `hi`.
                    let step = (hi - lo) / (steps - 1) as f64;
                    if i == steps - 1 {
                        hi
                    } else {
                        lo + i as f64 * step
                    }
                }
            })
            .collect();
        Schedule::from_betas(betas, (0..steps as i64).collect())
    }

    fn from_betas(betas: Vec<f64>, timestep_map: Vec<i64>) -> Schedule {
        let n = betas.len();
        let mut ac = Vec::with_capacity(n);
        let mut acc = 1.0;
        for b in &betas {
            acc *= 1.0 - b;
            ac.push(acc);
        }
        let mut ac_prev = vec![1.0];
        ac_prev.extend_from_slice(&ac[..n - 1]);
        let post_var: Vec<f64> = (0..n)
            .map(|i| betas[i] * (1.0 - ac_prev[i]) / (1.0 - ac[i]))
            .collect();
        // log of β̃ with β̃_0 (= 0) replaced by β̃_1.
        let clipped = (0..n)
            .map(|i| {
                let v = if i == 0 && n > 1 {
                    post_var[1]
                } else {
                    post_var[i]
                };
                v.ln()
            })
            .collect();
        Schedule {
            alphas_cumprod_prev: ac_prev.clone(),
            sqrt_alphas_cumprod: ac.iter().map(|a| a.sqrt()).collect(),
            sqrt_one_minus_alphas_cumprod: ac.iter().map(|a| (1.0 - a).sqrt()).collect(),
            sqrt_recip_alphas_cumprod: ac.iter().map(|a| (1.0 / a).sqrt()).collect(),
            sqrt_recipm1_alphas_cumprod: ac.iter().map(|a| (1.0 / a - 1.0).sqrt()).collect(),
            posterior_log_variance_clipped: clipped,
            posterior_mean_coef1: (0..n)
                .map(|i| betas[i] * ac_prev[i].sqrt() / (1.0 - ac[i]))
                .collect(),
            posterior_mean_coef2: (0..n)
                .map(|i| (1.0 - ac_prev[i]) * (1.0 - betas[i]).sqrt() / (1.0 - ac[i]))
                .collect(),
            log_betas: betas.iter().map(|b| b.ln()).collect(),
            alphas_cumprod: ac,
            betas,
            timestep_map,
        }
    }

    pub fn len(&self) -> usize {
        self.betas.len()
    }

    pub fn is_empty(&self) -> bool {
        self.betas.is_empty()
    }

    /// The chain restricted to `keep` (sorted original timesteps): β'_k = 1 − ᾱ(τ_k)/ᾱ(τ_{k−1}).
    pub fn respaced(&self, keep: &[usize]) -> Schedule {
        let mut last = 1.0;
        let mut betas = Vec::with_capacity(keep.len());
        let mut map = Vec::with_capacity(keep.len());
        for (i, &ac) in self.alphas_cumprod.iter().enumerate() {
            if keep.contains(&i) {
                betas.push(1.0 - ac / last);
                last = ac;
                map.push(self.timestep_map[i]);
            }
        }
        Schedule::from_betas(betas, map)
    }

    /// Per-sample values of `arr` at `t` as an N×1×1×1 f32 tensor on `like`'s device.
    fn at(&self, arr: &[f64], t: &[i64], like: &Tensor) -> Tensor {
        let v: Vec<f32> = t.iter().map(|&i| arr[i as usize] as f32).collect();
        Tensor::from_slice(&v)
            .view([t.len() as i64, 1, 1, 1])
            .to_device(like.device())
    }

    /// The ε MSE's weight at each `t` under P2 weighting (Choi et al., CVPR 2022, "Perception
    /// Prioritized Training of Diffusion Models", built on guided-diffusion): 1 / (k + SNR_t)^γ with
    /// SNR_t = ᾱ_t / (1 − ᾱ_t). It moves the loss from the nearly clean steps to the steps where
    /// content forms; γ = 0 gives 1 everywhere (the official loss). On the `lite` bottle model it
    /// made samples worse (docs/sdas.md), so no preset uses it.
    pub fn p2_weights(&self, t: &[i64], gamma: f64, k: f64) -> Vec<f64> {
        t.iter()
            .map(|&i| {
                let a = self.alphas_cumprod[i as usize];
                (k + a / (1.0 - a)).powf(-gamma)
            })
            .collect()
    }

    /// x_t = √ᾱ_t·x_0 + √(1−ᾱ_t)·ε.
    pub fn q_sample(&self, x0: &Tensor, t: &[i64], noise: &Tensor) -> Tensor {
        self.at(&self.sqrt_alphas_cumprod, t, x0) * x0
            + self.at(&self.sqrt_one_minus_alphas_cumprod, t, x0) * noise
    }

    /// Mean and clipped log-variance of q(x_{t−1} | x_t, x_0).
    pub fn q_posterior(&self, x0: &Tensor, xt: &Tensor, t: &[i64]) -> (Tensor, Tensor) {
        let mean = self.at(&self.posterior_mean_coef1, t, x0) * x0
            + self.at(&self.posterior_mean_coef2, t, x0) * xt;
        let lv = self.at(&self.posterior_log_variance_clipped, t, x0);
        (mean, lv.expand_as(x0))
    }

    /// p(x_{t−1} | x_t) from the 2C-channel network output [ε̂, v] (learned range).
    pub fn p_mean_variance(
        &self,
        out: &Tensor,
        xt: &Tensor,
        t: &[i64],
        clip: bool,
    ) -> MeanVariance {
        let c = xt.size()[1];
        let parts = out.split(c, 1);
        let (eps, v) = (&parts[0], &parts[1]);
        let min_log = self.at(&self.posterior_log_variance_clipped, t, xt);
        let max_log = self.at(&self.log_betas, t, xt);
        let frac = (v + 1.0) / 2.0;
        let log_variance = &frac * max_log + (1.0 - &frac) * min_log;
        let mut pred_xstart = self.at(&self.sqrt_recip_alphas_cumprod, t, xt) * xt
            - self.at(&self.sqrt_recipm1_alphas_cumprod, t, xt) * eps;
        if clip {
            pred_xstart = pred_xstart.clamp(-1.0, 1.0);
        }
        let (mean, _) = self.q_posterior(&pred_xstart, xt, t);
        MeanVariance {
            mean,
            log_variance,
            pred_xstart,
        }
    }

    /// DDIM's deterministic update (η = 0) from the model's x̂_0, and the η = 1 standard deviation
    /// that the SDAS DDIM variant scales by √s.
    pub fn ddim_step(&self, mv: &MeanVariance, xt: &Tensor, t: &[i64]) -> (Tensor, Tensor) {
        let eps = (self.at(&self.sqrt_recip_alphas_cumprod, t, xt) * xt - &mv.pred_xstart)
            / self.at(&self.sqrt_recipm1_alphas_cumprod, t, xt);
        let ab: Vec<f64> = t.iter().map(|&i| self.alphas_cumprod[i as usize]).collect();
        let abp: Vec<f64> = t
            .iter()
            .map(|&i| self.alphas_cumprod_prev[i as usize])
            .collect();
        let sigma: Vec<f64> = ab
            .iter()
            .zip(&abp)
            .map(|(a, p)| ((1.0 - p) / (1.0 - a)).sqrt() * (1.0 - a / p).sqrt())
            .collect();
        let idx: Vec<i64> = (0..t.len() as i64).collect();
        let mean = self.at(&abp.iter().map(|p| p.sqrt()).collect::<Vec<_>>(), &idx, xt)
            * &mv.pred_xstart
            + self.at(
                &abp.iter().map(|p| (1.0 - p).sqrt()).collect::<Vec<_>>(),
                &idx,
                xt,
            ) * eps;
        (mean, self.at(&sigma, &idx, xt))
    }

    /// The hybrid loss terms per sample: ε MSE, and the variational bound (bits/dim) computed
    /// with ε̂ detached so that only the variance output learns from it; at t = 0 the discretised
    /// Gaussian decoder NLL replaces the KL.
    pub fn training_terms(
        &self,
        out: &Tensor,
        x0: &Tensor,
        xt: &Tensor,
        t: &[i64],
        noise: &Tensor,
    ) -> LossTerms {
        let c = x0.size()[1];
        let parts = out.split(c, 1);
        let mse = (noise - &parts[0])
            .square()
            .mean_dim(&[1i64, 2, 3][..], false, Kind::Float);
        let frozen = Tensor::cat(&[parts[0].detach(), parts[1].shallow_clone()], 1);
        let mv = self.p_mean_variance(&frozen, xt, t, false);
        let (true_mean, true_lv) = self.q_posterior(x0, xt, t);
        let ln2 = std::f64::consts::LN_2;
        let kl = normal_kl(&true_mean, &true_lv, &mv.mean, &mv.log_variance).mean_dim(
            &[1i64, 2, 3][..],
            false,
            Kind::Float,
        ) / ln2;
        let nll = -discretized_gaussian_log_likelihood(x0, &mv.mean, &(&mv.log_variance * 0.5))
            .mean_dim(&[1i64, 2, 3][..], false, Kind::Float)
            / ln2;
        let first: Vec<bool> = t.iter().map(|&i| i == 0).collect();
        let is_first = Tensor::from_slice(&first).to_device(x0.device());
        let vb = nll.where_self(&is_first, &kl);
        LossTerms { mse, vb }
    }
}

pub struct LossTerms {
    pub mse: Tensor,
    pub vb: Tensor,
}

impl LossTerms {
    /// Per-sample loss: mse + vb (no extra weighting, spec §2.4).
    pub fn loss(&self) -> Tensor {
        &self.mse + &self.vb
    }

    /// Per-sample loss with the ε MSE weighted per sample (`Schedule::p2_weights`); weights of 1
    /// give `loss`.
    pub fn weighted_loss(&self, mse_weights: &[f64]) -> Tensor {
        let w: Vec<f32> = mse_weights.iter().map(|&w| w as f32).collect();
        Tensor::from_slice(&w).to_device(self.mse.device()) * &self.mse + &self.vb
    }
}

fn normal_kl(m1: &Tensor, lv1: &Tensor, m2: &Tensor, lv2: &Tensor) -> Tensor {
    ((lv2 - lv1) - 1.0 + (lv1 - lv2).exp() + (m1 - m2).square() * (-lv2).exp()) * 0.5
}

fn approx_standard_normal_cdf(x: &Tensor) -> Tensor {
    let c = (2.0 / std::f64::consts::PI).sqrt();
    ((x + x.pow_tensor_scalar(3) * 0.044715) * c).tanh() * 0.5 + 0.5
}

/// log-likelihood of 8-bit data (bins of half-width 1/255 on [−1, 1]) under N(means, exp(log_scales)²).
fn discretized_gaussian_log_likelihood(x: &Tensor, means: &Tensor, log_scales: &Tensor) -> Tensor {
    let centered = x - means;
    let inv_stdv = (-log_scales).exp();
    let cdf_plus = approx_standard_normal_cdf(&(&inv_stdv * (&centered + 1.0 / 255.0)));
    let cdf_min = approx_standard_normal_cdf(&(&inv_stdv * (&centered - 1.0 / 255.0)));
    let log_cdf_plus = cdf_plus.clamp_min(1e-12).log();
    let log_one_minus_cdf_min = (-&cdf_min + 1.0).clamp_min(1e-12).log();
    let log_delta = (&cdf_plus - &cdf_min).clamp_min(1e-12).log();
    let hi = log_one_minus_cdf_min.where_self(&x.gt(0.999), &log_delta);
    log_cdf_plus.where_self(&x.lt(-0.999), &hi)
}

/// guided-diffusion's `space_timesteps(T, spec)` for one section: `ddimN` (the integer stride whose
/// `range(0, T, stride)` has N elements) or `N` (N evenly spaced steps, Python rounding).
pub fn space_timesteps(total: usize, spec: &str) -> Result<Vec<usize>, UserError> {
    let bad = || {
        UserError::BadInput(format!(
            "sampling steps '{spec}': expected N or ddimN with 1 ≤ N ≤ {total}"
        ))
    };
    if let Some(n) = spec.strip_prefix("ddim") {
        let n: usize = n.parse().map_err(|_| bad())?;
        for stride in 1..total.max(2) {
            if (0..total).step_by(stride).count() == n {
                return Ok((0..total).step_by(stride).collect());
            }
        }
        if n == total {
            return Ok((0..total).collect());
        }
        return Err(bad());
    }
    let n: usize = spec.parse().map_err(|_| bad())?;
    if n == 0 || n > total {
        return Err(bad());
    }
    if n == 1 {
        return Ok(vec![0]);
    }
    let frac = (total - 1) as f64 / (n - 1) as f64;
    let mut cur = 0.0f64;
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        out.push(round_half_even(cur) as usize);
        cur += frac;
    }
    Ok(out)
}

fn round_half_even(x: f64) -> f64 {
    let r = x.round();
    if (x - x.trunc()).abs() == 0.5 && r % 2.0 != 0.0 {
        r - x.signum()
    } else {
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn p2_weights_follow_the_signal_to_noise_ratio() {
        let s = Schedule::linear(1000);
        let t = [0i64, 100, 500, 999];
        // γ = 0: the official loss.
        assert!(s.p2_weights(&t, 0.0, 1.0).iter().all(|&w| w == 1.0));
        let w = s.p2_weights(&t, 1.0, 1.0);
        // t = 0: ᾱ = 1 − 1e-4, SNR = 9999, so 1 / (1 + 9999).
        assert!((w[0] - 1e-4).abs() < 1e-9, "{w:?}");
        // The noisiest step: SNR ≈ 4e-5, weight ≈ 1.
        assert!(w[3] > 0.9999 && w[3] <= 1.0, "{w:?}");
        assert!(w.windows(2).all(|p| p[0] < p[1]), "{w:?}");
        let half = s.p2_weights(&t, 0.5, 1.0);
        for (h, f) in half.iter().zip(&w) {
            assert!((h * h - f).abs() < 1e-12);
        }
        // Ones give the unweighted loss; other weights scale only the MSE.
        let terms = LossTerms {
            mse: Tensor::from_slice(&[0.5f32, 2.0]),
            vb: Tensor::from_slice(&[0.25f32, 1.0]),
        };
        assert!(terms.weighted_loss(&[1.0, 1.0]).equal(&terms.loss()));
        let got = Vec::<f32>::try_from(terms.weighted_loss(&[0.5, 0.0])).unwrap();
        assert_eq!(got, vec![0.5, 1.0]);
    }

    #[test]
    fn ddim20_keeps_every_fiftieth_step() {
        let k = space_timesteps(1000, "ddim20").unwrap();
        assert_eq!(k.len(), 20);
        assert_eq!(k[1], 50);
        assert_eq!(*k.last().unwrap(), 950);
        assert_eq!(space_timesteps(1000, "1000").unwrap().len(), 1000);
        assert!(space_timesteps(1000, "ddim0").is_err());
        assert!(space_timesteps(1000, "x").is_err());
    }

    #[test]
    fn respacing_everything_is_identity() {
        let s = Schedule::linear(1000);
        let all: Vec<usize> = (0..1000).collect();
        let r = s.respaced(&all);
        for (a, b) in s.betas.iter().zip(&r.betas) {
            assert!((a - b).abs() < 1e-12);
        }
    }
}
