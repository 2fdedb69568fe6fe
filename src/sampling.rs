//! The bridge between training and `realnet-synth`: which anomaly source a run uses, the category's
//! foreground rule, and seeded permutations for the epoch order.
use crate::config::Config;
use crate::error::UserError;
use image::{GrayImage, RgbImage};
use realnet_data::layout::{Category, LayoutKind};
use realnet_synth::ForegroundRule;
use std::path::Path;
use std::sync::Arc;

/// Where synthetic anomalies take their content from
/// (`--source textures:DIR|sia:DIR|self|procedural`).
pub use realnet_synth::SourceSpec as SynthSource;

/// Synthesis as training uses it.
pub struct Sampler {
    train: realnet_synth::Synthesizer,
    redraw: realnet_synth::Synthesizer,
    val_source: SynthSource,
}

impl Sampler {
    /// `own`: the images the `self` source draws from (the training images a run fits on, so that
    /// its held-out validation images stay unseen); shared with the caller, used only by that
    /// source. `root` names them in messages. Validation anomalies come from `train.val_source`
    /// when it is set, else from `source`.
    pub fn new<'a>(
        source: &SynthSource,
        cfg: &Config,
        root: &Path,
        own: impl Iterator<Item = (&'a Path, &'a Arc<RgbImage>)>,
    ) -> anyhow::Result<Sampler> {
        let val_source = cfg
            .train
            .val_source_spec()
            .map_err(UserError::BadModel)?
            .unwrap_or_else(|| source.clone());
        let own = if [source, &val_source].contains(&&SynthSource::Own) {
            Some(Arc::new(
                realnet_synth::ImageSet::from_images(
                    root,
                    own.map(|(p, img)| (p.to_path_buf(), Arc::clone(img)))
                        .collect(),
                    (256, 256),
                )
                .map_err(|e| UserError::BadInput(format!("anomaly source: {e}")))?,
            ))
        } else {
            None
        };
        let make = |source: &SynthSource, redraw_empty: bool, shade| {
            let c = realnet_synth::SynthConfig {
                sources: vec![realnet_synth::WeightedSource {
                    source: source.clone(),
                    weight: 1.0,
                }],
                normal_prob: cfg.train.normal_prob,
                redraw_empty,
                strokes: realnet_synth::StrokeParams {
                    prob: cfg.train.stroke_prob,
                    ..Default::default()
                },
                shade,
                ..Default::default()
            };
            realnet_synth::Synthesizer::with_own(c, own.clone())
                .map_err(|e| UserError::BadInput(format!("anomaly source: {e}")))
        };
        Ok(Sampler {
            train: make(source, cfg.train.redraw_empty, cfg.train.shade_params())?,
            redraw: make(&val_source, true, cfg.train.val_shade_params())?,
            val_source,
        })
    }

    /// Where the validation anomalies come from.
    pub fn val_source(&self) -> &SynthSource {
        &self.val_source
    }

    /// Anomaly source files found unreadable so far (skipped, each with why).
    pub fn skipped_sources(&self) -> Vec<String> {
        let mut v = self.train.skipped_sources();
        v.extend(self.redraw.skipped_sources());
        v.sort();
        v.dedup();
        v
    }

    /// A training sample: normal with probability `normal_prob`, else synthetic (spec §3).
    pub fn sample(
        &self,
        base: &RgbImage,
        fg: &GrayImage,
        seed: u64,
        q: u64,
    ) -> (RgbImage, GrayImage) {
        let s = self.train.sample(base, fg, seed, q);
        (s.image, s.mask)
    }

    /// Always synthetic (AFS); the mask may be empty, as in the official code.
    pub fn anomalous(
        &self,
        base: &RgbImage,
        fg: &GrayImage,
        seed: u64,
        q: u64,
    ) -> (RgbImage, GrayImage) {
        let s = self.train.anomalous(base, fg, seed, q);
        (s.image, s.mask)
    }

    /// Always synthetic with a non-empty mask, from the validation source (validation anomalies).
    pub fn anomalous_nonempty(
        &self,
        base: &RgbImage,
        fg: &GrayImage,
        seed: u64,
        q: u64,
    ) -> (RgbImage, GrayImage) {
        let s = self.redraw.anomalous(base, fg, seed, q);
        (s.image, s.mask)
    }
}

/// `train.foreground` if set, else the category's rule of spec §3.2 (by dataset and name), else the
/// whole image.
pub fn foreground_rule(cfg: &Config, cat: &Category) -> Result<ForegroundRule, UserError> {
    if !cfg.train.foreground.is_empty() {
        return cfg
            .train
            .foreground
            .parse()
            .map_err(|e| UserError::BadModel(format!("train.foreground: {e}")));
    }
    let datasets: &[&str] = match cat.layout {
        LayoutKind::Btad => &["btad"],
        LayoutKind::Visa => &["visa"],
        _ => &["mvtec", "mpdd", "visa", "btad"],
    };
    for d in datasets {
        if let Some(r) = realnet_synth::known_rule(d, &cat.name) {
            return Ok(r);
        }
    }
    tracing::info!(
        "{}: no foreground rule known for this category; using the whole image",
        cat.name
    );
    Ok(ForegroundRule::All)
}

