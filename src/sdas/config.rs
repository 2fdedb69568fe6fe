//! SDAS configuration: presets `paper` (spec §2.3–2.4, §6.2) and `lite` (trains on a 2-core CPU),
//! TOML and `--set` overrides through [`crate::config::layer`]; saved with every model.
use super::unet::UNetConfig;
use crate::error::UserError;
use serde::{Deserialize, Serialize};
use std::path::Path;

/// Most diffusion steps accepted (official 1000): the schedule's tables stay small.
pub const MAX_TIMESTEPS: usize = 100_000;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SdasConfig {
    pub preset: String,
    pub model: UNetConfig,
    pub diffusion: DiffusionConfig,
    pub train: SdasTrainConfig,
    pub sample: SampleConfig,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DiffusionConfig {
    /// Diffusion steps T of the linear β schedule.
    pub timesteps: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SdasTrainConfig {
    /// Images per micro-batch.
    pub batch_size: usize,
    /// Micro-batches per optimiser step (official 3, with its quirk: the step comes at micro-steps
    /// 0, 3, 6, …, the losses are not divided, and the gradient is clipped after every backward).
    pub accumulate: usize,
    pub lr: f64,
    /// `constant` (official) or `cosine`: decay from `lr` to 0 over the micro-steps after the
    /// warm-up (beyond the paper; configs saved before this key are constant).
    #[serde(default = "crate::config::default_lr_schedule")]
    pub lr_schedule: String,
    /// Micro-steps of linear warm-up from 0 to `lr` (official 0).
    #[serde(default)]
    pub warmup_steps: usize,
    /// EMA decay of the weights that are saved and sampled from.
    pub ema_decay: f64,
    /// Gradient-norm clipping (0 = off).
    pub clip_grad_norm: f64,
    /// Micro-steps in all.
    pub steps: usize,
    pub checkpoint_every: usize,
    pub seed: u64,
    /// `f32` (official), or `bf16` mixed precision (guided-diffusion's `use_fp16` with bf16: f32
    /// master weights, EMA, loss and optimiser; forward and backward on bf16 copies). Configs
    /// saved before this key train in f32.
    #[serde(default = "crate::config::default_precision")]
    pub precision: String,
    /// P2 weighting of the ε MSE, 1 / (k + SNR_t)^γ (`Schedule::p2_weights`; beyond the paper):
    /// γ = 0 is the official unweighted loss (and configs saved before the key), P2's own
    /// recommendation is γ = 1, k = 1.
    #[serde(default)]
    pub p2_gamma: f64,
    #[serde(default = "one")]
    pub p2_k: f64,
}

fn one() -> f64 {
    1.0
}

impl SdasTrainConfig {
    /// `precision` parsed.
    pub fn precision(&self) -> Result<crate::precision::Precision, String> {
        crate::config::train_precision(&self.precision)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SampleConfig {
    /// Respacing of the reverse chain: `ddimN` or `N` (official `ddim20`).
    pub steps: String,
    /// Strength range [a, b]: s ~ U(a, b) (official [0.1, 0.2]).
    pub strength: [f64; 2],
    /// Images per forward pass; part of the recipe (a sample depends on its batch's grouping
    /// only through floating-point rounding).
    pub batch_size: usize,
    /// Give the predicted noise's per-channel mean its posterior under the class's mean colour
    /// (`sdas::dc_prior`; not in the official sampler, so `paper` leaves it off). Configs saved
    /// before this key: off.
    #[serde(default)]
    pub dc_prior: bool,
}

impl SdasConfig {
    pub fn preset(name: &str) -> Result<SdasConfig, UserError> {
        let sample = SampleConfig {
            steps: "ddim20".into(),
            strength: [0.1, 0.2],
            batch_size: 16,
            dc_prior: false,
        };
        match name {
            "paper" => Ok(SdasConfig {
                preset: name.into(),
                model: UNetConfig::paper(1),
                diffusion: DiffusionConfig { timesteps: 1000 },
                train: SdasTrainConfig {
                    batch_size: 5,
                    accumulate: 3,
                    lr: 1e-4,
                    lr_schedule: crate::config::default_lr_schedule(),
                    warmup_steps: 0,
                    ema_decay: 0.9999,
                    clip_grad_norm: 1.0,
                    steps: 150_000,
                    checkpoint_every: 1000,
                    seed: 100,
                    precision: crate::config::default_precision(),
                    p2_gamma: 0.0,
                    p2_k: 1.0,
                },
                sample,
            }),
            // A denoiser a 2-core CPU trains in under an hour (6000 steps: 47 min at --threads 2);
            // the EMA horizon is shortened to match the short run (0.9999 would still hold the
            // initial weights).
            "lite" => Ok(SdasConfig {
                preset: name.into(),
                model: UNetConfig::lite(1),
                diffusion: DiffusionConfig { timesteps: 1000 },
                train: SdasTrainConfig {
                    batch_size: 8,
                    accumulate: 1,
                    lr: 2e-4,
                    lr_schedule: crate::config::default_lr_schedule(),
                    warmup_steps: 0,
                    ema_decay: 0.995,
                    clip_grad_norm: 1.0,
                    steps: 6000,
                    checkpoint_every: 100,
                    seed: 100,
                    precision: crate::config::default_precision(),
                    p2_gamma: 0.0,
                    p2_k: 1.0,
                },
                sample: SampleConfig {
                    batch_size: 8,
                    dc_prior: true,
                    ..sample
                },
            }),
            other => Err(UserError::BadModel(format!(
                "unknown SDAS preset '{other}' (known: paper, lite)"
            ))),
        }
    }

    pub fn resolve(
        preset: &str,
        file: Option<&Path>,
        sets: &[String],
    ) -> Result<SdasConfig, UserError> {
        crate::config::resolve_layered(&Self::preset(preset)?, file, sets)
    }

    pub fn load(path: &Path) -> Result<SdasConfig, UserError> {
        crate::config::load_validated(path)
    }

    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).unwrap_or_default()
    }

    pub fn validate(&self) -> Result<(), UserError> {
        let bad = |m: String| Err(UserError::BadModel(m));
        if let Err(e) = self.model.validate() {
            return bad(format!("model: {e}"));
        }
        if !(2..=MAX_TIMESTEPS).contains(&self.diffusion.timesteps) {
            return bad(format!(
                "diffusion.timesteps = {} must be in 2..={MAX_TIMESTEPS}",
                self.diffusion.timesteps
            ));
        }
        let t = &self.train;
        if t.batch_size == 0 || t.accumulate == 0 || t.checkpoint_every == 0 {
            return bad(
                "train.batch_size, train.accumulate and train.checkpoint_every must be ≥ 1".into(),
            );
        }
        if !(t.lr > 0.0 && t.lr.is_finite()) {
            return bad(format!("train.lr = {} must be positive", t.lr));
        }
        crate::optim::LrCurve::check(&t.lr_schedule).or_else(bad)?;
        t.precision().map(drop).or_else(bad)?;
        let e = t.ema_decay;
        crate::config::range_check("train.ema_decay", e, (0.0..1.0).contains(&e), "[0, 1)")
            .or_else(bad)?;
        let (g, k) = (t.p2_gamma, t.p2_k);
        let (g_ok, k_ok) = (g.is_finite() && g >= 0.0, k.is_finite() && k > 0.0);
        crate::config::range_check("train.p2_gamma", g, g_ok, "[0, ∞)").or_else(bad)?;
        crate::config::range_check("train.p2_k", k, k_ok, "(0, ∞)").or_else(bad)?;
        if !(t.clip_grad_norm >= 0.0 && t.clip_grad_norm.is_finite()) {
            return bad(format!(
                "train.clip_grad_norm = {} must be ≥ 0",
                t.clip_grad_norm
            ));
        }
        let s = &self.sample;
        if let Err(e) = super::schedule::space_timesteps(self.diffusion.timesteps, &s.steps) {
            return bad(format!("sample.steps: {e}"));
        }
        if !(s.strength[0] >= 0.0 && s.strength[0] <= s.strength[1] && s.strength[1].is_finite()) {
            return bad(format!(
                "sample.strength = {:?} must be [a, b] with 0 ≤ a ≤ b",
                s.strength
            ));
        }
        if s.batch_size == 0 {
            return bad("sample.batch_size must be ≥ 1".into());
        }
        Ok(())
    }
}

impl crate::config::Validated for SdasConfig {
    fn check(&self) -> Result<(), UserError> {
        self.validate()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presets_validate_and_round_trip() {
        for p in ["paper", "lite"] {
            let c = SdasConfig::preset(p).unwrap();
            c.validate().unwrap();
            let back: SdasConfig = toml::from_str(&c.to_toml()).unwrap();
            assert_eq!(back, c);
        }
        assert!(SdasConfig::preset("huge").is_err());
    }

    #[test]
    fn p2_weighting_is_off_by_default_and_checked() {
        let lite = SdasConfig::preset("lite").unwrap();
        assert_eq!((lite.train.p2_gamma, lite.train.p2_k), (0.0, 1.0));
        let old = lite
            .to_toml()
            .replace("p2_gamma = 0.0\n", "")
            .replace("p2_k = 1.0\n", "");
        assert!(!old.contains("p2_"), "{old}");
        let back: SdasConfig = toml::from_str(&old).unwrap();
        assert_eq!(back, lite);
        let on = SdasConfig::resolve("lite", None, &["train.p2_gamma=1".into()]).unwrap();
        assert_eq!(on.train.p2_gamma, 1.0);
        for bad in ["train.p2_gamma=-1", "train.p2_k=0"] {
            let e = SdasConfig::resolve("lite", None, &[bad.into()]).unwrap_err();
            assert!(e.to_string().contains("p2_"), "{e}");
        }
    }

    #[test]
    fn configs_saved_before_the_norm_key_keep_one_channel_groups() {
        let lite = SdasConfig::preset("lite").unwrap();
        assert_eq!(lite.model.norm_min_group_channels, 4);
        let old = lite.to_toml().replace("norm_min_group_channels = 4\n", "");
        assert!(!old.contains("norm_min_group_channels"));
        let back: SdasConfig = toml::from_str(&old).unwrap();
        assert_eq!(back.model.norm_min_group_channels, 1);
        let e = SdasConfig::resolve("lite", None, &["model.norm_min_group_channels=0".into()]);
        assert!(e.is_err());
    }

    #[test]
    fn configs_saved_before_the_schedule_keys_keep_a_constant_rate() {
        let lite = SdasConfig::preset("lite").unwrap();
        let old = lite
            .to_toml()
            .replace("lr_schedule = \"constant\"\n", "")
            .replace("warmup_steps = 0\n", "");
        assert!(!old.contains("lr_schedule") && !old.contains("warmup_steps"));
        let back: SdasConfig = toml::from_str(&old).unwrap();
        assert_eq!(back, lite);
        let c = SdasConfig::resolve(
            "lite",
            None,
            &[
                "train.lr_schedule=\"cosine\"".into(),
                "train.warmup_steps=50".into(),
            ],
        )
        .unwrap();
        assert_eq!(
            (c.train.lr_schedule.as_str(), c.train.warmup_steps),
            ("cosine", 50)
        );
        let e = SdasConfig::resolve("lite", None, &["train.lr_schedule=\"step\"".into()]);
        assert!(e.unwrap_err().to_string().contains("lr_schedule"));
    }

    #[test]
    fn overrides_are_checked() {
        let c = SdasConfig::resolve("lite", None, &["train.steps=7".into()]).unwrap();
        assert_eq!(c.train.steps, 7);
        let e = SdasConfig::resolve("lite", None, &["train.stepz=7".into()]).unwrap_err();
        assert!(e.to_string().contains("unknown key"), "{e}");
        assert!(SdasConfig::resolve("lite", None, &["train.ema_decay=1.5".into()]).is_err());
        assert!(SdasConfig::resolve("lite", None, &["sample.steps=\"ddim7000\"".into()]).is_err());
        let e = SdasConfig::resolve("lite", None, &["train.precision=\"f16\"".into()]).unwrap_err();
        assert!(e.to_string().contains("train.precision"), "{e}");
    }

    #[test]
    fn lite_samples_with_the_mean_colour_prior_and_older_configs_without() {
        let lite = SdasConfig::preset("lite").unwrap();
        assert!(lite.sample.dc_prior);
        assert!(!SdasConfig::preset("paper").unwrap().sample.dc_prior);
        let old = lite.to_toml().replace("dc_prior = true\n", "");
        assert!(!old.contains("dc_prior"));
        let back: SdasConfig = toml::from_str(&old).unwrap();
        assert!(!back.sample.dc_prior);
    }

    #[test]
    fn configs_saved_before_the_precision_key_train_in_f32() {
        let lite = SdasConfig::preset("lite").unwrap();
        assert_eq!(
            lite.train.precision().unwrap(),
            crate::precision::Precision::F32
        );
        let old = lite.to_toml().replace("precision = \"f32\"\n", "");
        assert!(!old.contains("precision"));
        let back: SdasConfig = toml::from_str(&old).unwrap();
        assert_eq!(back, lite);
        let c = SdasConfig::resolve("lite", None, &["train.precision=\"bf16\"".into()]).unwrap();
        assert_eq!(
            c.train.precision().unwrap(),
            crate::precision::Precision::Bf16
        );
    }
}
