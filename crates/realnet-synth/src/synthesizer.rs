//! The per-sample synthesiser: anomaly type draw, Perlin × foreground mask, anomaly source,
//! β, blending. Every random draw of sample `index` comes from `sample_rng(seed, index)`.
use crate::augment::Op;
use crate::blend::blend;
use crate::foreground::{foreground_mask, ForegroundRule};
use crate::perlin::{perlin_mask, PerlinParams};
use crate::rng::sample_rng;
use crate::shading::{shade, shade_mask, ShadeParams};
use crate::sources::{ImageSet, Kind, Source, SourceSpec};
use crate::strokes::{stroke_mask, StrokeParams};
use crate::SynthError;
use image::{GrayImage, RgbImage};
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use std::path::PathBuf;
use std::sync::Arc;

/// One source with its weight among the anomalous samples.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct WeightedSource {
    pub source: SourceSpec,
    #[serde(default = "one")]
    pub weight: f64,
}

fn one() -> f64 {
    1.0
}

/// Synthesis settings (defaults = the official training setup with procedural textures).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SynthConfig {
    pub sources: Vec<WeightedSource>,
    /// Probability that `sample` returns the clean image (paper: 0.5).
    pub normal_prob: f64,
    pub foreground: ForegroundRule,
    /// Redraw the Perlin mask until mask ∧ foreground is non-empty (synth command). Training
    /// keeps `false`, the official behaviour (an empty mask yields an effectively normal sample).
    pub redraw_empty: bool,
    pub perlin: PerlinParams,
    /// Scratch/crack-like masks in place of the Perlin region for a share of the anomalies.
    pub strokes: StrokeParams,
    /// Large soft brightness/texture changes in place of a blended source for a share of the
    /// anomalies.
    pub shade: ShadeParams,
    /// β range per source kind; `None` = official (SIA 0.5–1, textures/procedural 0.2–1).
    pub sia_beta: Option<(f64, f64)>,
    pub texture_beta: Option<(f64, f64)>,
}

impl Default for SynthConfig {
    fn default() -> Self {
        SynthConfig {
            sources: vec![WeightedSource {
                source: SourceSpec::Procedural,
                weight: 1.0,
            }],
            normal_prob: 0.5,
            foreground: ForegroundRule::All,
            redraw_empty: false,
            perlin: PerlinParams::default(),
            strokes: StrokeParams::default(),
            shade: ShadeParams::default(),
            sia_beta: None,
            texture_beta: None,
        }
    }
}

/// One synthesised training sample.
#[derive(Debug, Clone)]
pub struct SynthSample {
    pub image: RgbImage,
    /// 0/255, same size as the image.
    pub mask: GrayImage,
    pub kind: Kind,
    /// Blending factor (0 for normal samples).
    pub beta: f64,
    pub source_file: Option<PathBuf>,
    /// Texture augmentations applied to the source, in order.
    pub ops: Vec<Op>,
    /// Masks drawn (more than 1 only with `redraw_empty`).
    pub attempts: u32,
    /// The foreground left no room for a mask after many redraws, so it was ignored.
    pub foreground_ignored: bool,
    /// The mask is thin strokes (`SynthConfig::strokes`), not a Perlin region.
    pub strokes: bool,
}

/// Redraws of the Perlin mask before giving up on the foreground (with `redraw_empty`).
const MAX_REDRAWS: u32 = 64;

/// Opened sources + settings; cheap to share between threads (`&self` only).
#[derive(Debug)]
pub struct Synthesizer {
    config: SynthConfig,
    sources: Vec<(Source, f64, (f64, f64))>,
    total_weight: f64,
}

fn check_range(name: &str, r: (f64, f64)) -> Result<(), SynthError> {
    if !(0.0..=1.0).contains(&r.0) || !(0.0..=1.0).contains(&r.1) || r.0 >= r.1 {
        return Err(SynthError::Config(format!(
            "{name} must satisfy 0 <= lo < hi <= 1 (got {:?})",
            r
        )));
    }
    Ok(())
}