/// A seeded Fisher–Yates permutation of 0..n (splitmix64 stream).
pub fn permutation(n: usize, seed: u64) -> Vec<usize> {
    let mut state = seed;
    let mut next = || {
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    };
    let mut p: Vec<usize> = (0..n).collect();
    for i in (1..n).rev() {
        let j = (next() % (i as u64 + 1)) as usize;
        p.swap(i, j);
    }
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permutation_is_a_seeded_permutation() {
        let p = permutation(50, 3);
        let mut s = p.clone();
        s.sort();
        assert_eq!(s, (0..50).collect::<Vec<_>>());
        assert_eq!(p, permutation(50, 3));
        assert_ne!(p, permutation(50, 4));
    }

    /// A sampler with the procedural training source; `own` feeds the `self` source.
    fn procedural(cfg: &Config, own: &[(&Path, &Arc<RgbImage>)]) -> Sampler {
        let own = own.iter().map(|&(p, i)| (p, i));
        Sampler::new(&SynthSource::Procedural, cfg, Path::new("."), own).unwrap()
    }

    /// `train.val_source` changes the validation anomalies only: training samples stay the
    /// training source's, validation anomalies come from the other source.
    #[test]
    fn val_source_changes_validation_anomalies_only() {
        let base = RgbImage::from_fn(256, 256, |x, y| {
            image::Rgb([(x % 200) as u8, (y % 90) as u8, 40])
        });
        let own_img = Arc::new(RgbImage::from_fn(256, 256, |x, _| {
            image::Rgb([250, (x % 7) as u8 * 30, 5])
        }));
        let own_path = Path::new("own.png");
        let fg = GrayImage::from_pixel(256, 256, image::Luma([255]));
        let sampler = |val: &str| {
            let mut cfg = Config::lite();
            cfg.train.val_source = val.into();
            procedural(&cfg, &[(own_path, &own_img)])
        };
        let (same, other) = (sampler(""), sampler("self"));
        for q in 0..4 {
            let a = same.sample(&base, &fg, 7, q);
            let b = other.sample(&base, &fg, 7, q);
            assert!(a.0 == b.0 && a.1 == b.1, "training sample {q} changed");
        }
        let a = same.anomalous_nonempty(&base, &fg, 7, 0);
        let b = other.anomalous_nonempty(&base, &fg, 7, 0);
        assert!(
            a.0 != b.0,
            "the validation anomaly did not change with train.val_source"
        );
        assert_eq!(other.val_source(), &SynthSource::Own);
        assert_eq!(same.val_source(), &SynthSource::Procedural);
        let mut bad = Config::lite();
        bad.train.val_source = "nonsense:x".into();
        let e = bad.validate().unwrap_err().to_string();
        assert!(e.contains("train.val_source"), "{e}");
    }

    /// `train.val_shade_prob` shades the validation anomalies only; unset, validation follows
    /// `shade_prob`.
    #[test]
    fn val_shade_prob_changes_validation_anomalies_only() {
        let base = RgbImage::from_fn(256, 256, |x, y| {
            image::Rgb([(x % 200) as u8 + 20, (y % 90) as u8 + 60, 90])
        });
        let fg = GrayImage::from_pixel(256, 256, image::Luma([255]));
        let sampler = |shade: f64, val: Option<f64>| {
            let mut cfg = Config::lite();
            cfg.train.val_source = String::new();
            cfg.train.shade_prob = shade;
            cfg.train.val_shade_prob = val;
            procedural(&cfg, &[])
        };
        let (plain, val_only) = (sampler(0.0, None), sampler(0.0, Some(1.0)));
        let (shaded, train_only) = (sampler(1.0, None), sampler(1.0, Some(0.0)));
        for q in 0..4 {
            let a = plain.sample(&base, &fg, 7, q);
            let b = val_only.sample(&base, &fg, 7, q);
            assert!(a.0 == b.0 && a.1 == b.1, "training sample {q} changed");
            let a = shaded.sample(&base, &fg, 7, q);
            let b = train_only.sample(&base, &fg, 7, q);
            assert!(
                a.0 == b.0 && a.1 == b.1,
                "shaded training sample {q} changed"
            );
        }
        for q in 0..3 {
            let p = plain.anomalous_nonempty(&base, &fg, 7, q);
            assert!(
                p != val_only.anomalous_nonempty(&base, &fg, 7, q),
                "validation anomaly {q} not shaded"
            );
            assert!(p == train_only.anomalous_nonempty(&base, &fg, 7, q));
            assert!(
                shaded.anomalous_nonempty(&base, &fg, 7, q)
                    == val_only.anomalous_nonempty(&base, &fg, 7, q),
                "unset, validation follows shade_prob"
            );
        }
        let mut bad = Config::lite();
        bad.train.val_shade_prob = Some(1.5);
        let e = bad.validate().unwrap_err().to_string();
        assert!(e.contains("train.val_shade_prob"), "{e}");
    }
}
