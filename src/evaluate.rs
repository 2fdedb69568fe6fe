//! `realnet test`: the category's test split through [`crate::infer::Detector`], metrics from
//! `realnet-metrics` (the same code as `realnet metrics`), optional `.npy` maps, overlays and the HTML
//! report (`realnet-report`).
use crate::bundle::{CalibrationRecord, WeightChoice};
use crate::infer::{Detector, Prediction};
use crate::overlay;
use anyhow::Context;
use image::{GrayImage, RgbImage};
use realnet_data::layout::{Category, Sample};
use realnet_metrics::{Map, Report, Scored};
use realnet_report::{Gallery, ImageEntry, Picture, ReportInput};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

pub struct TestOptions {
    pub data: PathBuf,
    pub maps_out: Option<PathBuf>,
    pub overlays_out: Option<PathBuf>,
    /// Write the HTML report as `DIR/report.html`.
    pub report_out: Option<PathBuf>,
    /// The run folder (named in the report).
    pub run: Option<PathBuf>,
    pub batch: usize,
}

/// The report file's name inside `--report DIR`.
pub const REPORT_FILE: &str = "report.html";

/// How many of the most and of the least anomalous images the report's gallery shows (besides every
/// miss).
pub const REPORT_GALLERY_SIZE: usize = 6;

/// One scored test image.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ImageResult {
    pub path: PathBuf,
    pub defect: String,
    pub score: f64,
    pub normalised: f64,
    pub anomalous: bool,
}

pub struct TestOutcome {
    pub report: Report,
    pub images: Vec<ImageResult>,
    pub skipped: Vec<String>,
}

pub fn test(det: &Detector, opts: &TestOptions) -> anyhow::Result<TestOutcome> {
    let cat = Category::open(&opts.data)?;
    if cat.test.is_empty() {
        return Err(crate::error::UserError::BadInput(format!(
            "{}: no test images (expected test/<defect>/*)",
            cat.root.display()
        ))
        .into());
    }
    if let Some(s) = cat.missing_masks().next() {
        return Err(crate::error::UserError::BadInput(format!(
            "{}: defective test image without a mask (expected it under ground_truth/{}/)",
            s.path.display(),
            s.defect
        ))
        .into());
    }
    let size = det.image_size();
    let bar = crate::progress::bar(cat.test.len() as u64, "test");
    let mut scored = Vec::with_capacity(cat.test.len());
    let mut images = Vec::with_capacity(cat.test.len());
    let mut skipped = Vec::new();
    // For the report's gallery: each scored image at the network size and its mask.
    let mut kept: Vec<(RgbImage, Option<GrayImage>)> = Vec::new();
    for chunk in cat.test.chunks(opts.batch.max(1)) {
        let loaded = realnet_data::load::load_all(chunk, Some((size, size)));
        let mut ok: Vec<(&Sample, RgbImage, Option<GrayImage>)> = Vec::new();
        for (s, r) in chunk.iter().zip(loaded) {
            match r {
                Ok(l) => ok.push((s, l.image, l.mask)),
                Err(e) => {
                    tracing::warn!("skipping {e}");
                    skipped.push(e.to_string());
                }
            }
        }
        let imgs: Vec<&RgbImage> = ok.iter().map(|o| &o.1).collect();
        let preds = det.predict(&imgs);
        for ((s, img, mask), p) in ok.into_iter().zip(preds) {
            write_outputs(det, opts, s, &img, mask.as_ref(), &p)?;
            images.push(ImageResult {
                path: s.path.clone(),
                defect: s.defect.clone(),
                score: p.score,
                normalised: p.normalised,
                anomalous: p.anomalous,
            });
            scored.push(Scored {
                defect: s.defect.clone(),
                name: format!("{}/{}", s.defect, s.stem()),
                mask: mask
                    .as_ref()
                    .map(|m| m.as_raw().iter().map(|&v| v > 0).collect()),
                map: Map::new(p.size as usize, p.size as usize, p.map)?,
                image_score: p.score as f32,
            });
            if opts.report_out.is_some() {
                kept.push((img, mask));
            }
        }
        bar.inc(chunk.len() as u64);
    }
    bar.finish_and_clear();
    let report = match &opts.report_out {
        None => realnet_metrics::evaluate(&scored).context("computing metrics")?,
        Some(dir) => {
            let (report, curves) = realnet_metrics::evaluate_with_curves(
                &scored,
                realnet_metrics::DEFAULT_CURVE_POINTS,
            )
            .context("computing metrics")?;
            let input = report_input(
                det, opts, &report, curves, &scored, &images, &kept, &skipped,
            )?;
            write_report(dir, &input)?;
            report
        }
    };
    Ok(TestOutcome {
        report,
        images,
        skipped,
    })
}

