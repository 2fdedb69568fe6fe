//! The SVG plots, drawn with `plotters`' SVG backend into strings.
use crate::{Curve, ImageEntry, ReportError};
use plotters::prelude::*;

pub(crate) const WIDTH: u32 = 400;
pub(crate) const HEIGHT: u32 = 320;

const IMAGE_COLOUR: RGBColor = RGBColor(31, 119, 180);
const PIXEL_COLOUR: RGBColor = RGBColor(214, 39, 40);
const GOOD_COLOUR: RGBColor = RGBColor(31, 119, 180);
const DEFECT_COLOUR: RGBColor = RGBColor(214, 39, 40);
const FONT: &str = "sans-serif";

/// Draws into an SVG string; `draw` gets the root area. Returns the `<svg>` element without its
/// `xmlns` attribute (inline SVG in HTML does not need it, and the page then names no URL at all).
fn svg(
    plot: &'static str,
    draw: impl FnOnce(
        &DrawingArea<SVGBackend, plotters::coord::Shift>,
    ) -> Result<(), Box<dyn std::error::Error + 'static>>,
) -> Result<String, ReportError> {
    let mut buf = String::new();
    {
        let root = SVGBackend::with_string(&mut buf, (WIDTH, HEIGHT)).into_drawing_area();
        let r = root
            .fill(&WHITE)
            .map_err(|e| e.to_string().into())
            .and_then(|()| draw(&root))
            .and_then(|()| root.present().map_err(|e| e.to_string().into()));
        r.map_err(|e| ReportError::Plot {
            plot,
            message: e.to_string(),
        })?;
    }
    Ok(buf.replacen(" xmlns=\"http://www.w3.org/2000/svg\"", "", 1))
}

type DynResult = Result<(), Box<dyn std::error::Error + 'static>>;

fn err<E: std::fmt::Display>(e: E) -> Box<dyn std::error::Error + 'static> {
    e.to_string().into()
}

type Chart<'a, 'b> = ChartContext<
    'a,
    SVGBackend<'b>,
    Cartesian2d<plotters::coord::types::RangedCoordf64, plotters::coord::types::RangedCoordf64>,
>;

/// A chart with every plot's caption font, margins and axis areas.
fn chart<'a, 'b: 'a>(
    root: &'a DrawingArea<SVGBackend<'b>, plotters::coord::Shift>,
    caption: String,
    x: std::ops::Range<f64>,
    y: std::ops::Range<f64>,
) -> Result<Chart<'a, 'b>, Box<dyn std::error::Error + 'static>> {
    ChartBuilder::on(root)
        .caption(caption, (FONT, 20))
        .margin(12)
        .x_label_area_size(44)
        .y_label_area_size(54)
        .build_cartesian_2d(x, y)
        .map_err(err)
}

/// A 2-pixel line with its legend entry.
fn labelled_line<'a, 'b: 'a>(
    chart: &mut Chart<'a, 'b>,
    points: impl IntoIterator<Item = (f64, f64)>,
    colour: RGBColor,
    label: String,
) -> DynResult {
    chart
        .draw_series(LineSeries::new(points, colour.stroke_width(2)))
        .map_err(err)?
        .label(label)
        .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], colour.stroke_width(2)));
    Ok(())
}

/// The legend box, the same on every plot.
fn legend<'a, 'b: 'a>(chart: &mut Chart<'a, 'b>, position: SeriesLabelPosition) -> DynResult {
    chart
        .configure_series_labels()
        .position(position)
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK.mix(0.4))
        .label_font((FONT, 14))
        .draw()
        .map_err(err)?;
    Ok(())
}

/// The image-level and pixel-level ROC curves on one plot, with the chance diagonal.
pub(crate) fn roc(
    image: Option<(&Curve, f64)>,
    pixel: Option<(&Curve, f64)>,
) -> Result<String, ReportError> {
    svg("ROC", |root| -> DynResult {
        let mut chart = chart(root, "ROC".into(), 0.0..1.0, 0.0..1.0)?;
        chart
            .configure_mesh()
            .light_line_style(TRANSPARENT)
            .bold_line_style(BLACK.mix(0.08))
            .label_style((FONT, 13))
            .axis_desc_style((FONT, 14))
            .x_desc("false-positive rate")
            .y_desc("true-positive rate")
            .x_labels(6)
            .y_labels(6)
            .draw()
            .map_err(err)?;
        chart
            .draw_series(LineSeries::new(
                [(0.0, 0.0), (1.0, 1.0)],
                BLACK.mix(0.25).stroke_width(1),
            ))
            .map_err(err)?;
        for (curve, colour, what) in [
            (image, IMAGE_COLOUR, "image"),
            (pixel, PIXEL_COLOUR, "pixel"),
        ] {
            if let Some((c, auc)) = curve {
                labelled_line(
                    &mut chart,
                    c.points.iter().copied(),
                    colour,
                    format!("{what} AUROC {auc:.4}"),
                )?;
            }
        }
        legend(&mut chart, SeriesLabelPosition::LowerRight)
    })
}

/// The PRO curve up to `limit` (FPR), with its normalised area.
pub(crate) fn pro(curve: &Curve, aupro: f64, limit: f64) -> Result<String, ReportError> {
    svg("PRO", |root| -> DynResult {
        let mut chart = chart(root, format!("PRO (FPR ≤ {limit})"), 0.0..limit, 0.0..1.0)?;
        chart
            .configure_mesh()
            .light_line_style(TRANSPARENT)
            .bold_line_style(BLACK.mix(0.08))
            .label_style((FONT, 13))
            .axis_desc_style((FONT, 14))
            .x_desc("false-positive rate (pixels)")
            .y_desc("per-region overlap")
            .x_labels(7)
            .y_labels(6)
            .draw()
            .map_err(err)?;
        labelled_line(
            &mut chart,
            curve.points.iter().copied(),
            PIXEL_COLOUR,
            format!("AUPRO {aupro:.4}"),
        )?;
        legend(&mut chart, SeriesLabelPosition::LowerRight)
    })
}

