//! A synthetic [`ReportInput`] (made-up scores, maps and pictures) for tests, the example page and the
//! browser check — no model needed.
use crate::overlay::{overlay, png_bytes};
use crate::{Gallery, ImageEntry, Picture, ReportInput};
use image::{GrayImage, Luma, Rgb, RgbImage};
use realnet_metrics::{evaluate_with_curves, Map, Scored, DEFAULT_CURVE_POINTS};

/// A page's input: `n_good` normal and `n_bad` defective 64×64 images in two defect types, scored so
/// that some are missed at the threshold 0.5; pictures for every gallery image.
pub fn sample_input(n_good: usize, n_bad: usize) -> ReportInput {
    let (w, h) = (64usize, 64usize);
    let mut scored = Vec::new();
    let mut raw = Vec::new();
    for i in 0..n_good + n_bad {
        let bad = i >= n_good;
        let k = i as f32;
        let mut mask = GrayImage::new(w as u32, h as u32);
        let mut map = vec![0f32; w * h];
        let (cx, cy) = (16.0 + (k * 7.0) % 32.0, 20.0 + (k * 5.0) % 24.0);
        // a "miss" pattern: every 4th defective image has a weak response, every 5th good a strong one
        let peak = match (bad, i % 4 == 0, i % 5 == 0) {
            (true, true, _) => 0.35,
            (true, false, _) => 0.6 + 0.04 * (i % 9) as f32,
            (false, _, true) => 0.55,
            _ => 0.1 + 0.03 * (i % 7) as f32,
        };
        for y in 0..h {
            for x in 0..w {
                let d2 = (x as f32 - cx).powi(2) + (y as f32 - cy).powi(2);
                map[y * w + x] = peak * (-d2 / 60.0).exp();
                if bad && d2 < 30.0 {
                    mask.put_pixel(x as u32, y as u32, Luma([255]));
                }
            }
        }
        let score = map.iter().copied().fold(0f32, f32::max);
        let defect = match (bad, i % 2) {
            (false, _) => "good",
            (true, 0) => "crack",
            _ => "scratch",
        };
        scored.push(Scored {
            defect: defect.into(),
            name: format!("{defect}/{i:03}"),
            mask: bad.then(|| mask.as_raw().iter().map(|&v| v > 0).collect()),
            map: Map {
                width: w,
                height: h,
                data: map.clone(),
            },
            image_score: score,
        });
        raw.push((map, bad.then_some(mask)));
    }
    let (report, curves) =
        evaluate_with_curves(&scored, DEFAULT_CURVE_POINTS).expect("the sample set is valid");
    let images: Vec<ImageEntry> = scored
        .iter()
        .map(|s| ImageEntry {
            name: s.name.clone(),
            defect: s.defect.clone(),
            score: f64::from(s.image_score),
            anomalous: s.is_anomalous(),
        })
        .collect();
    let (threshold, pixel_threshold) = (0.5, 0.4);
    let mut input = ReportInput {
        title: "realnet test: sample".into(),
        metadata: vec![
            ("backbone".into(), "none (synthetic sample)".into()),
            ("preset".into(), "sample".into()),
        ],
        notes: report.notes(),
        metrics: report,
        curves,
        images,
        image_threshold: threshold,
        pixel_threshold,
        pictures: Default::default(),
        gallery_size: 4,
    };
    let pick = Gallery::pick(&input.images, threshold, input.gallery_size);
    for i in pick.indices() {
        let (map, mask) = &raw[i];
        let img = RgbImage::from_fn(w as u32, h as u32, |x, y| {
            Rgb([90 + (x * 2) as u8, 90 + (y * 2) as u8, 120])
        });
        let ov = overlay(&img, map, mask.as_ref(), Some(pixel_threshold as f32));
        input.pictures.insert(
            i,
            Picture {
                image_png: png_bytes(&img).expect("PNG encoding in memory"),
                overlay_png: png_bytes(&ov).expect("PNG encoding in memory"),
            },
        );
    }
    input
}