/// Everything the report shows: metrics, curves, every image's score, pictures of the gallery images
/// (the same overlays as `--overlays` / `predict --out`) and the model's metadata.
#[allow(clippy::too_many_arguments)]
fn report_input(
    det: &Detector,
    opts: &TestOptions,
    report: &Report,
    curves: realnet_metrics::Curves,
    scored: &[Scored],
    results: &[ImageResult],
    kept: &[(RgbImage, Option<GrayImage>)],
    skipped: &[String],
) -> anyhow::Result<ReportInput> {
    let meta = &det.meta;
    // The detector's f64 scores (not the metrics' f32 copies), so that "predicted" is exactly
    // `ImageResult::anomalous`.
    let images: Vec<ImageEntry> = scored
        .iter()
        .zip(results)
        .map(|(s, r)| ImageEntry {
            name: s.name.clone(),
            defect: s.defect.clone(),
            score: r.score,
            anomalous: s.is_anomalous(),
        })
        .collect();
    let gallery = Gallery::pick(&images, meta.threshold.image, REPORT_GALLERY_SIZE);
    let mut pictures = BTreeMap::new();
    for i in gallery.indices() {
        let (Some(s), Some((img, mask))) = (scored.get(i), kept.get(i)) else {
            continue;
        };
        let ov = overlay::for_prediction(meta, img, &s.map.data, mask.as_ref());
        pictures.insert(
            i,
            Picture {
                image_png: overlay::png_bytes(img).context("encoding a gallery image")?,
                overlay_png: overlay::png_bytes(&ov).context("encoding a gallery overlay")?,
            },
        );
    }
    let mut notes = report.notes();
    if !skipped.is_empty() {
        notes.push(format!(
            "{} test image(s) could not be read and are not in this report: {}",
            skipped.len(),
            skipped.join("; ")
        ));
    }
    Ok(ReportInput {
        title: format!("realnet test: {}", meta.category),
        metadata: metadata(det, opts),
        metrics: report.clone(),
        notes,
        curves,
        images,
        image_threshold: meta.threshold.image,
        pixel_threshold: meta.threshold.pixel,
        pictures,
        gallery_size: REPORT_GALLERY_SIZE,
    })
}

/// The model's metadata as the report lists it.
fn metadata(det: &Detector, opts: &TestOptions) -> Vec<(String, String)> {
    let m = &det.meta;
    let t = &m.threshold;
    let opt = |v: Option<f64>| v.map_or_else(|| "n/a".to_string(), |v| format!("{v:.4}"));
    let mut out = vec![
        ("category".to_string(), m.category.clone()),
        ("backbone".to_string(), m.backbone.clone()),
        ("preset".to_string(), det.config.preset.clone()),
        ("image size".to_string(), format!("{0}×{0}", m.image_size)),
        (
            "image score".to_string(),
            format!("max of the {0}×{0} mean-pooled map", m.score_pool),
        ),
        (
            "image threshold".to_string(),
            format!("{:.6} ({})", t.image, t.method),
        ),
        ("pixel threshold".to_string(), format!("{:.6}", t.pixel)),
        match &m.calibration {
            None => (
                "validation".to_string(),
                format!(
                    "{} normal, {} synthetic; AUROC normal vs synthetic {}",
                    t.val_normal.n,
                    t.val_synthetic.n,
                    opt(t.val_auroc)
                ),
            ),
            Some(c) => ("calibration".to_string(), calibration_row(c, t.val_auroc)),
        },
        ("seed".to_string(), m.seed.to_string()),
    ];
    if let Some(c) = &m.memory_weight {
        out.push(("patch memory".to_string(), memory_row(c)));
    }
    out.extend([
        ("training steps".to_string(), m.steps.to_string()),
        (
            "training images".to_string(),
            format!("{} (+ {} held out)", m.train_images, m.val_images),
        ),
        (
            "training time".to_string(),
            format!(
                "{:.0} s ({:.1} min) on {}",
                m.train_seconds,
                m.train_seconds / 60.0,
                m.device
            ),
        ),
        ("trained with realnet".to_string(), m.tool_version.clone()),
        (
            "report by realnet".to_string(),
            env!("CARGO_PKG_VERSION").to_string(),
        ),
        (
            "backbone weights sha256".to_string(),
            m.backbone_sha256.clone().unwrap_or_else(|| "n/a".into()),
        ),
        ("training data".to_string(), m.data.display().to_string()),
        ("test data".to_string(), opts.data.display().to_string()),
        (
            "inference precision".to_string(),
            det.precision().name().to_string(),
        ),
    ]);
    if let Some(r) = &opts.run {
        out.push(("run".to_string(), r.display().to_string()));
    }
    out
}

