//! The mean colour of the normal images, handed to the sampler. A sample's global brightness is
//! set in the first reverse steps, where x̂₀ = (x_t − √(1−ᾱ)·ε̂)/√ᾱ multiplies any error in the
//! per-channel spatial mean of ε̂ by 1/√ᾱ (≈ 157 at t = 999) — and a GroupNorm UNet estimates that
//! mean poorly (each norm removes its groups' means). With the training images' per-channel means
//! summarised as a Gaussian (μ_c, σ_c), the spatial mean of the noise has a closed-form posterior:
//! m_x = √ᾱ·m₀ + √(1−ᾱ)·m_ε with m₀ ~ N(μ_c, σ_c²) and m_ε ~ N(0, 1/HW), so
//! E[m_ε | m_x] = √(1−ᾱ)/HW · (m_x − √ᾱ·μ_c) / (ᾱ·σ_c² + (1−ᾱ)/HW).
//! The prior replaces the mean of ε̂ with that, and leaves the rest of ε̂ (all structure) alone.
use super::train::SdasMeta;
use crate::error::UserError;
use tch::{Kind, Tensor};

/// Per-channel mean and standard deviation of the normal images' spatial means, in the denoiser's
/// [−1, 1] space.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct DcPrior {
    pub mean: [f64; 3],
    pub std: [f64; 3],
}

impl DcPrior {
    /// From u8 images N×3×S×S at the denoiser's size (`None` when there are none).
    pub fn from_u8_images(images: &Tensor) -> Option<DcPrior> {
        if images.dim() != 4 || images.size()[0] == 0 || images.size()[1] != 3 {
            return None;
        }
        let m = (images.to_kind(Kind::Double) / 127.5 - 1.0).mean_dim(
            [2i64, 3].as_slice(),
            false,
            Kind::Double,
        ); // N×3
        let mean = m.mean_dim(0, false, Kind::Double);
        let std = m.std_correction(0i64, 0, false);
        let get = |t: &Tensor, c: i64| t.double_value(&[c]);
        Some(DcPrior {
            mean: [get(&mean, 0), get(&mean, 1), get(&mean, 2)],
            std: [get(&std, 0), get(&std, 1), get(&std, 2)],
        })
    }

    /// One prior per class id (`None` for a class without images) from u8 images N×3×S×S.
    pub fn per_class(images: &Tensor, classes: &[i64], n: usize) -> Vec<Option<DcPrior>> {
        (0..n as i64)
            .map(|c| {
                let idx: Vec<i64> = (0..classes.len() as i64)
                    .filter(|&i| classes[i as usize] == c)
                    .collect();
                DcPrior::from_u8_images(&images.index_select(0, &Tensor::from_slice(&idx)))
            })
            .collect()
    }

    /// Class `class`'s prior for a model: the one stored with it, or — for a model saved before
    /// priors were stored — computed from its training folder (`meta.data`) at `size`².
    pub fn of_model(meta: &SdasMeta, class: usize, size: u32) -> anyhow::Result<DcPrior> {
        if let Some(p) = meta.dc_prior.get(class).copied().flatten() {
            return Ok(p);
        }
        let gone = |why: String| -> anyhow::Error {
            UserError::BadModel(format!(
                "sample.dc_prior needs the class's mean colour: this model has none stored and {why}; \
                 sample with --dc-prior false"
            ))
            .into()
        };
        let dir = meta
            .data
            .get(class)
            .ok_or_else(|| gone("names no training folder for the class".into()))?;
        let set = super::train::load_images(std::slice::from_ref(dir), size).map_err(|e| {
            gone(format!(
                "its training folder {} cannot be loaded again ({e})",
                dir.display()
            ))
        })?;
        tracing::info!(
            "mean colour of '{}' from {} images of {}",
            meta.categories.get(class).map_or("?", String::as_str),
            set.classes.len(),
            dir.display()
        );
        DcPrior::from_u8_images(&set.images).ok_or_else(|| {
            gone(format!(
                "{} holds no readable training image",
                dir.display()
            ))
        })
    }