/// Histogram bins: `(lo, hi, good count, defective count)` over the range of the finite scores and the
/// threshold.
pub(crate) fn bins(images: &[ImageEntry], threshold: f64, n: usize) -> Vec<(f64, f64, u32, u32)> {
    let finite = images.iter().map(|i| i.score).filter(|s| s.is_finite());
    let (mut lo, mut hi) = finite
        .chain(threshold.is_finite().then_some(threshold))
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), s| {
            (a.min(s), b.max(s))
        });
    if lo > hi {
        return Vec::new();
    }
    if hi - lo < 1e-12 {
        (lo, hi) = (lo - 0.5e-3, hi + 0.5e-3);
    }
    let n = n.max(1);
    let width = (hi - lo) / n as f64;
    let mut out: Vec<(f64, f64, u32, u32)> = (0..n)
        .map(|b| (lo + b as f64 * width, lo + (b + 1) as f64 * width, 0, 0))
        .collect();
    for im in images.iter().filter(|i| i.score.is_finite()) {
        let b = (((im.score - lo) / width) as usize).min(n - 1);
        if im.anomalous {
            out[b].3 += 1;
        } else {
            out[b].2 += 1;
        }
    }
    out
}

/// Image scores of normal and anomalous images (overlaid, translucent) with the threshold marked.
pub(crate) fn histogram(images: &[ImageEntry], threshold: f64) -> Result<String, ReportError> {
    let bins = bins(images, threshold, 30);
    let (lo, hi) = match (bins.first(), bins.last()) {
        (Some(f), Some(l)) => (f.0, l.1),
        _ => (0.0, 1.0),
    };
    let top = bins.iter().map(|b| b.2.max(b.3)).max().unwrap_or(0).max(1) as f64 * 1.15;
    svg("histogram", |root| -> DynResult {
        let mut chart = chart(root, "image scores".into(), lo..hi, 0.0..top)?;
        chart
            .configure_mesh()
            .light_line_style(TRANSPARENT)
            .bold_line_style(BLACK.mix(0.08))
            .label_style((FONT, 13))
            .axis_desc_style((FONT, 14))
            .x_desc("image score")
            .y_desc("images")
            .x_labels(6)
            .y_labels(6)
            .y_label_formatter(&|v| format!("{v:.0}"))
            .x_label_formatter(&|v| format!("{v:.3}"))
            .draw()
            .map_err(err)?;
        let n_good: u32 = bins.iter().map(|b| b.2).sum();
        let n_bad: u32 = bins.iter().map(|b| b.3).sum();
        for (colour, what, count, pick) in [
            (GOOD_COLOUR, "normal", n_good, 0usize),
            (DEFECT_COLOUR, "anomalous", n_bad, 1usize),
        ] {
            chart
                .draw_series(bins.iter().filter_map(|b| {
                    let c = if pick == 0 { b.2 } else { b.3 };
                    (c > 0).then(|| {
                        Rectangle::new([(b.0, 0.0), (b.1, f64::from(c))], colour.mix(0.45).filled())
                    })
                }))
                .map_err(err)?
                .label(format!("{what} ({count})"))
                .legend(move |(x, y)| {
                    Rectangle::new([(x, y - 5), (x + 14, y + 5)], colour.mix(0.45).filled())
                });
        }
        if threshold.is_finite() {
            labelled_line(
                &mut chart,
                [(threshold, 0.0), (threshold, top)],
                BLACK,
                format!("threshold {threshold:.4}"),
            )?;
        }
        legend(&mut chart, SeriesLabelPosition::UpperRight)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn im(score: f64, anomalous: bool) -> ImageEntry {
        ImageEntry {
            name: format!("{score}"),
            defect: "x".into(),
            score,
            anomalous,
        }
    }

    #[test]
    fn bins_count_every_finite_score_and_span_the_threshold() {
        let v = [
            im(0.1, false),
            im(0.2, false),
            im(0.9, true),
            im(f64::NAN, true),
        ];
        let b = bins(&v, 0.95, 10);
        assert_eq!(b.len(), 10);
        assert_eq!(b[0].0, 0.1);
        assert!((b[9].1 - 0.95).abs() < 1e-12);
        assert_eq!(b.iter().map(|b| b.2).sum::<u32>(), 2);
        assert_eq!(b.iter().map(|b| b.3).sum::<u32>(), 1);
        assert!(bins(&[], f64::NAN, 10).is_empty());
        assert_eq!(bins(&[im(0.5, false)], 0.5, 4).len(), 4);
    }

    #[test]
    fn plots_are_svg_without_urls() {
        let c = Curve {
            points: vec![(0.0, 0.0), (0.1, 0.8), (1.0, 1.0)],
        };
        for s in [
            roc(Some((&c, 0.9)), None).unwrap(),
            pro(&c, 0.5, 0.3).unwrap(),
            histogram(&[im(0.1, false), im(0.7, true)], 0.5).unwrap(),
        ] {
            assert!(s.starts_with("<svg"), "{}", &s[..40.min(s.len())]);
            assert!(!s.contains("http"));
            assert!(s.contains("<text"));
        }
    }
}