/// Where a calibrated model's threshold and weight come from, and what they were before.
fn calibration_row(c: &CalibrationRecord, auroc: Option<f64>) -> String {
    format!(
        "{} good and {} defective images ({} with masks) of {}; AUROC good vs defective {}; \
         calibrated from {} (image threshold was {:.6}, fusion weight {}{})",
        c.good,
        c.defective,
        c.with_masks,
        c.data.display(),
        auroc.map_or_else(|| "n/a".to_string(), |v| format!("{v:.4}")),
        c.from_run.display(),
        c.previous_threshold,
        c.previous_weight
            .map_or_else(|| "n/a".to_string(), |w| w.to_string()),
        // Records written before the image weight existed say nothing of it.
        c.previous_image_weight
            .map_or_else(String::new, |w| format!(", for the image score {w}"))
    )
}

/// The patch memory's fusion weight, how it was chosen and what the validation data said of each
/// candidate — so a user can see how close the call was.
fn memory_row(c: &WeightChoice) -> String {
    let table: Vec<String> = c
        .candidates
        .iter()
        .map(|k| {
            format!(
                "{:.1}: {:.4} / {:.4}",
                k.weight, k.image_auroc, k.pixel_auroc
            )
        })
        .collect();
    let form = match &c.balance {
        Some(b) => format!(
            "map = logistic(w·(ln p − {:.3}) / {:.3} + (1−w)·(ln q − {:.3}) / {:.3}) (both logs \
             standardised on held-out normal pixels)",
            b.log_p_mean, b.log_p_sd, b.log_q_mean, b.log_q_sd
        ),
        None => "map = p^w · q^(1−w)".into(),
    };
    let blurs: Vec<String> = c
        .blur_candidates
        .iter()
        .map(|b| format!("σ {}: {:.4} / {:.4}", b.sigma, b.image_auroc, b.pixel_auroc))
        .collect();
    let blur = match c.blur_sigma {
        Some(s) if !blurs.is_empty() => {
            format!(
                "; the memory's blur σ = {s}, by σ at its best w: {}",
                blurs.join(", ")
            )
        }
        _ => String::new(),
    };
    format!(
        "{form}, RealNet's weight w = {}, for the image score {} ({}); validation image / pixel \
         AUROC by w: {}{blur}",
        c.chosen,
        c.image_weight(),
        c.rule,
        table.join(", ")
    )
}

/// Renders the page and writes `dir/report.html` atomically.
pub fn write_report(dir: &Path, input: &ReportInput) -> anyhow::Result<PathBuf> {
    let html = realnet_report::render(input).context("rendering the report")?;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let path = dir.join(REPORT_FILE);
    crate::bundle::write_atomic(&path, html.as_bytes())
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(path)
}

fn write_outputs(
    det: &Detector,
    opts: &TestOptions,
    s: &Sample,
    img: &RgbImage,
    mask: Option<&GrayImage>,
    p: &Prediction,
) -> anyhow::Result<()> {
    if let Some(dir) = &opts.maps_out {
        let d = dir.join(&s.defect);
        std::fs::create_dir_all(&d).with_context(|| format!("creating {}", d.display()))?;
        write_npy_f32(
            &d.join(format!("{}.npy", s.stem())),
            p.size as usize,
            p.size as usize,
            &p.map,
        )?;
    }
    if let Some(dir) = &opts.overlays_out {
        let d = dir.join(&s.defect);
        std::fs::create_dir_all(&d).with_context(|| format!("creating {}", d.display()))?;
        let o = overlay::for_prediction(&det.meta, img, &p.map, mask);
        save_png_atomic(&o, &d.join(format!("{}.png", s.stem())))?;
    }
    Ok(())
}

/// Writes an H×W float32 `.npy` (format 1.0, C order), atomically.
pub fn write_npy_f32(path: &Path, h: usize, w: usize, data: &[f32]) -> anyhow::Result<()> {
    let mut header = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': ({h}, {w}), }}");
    // Magic (6) + version (2) + length (2) + header + '\n' must be a multiple of 64.
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(' ');
    }
    header.push('\n');
    let mut bytes = Vec::with_capacity(10 + header.len() + data.len() * 4);
    bytes.extend_from_slice(b"\x93NUMPY\x01\x00");
    bytes.extend_from_slice(&(header.len() as u16).to_le_bytes());
    bytes.extend_from_slice(header.as_bytes());
    for v in data {
        bytes.extend_from_slice(&v.to_le_bytes());
    }
    crate::bundle::write_atomic(path, &bytes).with_context(|| format!("writing {}", path.display()))
}