impl Synthesizer {
    /// Anomaly source files found unreadable so far (skipped, each with why).
    pub fn skipped_sources(&self) -> Vec<String> {
        self.sources.iter().flat_map(|s| s.0.skipped()).collect()
    }

    /// Validates the config and opens every source (texture folders are decoded now).
    pub fn new(config: SynthConfig) -> Result<Synthesizer, SynthError> {
        Self::with_own(config, None)
    }

    /// As [`Synthesizer::new`], with the category's training images for the `self` source.
    pub fn with_own(
        config: SynthConfig,
        own: Option<Arc<ImageSet>>,
    ) -> Result<Synthesizer, SynthError> {
        if config.sources.is_empty() {
            return Err(SynthError::Config("no anomaly source configured".into()));
        }
        if !(0.0..=1.0).contains(&config.normal_prob) {
            return Err(SynthError::Config(format!(
                "normal_prob must be in [0, 1] (got {})",
                config.normal_prob
            )));
        }
        config.perlin.validate().map_err(SynthError::Config)?;
        config.strokes.validate().map_err(SynthError::Config)?;
        config.shade.validate().map_err(SynthError::Config)?;
        let mut sources = Vec::new();
        for ws in &config.sources {
            if !(ws.weight.is_finite() && ws.weight > 0.0) {
                return Err(SynthError::Config(format!(
                    "source {}: weight must be > 0 (got {})",
                    ws.source, ws.weight
                )));
            }
            let s = Source::open(&ws.source, (256, 256), own.as_ref())?;
            let beta = match s.kind() {
                Kind::Sia => config.sia_beta,
                _ => config.texture_beta,
            }
            .unwrap_or(s.default_beta());
            check_range("beta range", beta)?;
            sources.push((s, ws.weight, beta));
        }
        let total_weight = sources.iter().map(|s| s.1).sum();
        Ok(Synthesizer {
            config,
            sources,
            total_weight,
        })
    }

    pub fn config(&self) -> &SynthConfig {
        &self.config
    }

    /// The configured rule's foreground mask of a base image (compute once per base image).
    pub fn foreground(&self, base: &RgbImage) -> GrayImage {
        foreground_mask(&self.config.foreground, base)
    }

    /// A training sample: normal with probability `normal_prob`, else anomalous.
    pub fn sample(
        &self,
        base: &RgbImage,
        foreground: &GrayImage,
        seed: u64,
        index: u64,
    ) -> SynthSample {
        let mut rng = sample_rng(seed, index);
        if rng.gen::<f64>() < self.config.normal_prob {
            let (w, h) = base.dimensions();
            return SynthSample {
                image: base.clone(),
                mask: GrayImage::new(w, h),
                kind: Kind::Normal,
                beta: 0.0,
                source_file: None,
                ops: Vec::new(),
                attempts: 0,
                foreground_ignored: false,
                strokes: false,
            };
        }
        self.anomalous_with(&mut rng, base, foreground)
    }

    /// Always an anomaly (for AFS). Equals `sample` whenever `sample` draws an anomaly.
    pub fn anomalous(
        &self,
        base: &RgbImage,
        foreground: &GrayImage,
        seed: u64,
        index: u64,
    ) -> SynthSample {
        let mut rng = sample_rng(seed, index);
        let _normal_draw: f64 = rng.gen();
        self.anomalous_with(&mut rng, base, foreground)
    }

