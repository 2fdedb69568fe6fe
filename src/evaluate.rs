//! `realnet test`: the category's test split through [`crate::infer::Detector`], metrics from
//! `realnet-metrics` (the same code as `realnet metrics`), optional `.npy` maps and overlays.
use crate::infer::{Detector, Prediction};
use crate::overlay;
use anyhow::Context;
use image::{GrayImage, RgbImage};
use realnet_data::layout::{Category, Sample};
use realnet_metrics::{Map, Report, Scored};
use std::path::{Path, PathBuf};

pub struct TestOptions {
    pub data: PathBuf,
    pub maps_out: Option<PathBuf>,
    pub overlays_out: Option<PathBuf>,
    pub batch: usize,
}

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
        for ((s, img, mask), p) in ok.iter().zip(preds) {
            write_outputs(det, opts, s, img, mask.as_ref(), &p)?;
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
        }
        bar.inc(chunk.len() as u64);
    }
    bar.finish_and_clear();
    let report = realnet_metrics::evaluate(&scored).context("computing metrics")?;
    Ok(TestOutcome {
        report,
        images,
        skipped,
    })
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
        let o = overlay::overlay(img, &p.map, mask, Some(det.meta.threshold.pixel as f32));
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
    let mut buf = std::io::Cursor::new(Vec::new());
    img.write_to(&mut buf, image::ImageFormat::Png)?;
    crate::bundle::write_atomic(path, buf.get_ref())
        .with_context(|| format!("writing {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

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