    /// `eps` (N×3×H×W, the network's ε̂ at `x_t`, cumulative ᾱ = `alpha_bar`) with each channel's
    /// spatial mean replaced by its posterior mean under this prior.
    pub fn correct(&self, eps: &Tensor, xt: &Tensor, alpha_bar: f64) -> Tensor {
        let s = xt.size();
        let var_e = 1.0 / (s[2] * s[3]) as f64;
        let a = alpha_bar.clamp(0.0, 1.0 - 1e-12);
        let (gain, shift): (Vec<f32>, Vec<f32>) = (0..3)
            .map(|c| {
                let g = (1.0 - a).sqrt() * var_e / (a * self.std[c].powi(2) + (1.0 - a) * var_e);
                (g as f32, (a.sqrt() * self.mean[c]) as f32)
            })
            .unzip();
        let col = |v: &[f32]| {
            Tensor::from_slice(v)
                .view([1, 3, 1, 1])
                .to_device(xt.device())
        };
        let m_x = xt.mean_dim([2i64, 3].as_slice(), true, Kind::Float);
        let m_eps = (m_x - col(&shift)) * col(&gain);
        eps - eps.mean_dim([2i64, 3].as_slice(), true, Kind::Float) + m_eps
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Device;

    #[test]
    fn statistics_of_the_images_means() {
        // Two flat images: grey levels 0 and 255 in every channel → means −1 and 1.
        let a = Tensor::zeros([1, 3, 4, 4], (Kind::Uint8, Device::Cpu));
        let b = Tensor::full([1, 3, 4, 4], 255, (Kind::Uint8, Device::Cpu));
        let p = DcPrior::from_u8_images(&Tensor::cat(&[a, b], 0)).unwrap();
        for c in 0..3 {
            assert!(
                p.mean[c].abs() < 1e-12 && (p.std[c] - 1.0).abs() < 1e-12,
                "{p:?}"
            );
        }
        assert!(
            DcPrior::from_u8_images(&Tensor::zeros([0, 3, 4, 4], (Kind::Uint8, Device::Cpu)))
                .is_none()
        );
    }

    #[test]
    fn keeps_the_structure_and_sets_the_mean_to_the_posterior() {
        let p = DcPrior {
            mean: [0.2, -0.1, 0.0],
            std: [0.01, 0.02, 0.05],
        };
        let eps = Tensor::randn([2, 3, 8, 8], (Kind::Float, Device::Cpu)) + 0.3;
        let xt = Tensor::randn([2, 3, 8, 8], (Kind::Float, Device::Cpu));
        let a = 0.3;
        let out = p.correct(&eps, &xt, a);
        let centred = |t: &Tensor| t - t.mean_dim([2i64, 3].as_slice(), true, Kind::Float);
        let diff = f64::try_from((centred(&out) - centred(&eps)).abs().max()).unwrap();
        assert!(diff < 1e-5, "structure changed by {diff}");
        let var_e = 1.0 / 64.0;
        for n in 0..2 {
            for c in 0..3 {
                let m_x = xt.get(n).get(c as i64).mean(Kind::Double).double_value(&[]);
                let want = (1.0 - a).sqrt() * var_e * (m_x - a.sqrt() * p.mean[c])
                    / (a * p.std[c].powi(2) + (1.0 - a) * var_e);
                let got = out
                    .get(n)
                    .get(c as i64)
                    .mean(Kind::Double)
                    .double_value(&[]);
                assert!((got - want).abs() < 1e-5, "n {n} c {c}: {got} vs {want}");
            }
        }
    }

    #[test]
    fn pure_noise_gives_its_own_mean_back() {
        // At ᾱ → 0 all of x_t's mean is noise: the posterior mean of m_ε is m_x itself.
        let p = DcPrior {
            mean: [0.5; 3],
            std: [0.01; 3],
        };
        let xt = Tensor::randn([1, 3, 16, 16], (Kind::Float, Device::Cpu)) + 0.7;
        let eps = Tensor::zeros([1, 3, 16, 16], (Kind::Float, Device::Cpu));
        let out = p.correct(&eps, &xt, 1e-9);
        let d = (out.mean_dim([2i64, 3].as_slice(), false, Kind::Float)
            - xt.mean_dim([2i64, 3].as_slice(), false, Kind::Float))
        .abs()
        .max();
        assert!(f64::try_from(d).unwrap() < 1e-4);
    }
}