pub fn save_png_atomic(img: &RgbImage, path: &Path) -> anyhow::Result<()> {
    let bytes = overlay::png_bytes(img)?;
    crate::bundle::write_atomic(path, &bytes).with_context(|| format!("writing {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bundle::WeightCandidate;

    #[test]
    fn memory_row_names_the_weight_and_every_candidate() {
        let c = WeightChoice {
            chosen: 0.2,
            image_chosen: None,
            rule: "best".into(),
            candidates: vec![
                WeightCandidate {
                    weight: 0.0,
                    image_auroc: 0.99,
                    pixel_auroc: 0.87,
                },
                WeightCandidate {
                    weight: 0.2,
                    image_auroc: 0.988,
                    pixel_auroc: 0.9246,
                },
            ],
            balance: None,
            blur_sigma: None,
            blur_candidates: Vec::new(),
        };
        let r = memory_row(&c);
        // Older models score images on the map itself.
        assert!(r.contains("w = 0.2, for the image score 0.2 (best)"), "{r}");
        let own = memory_row(&WeightChoice {
            image_chosen: Some(0.1),
            ..c.clone()
        });
        assert!(
            own.contains("w = 0.2, for the image score 0.1 (best)"),
            "{own}"
        );
        assert!(
            r.ends_with("0.0: 0.9900 / 0.8700, 0.2: 0.9880 / 0.9246"),
            "{r}"
        );
        assert!(r.starts_with("map = p^w · q^(1−w),"), "{r}");
        // A chosen blur names every candidate σ after the weights.
        let blurred = memory_row(&WeightChoice {
            blur_sigma: Some(8.0),
            blur_candidates: vec![
                crate::bundle::BlurCandidate {
                    sigma: 4.0,
                    image_auroc: 0.9,
                    pixel_auroc: 0.8,
                },
                crate::bundle::BlurCandidate {
                    sigma: 8.0,
                    image_auroc: 0.91,
                    pixel_auroc: 0.82,
                },
            ],
            ..c.clone()
        });
        assert!(
            blurred
                .ends_with("σ = 8, by σ at its best w: σ 4: 0.9000 / 0.8000, σ 8: 0.9100 / 0.8200"),
            "{blurred}"
        );
        // A balanced model shows the standardisation it fuses with.
        let balanced = WeightChoice {
            balance: Some(crate::bundle::FusionBalance {
                log_p_mean: -7.0258,
                log_p_sd: 1.6046,
                log_q_mean: 0.1183,
                log_q_sd: 0.1213,
            }),
            ..c
        };
        let r = memory_row(&balanced);
        assert!(
            r.starts_with(
                "map = logistic(w·(ln p − -7.026) / 1.605 + (1−w)·(ln q − 0.118) / 0.121)"
            ),
            "{r}"
        );
    }

    #[test]
    fn calibration_row_says_where_the_threshold_came_from() {
        let c = crate::bundle::CalibrationRecord {
            data: "cal".into(),
            good: 95,
            defective: 194,
            with_masks: 190,
            skipped: vec![],
            from_run: "runs/mt".into(),
            previous_threshold: 0.9106,
            previous_weight: Some(0.6),
            previous_image_weight: None,
            previous_blur_sigma: None,
        };
        assert_eq!(
            calibration_row(&c, Some(0.96994)),
            "95 good and 194 defective images (190 with masks) of cal; AUROC good vs defective \
             0.9699; calibrated from runs/mt (image threshold was 0.910600, fusion weight 0.6)"
        );
        let c = crate::bundle::CalibrationRecord {
            previous_image_weight: Some(0.3),
            ..c
        };
        assert!(calibration_row(&c, None).ends_with(
            "(image threshold was 0.910600, fusion weight 0.6, for the image score 0.3)"
        ));
    }

    #[test]
    fn report_is_written_atomically_into_a_new_folder() {
        let d = tempfile::tempdir().unwrap();
        let dir = d.path().join("new/report");
        let input = realnet_report::sample::sample_input(4, 4);
        let p = write_report(&dir, &input).unwrap();
        assert_eq!(p, dir.join(REPORT_FILE));
        let html = std::fs::read_to_string(&p).unwrap();
        assert_eq!(html, realnet_report::render(&input).unwrap());
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 1);
    }

    #[test]
    fn npy_round_trips_through_the_metrics_reader() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("m.npy");
        let data: Vec<f32> = (0..12).map(|i| i as f32 * 0.5).collect();
        write_npy_f32(&p, 3, 4, &data).unwrap();
        let m = realnet_metrics::read_npy(&p).unwrap();
        assert_eq!((m.height, m.width), (3, 4));
        assert_eq!(m.data, data);
    }
}