    fn anomalous_with(
        &self,
        rng: &mut ChaCha8Rng,
        base: &RgbImage,
        foreground: &GrayImage,
    ) -> SynthSample {
        let (w, h) = base.dimensions();
        // Source choice first: a categorical draw over the weights.
        let mut pick = rng.gen::<f64>() * self.total_weight;
        let mut chosen = &self.sources[self.sources.len() - 1];
        for s in &self.sources {
            if pick < s.1 {
                chosen = s;
                break;
            }
            pick -= s.1;
        }
        let (source, _, beta_range) = chosen;
        let fg_ok = foreground.dimensions() == (w, h);
        let fg = foreground.as_raw();
        let mut attempts = 0;
        let mut foreground_ignored = !fg_ok;
        // No draw at all when shading is off, so the official stream is unchanged.
        let shaded = self.config.shade.prob > 0.0 && rng.gen::<f64>() < self.config.shade.prob;
        let (mask, strokes, shaded_image) = loop {
            attempts += 1;
            // No draw at all when strokes are off, so the official stream is unchanged.
            let strokes = !shaded
                && self.config.strokes.prob > 0.0
                && rng.gen::<f64>() < self.config.strokes.prob;
            let mut m = if shaded {
                shade_mask(rng, w, h, &self.config.shade)
            } else if strokes {
                stroke_mask(rng, w, h, &self.config.strokes)
            } else {
                perlin_mask(rng, w, h, &self.config.perlin)
            };
            // OR of all mask bytes (no early exit, so the loops vectorise).
            let mut any = if foreground_ignored {
                m.iter().fold(0u8, |a, &v| a | v)
            } else {
                m.iter_mut().zip(fg).fold(0u8, |a, (v, &f)| {
                    *v = if f != 0 { *v } else { 0 };
                    a | *v
                })
            };
            // A shaded region's label is its faded-in part: a sliver thinner than the fade has
            // none, and counts as empty.
            let shaded_image = if shaded && any != 0 {
                let (image, label) = shade(rng, base, &m, &self.config.shade);
                m = label;
                any = m.iter().fold(0u8, |a, &v| a | v);
                Some(image)
            } else {
                None
            };
            let empty = any == 0;
            if !empty || !self.config.redraw_empty || attempts >= 4 * MAX_REDRAWS {
                break (m, strokes, shaded_image);
            }
            if attempts == MAX_REDRAWS {
                foreground_ignored = true;
            }
        };
        if shaded {
            return SynthSample {
                image: shaded_image.unwrap_or_else(|| base.clone()), // None: the mask was empty
                mask,
                kind: Kind::Shade,
                beta: 1.0,
                source_file: None,
                ops: Vec::new(),
                attempts,
                foreground_ignored,
                strokes: false,
            };
        }
        let drawn = source.draw(rng, w, h);
        let beta = rng.gen_range(beta_range.0..beta_range.1);
        // A grayscale product gets grayscale anomalies (see `gray_rgb`); colour images as before.
        let image = if crate::blend::is_gray(base) {
            blend(
                base,
                &mask,
                &crate::blend::gray_rgb(&drawn.image),
                beta as f32,
            )
        } else {
            blend(base, &mask, &drawn.image, beta as f32)
        };
        SynthSample {
            image,
            mask,
            kind: source.kind(),
            beta,
            source_file: drawn.file,
            ops: drawn.ops,
            attempts,
            foreground_ignored,
            strokes,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> RgbImage {
        RgbImage::from_fn(64, 64, |x, y| {
            image::Rgb([(x * 4) as u8, (y * 4) as u8, 128])
        })
    }

    #[test]
    fn normal_fraction_and_consistency_with_anomalous() {
        let s = Synthesizer::new(SynthConfig::default()).unwrap();
        let b = base();
        let fg = s.foreground(&b);
        let mut normal = 0;
        for i in 0..400 {
            let x = s.sample(&b, &fg, 7, i);
            if x.kind == Kind::Normal {
                normal += 1;
                assert_eq!(x.image, b);
                assert!(x.mask.iter().all(|&v| v == 0));
            } else {
                let y = s.anomalous(&b, &fg, 7, i);
                assert_eq!(x.image, y.image);
                assert_eq!(x.mask, y.mask);
            }
        }
        // Binomial(400, 0.5): 5 sigma = 50.
        assert!((150..=250).contains(&normal), "{normal}");
    }

    #[test]
    fn a_grayscale_image_gets_grayscale_anomalies() {
        let s = Synthesizer::new(SynthConfig::default()).unwrap();
        let gray = RgbImage::from_fn(64, 64, |x, y| {
            let v = (x * 2 + y) as u8;
            image::Rgb([v, v, v])
        });
        let fg = s.foreground(&gray);
        let mut changed = 0;
        for i in 0..20 {
            let y = s.anomalous(&gray, &fg, 7, i);
            assert!(crate::blend::is_gray(&y.image), "sample {i} is not gray");
            changed += usize::from(y.image != gray);
        }
        assert!(changed > 0);
    }

    #[test]
    fn redraw_gives_nonempty_masks_inside_foreground() {
        let cfg = SynthConfig {
            redraw_empty: true,
            ..SynthConfig::default()
        };
        let s = Synthesizer::new(cfg).unwrap();
        let b = base();
        // Foreground = left half only.
        let fg = GrayImage::from_fn(64, 64, |x, _| image::Luma([if x < 32 { 255 } else { 0 }]));
        for i in 0..50 {
            let x = s.anomalous(&b, &fg, 1, i);
            assert!(x.mask.contains(&255));
            assert!(!x.foreground_ignored);
            for (p, (&m, &f)) in x.mask.iter().zip(fg.iter()).enumerate() {
                assert!(m == 0 || f == 255, "mask outside foreground at {p}");
            }
            for (q, (o, bb)) in x.image.pixels().zip(b.pixels()).enumerate() {
                if x.mask.as_raw()[q] == 0 {
                    assert_eq!(o, bb);
                }
            }
            assert!((0.2..1.0).contains(&x.beta));
        }
    }

    #[test]
    fn shading_replaces_the_blend_in_its_share_and_changes_only_its_label() {
        let b = RgbImage::from_fn(256, 256, |x, y| image::Rgb([x as u8, y as u8, 90]));
        // Foreground: the left half only.
        let fg = GrayImage::from_fn(256, 256, |x, _| {
            image::Luma([if x < 128 { 255 } else { 0 }])
        });
        let cfg = SynthConfig {
            shade: ShadeParams {
                prob: 0.5,
                ..ShadeParams::default()
            },
            redraw_empty: true,
            ..SynthConfig::default()
        };
        let s = Synthesizer::new(cfg).unwrap();
        let mut shaded = 0;
        for i in 0..60 {
            let x = s.anomalous(&b, &fg, 11, i);
            if x.kind != Kind::Shade {
                continue;
            }
            shaded += 1;
            assert!(x.mask.iter().any(|&v| v != 0), "sample {i}: empty label");
            for (q, (o, bb)) in x.image.pixels().zip(b.pixels()).enumerate() {
                let l = x.mask.as_raw()[q];
                assert!(o == bb || l != 0, "sample {i}: changed outside its label");
                assert!(
                    l == 0 || q % 256 < 128,
                    "sample {i}: label outside the foreground"
                );
            }
        }
        assert!(
            (15..=45).contains(&shaded),
            "{shaded} of 60 shaded at prob 0.5"
        );
        let bad = SynthConfig {
            shade: ShadeParams {
                gain: (0.5, 0.1),
                ..ShadeParams::default()
            },
            ..SynthConfig::default()
        };
        assert!(Synthesizer::new(bad).is_err());
    }

    #[test]
    fn strokes_replace_the_perlin_region_in_their_share() {
        let b = RgbImage::from_fn(256, 256, |x, y| image::Rgb([x as u8, y as u8, 90]));
        let with = |prob: f64| {
            let cfg = SynthConfig {
                strokes: StrokeParams {
                    prob,
                    ..StrokeParams::default()
                },
                redraw_empty: true,
                ..SynthConfig::default()
            };
            Synthesizer::new(cfg).unwrap()
        };
        let (all, half) = (with(1.0), with(0.5));
        let fg = all.foreground(&b);
        let (mut thin, mut strokes) = (0, 0);
        for i in 0..60 {
            let x = all.anomalous(&b, &fg, 5, i);
            assert!(x.strokes);
            // Strokes only: never more than 3 lines of ≤ 5 px × ≤ 128 px (+ caps).
            assert!(crate::mask_fraction(&x.mask) < 0.04, "sample {i}");
            for (q, (o, bb)) in x.image.pixels().zip(b.pixels()).enumerate() {
                if x.mask.as_raw()[q] == 0 {
                    assert_eq!(o, bb, "sample {i} changed outside its stroke");
                }
            }
            let y = half.anomalous(&b, &fg, 5, i);
            thin += usize::from(crate::mask_fraction(&y.mask) < 0.04);
            strokes += usize::from(y.strokes);
        }
        // About half strokes, the rest Perlin regions (mostly larger than 4 % of the image).
        assert!((15..=50).contains(&thin), "{thin} of 60 thin at prob 0.5");
        assert!(
            (15..=45).contains(&strokes) && strokes <= thin,
            "{strokes} strokes, {thin} thin"
        );
        let bad = SynthConfig {
            strokes: StrokeParams {
                prob: -0.1,
                ..StrokeParams::default()
            },
            ..SynthConfig::default()
        };
        assert!(Synthesizer::new(bad)
            .unwrap_err()
            .to_string()
            .contains("strokes.prob"));
    }

    #[test]
    fn self_source_blends_the_given_images_and_needs_them() {
        let own: Vec<(PathBuf, Arc<RgbImage>)> = (0..3u8)
            .map(|k| {
                let size = if k == 0 { 256 } else { 40 };
                let img = RgbImage::from_pixel(size, size, image::Rgb([60 * k, 200, 30]));
                (PathBuf::from(format!("train/{k}.png")), Arc::new(img))
            })
            .collect();
        let first = own[0].1.clone();
        let set = ImageSet::from_images(std::path::Path::new("train"), own, (256, 256)).unwrap();
        assert_eq!(set.get(1).unwrap().dimensions(), (256, 256));
        // An image already at the set's size is shared, not copied.
        assert!(Arc::ptr_eq(&set.get(0).unwrap(), &first));
        let cfg = SynthConfig {
            sources: vec![WeightedSource {
                source: SourceSpec::Own,
                weight: 1.0,
            }],
            redraw_empty: true,
            ..SynthConfig::default()
        };
        let s = Synthesizer::with_own(cfg.clone(), Some(Arc::new(set))).unwrap();
        let b = base();
        let fg = s.foreground(&b);
        for i in 0..10 {
            let x = s.anomalous(&b, &fg, 3, i);
            assert_eq!(x.kind, Kind::Own);
            let f = x.source_file.as_ref().unwrap();
            assert!(f.starts_with("train"), "{}", f.display());
            assert_eq!(x.ops.len(), 3, "augmented as textures");
            assert!(x.mask.contains(&255));
            for (q, (o, bb)) in x.image.pixels().zip(b.pixels()).enumerate() {
                if x.mask.as_raw()[q] == 0 {
                    assert_eq!(o, bb);
                }
            }
        }
        let e = Synthesizer::new(cfg).unwrap_err().to_string();
        assert!(e.contains("'self'") && e.contains("realnet train"), "{e}");
        let e = ImageSet::from_images(std::path::Path::new("t"), vec![], (8, 8)).unwrap_err();
        assert!(e.to_string().contains("no images"), "{e}");
        assert_eq!("self".parse::<SourceSpec>().unwrap(), SourceSpec::Own);
        assert_eq!(SourceSpec::Own.to_string(), "self");
    }

    #[test]
    fn bad_configs_are_rejected() {
        let bad = |c: SynthConfig| Synthesizer::new(c).unwrap_err().to_string();
        assert!(bad(SynthConfig {
            sources: vec![],
            ..Default::default()
        })
        .contains("no anomaly source"));
        assert!(bad(SynthConfig {
            normal_prob: 1.5,
            ..Default::default()
        })
        .contains("normal_prob"));
        assert!(bad(SynthConfig {
            sia_beta: None,
            texture_beta: Some((0.9, 0.1)),
            ..Default::default()
        })
        .contains("beta"));
        let cfg: SynthConfig = serde_json::from_str(
            r#"{"sources":[{"source":"procedural","weight":2}],"foreground":"otsu:gray:dark:close6:open6","redraw_empty":true}"#,
        )
        .unwrap();
        assert_eq!(cfg.sources[0].weight, 2.0);
        assert!(cfg.redraw_empty);
        assert_eq!(cfg.normal_prob, 0.5);
    }
}
