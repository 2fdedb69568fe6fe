//! The evaluation of a scored test set: [`evaluate`] → [`Report`].
use crate::curves::{image_roc, Curve, Curves};
use crate::pixel::{pixel_metrics, PixelCurves, PixelItem, PixelMetrics};
use crate::ranking::ranking_metrics;
use crate::{Map, MetricsError};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// AUPRO integrates the PRO curve over FPR ∈ [0, 0.3] and divides by 0.3.
pub const AUPRO_FPR_LIMIT: f64 = 0.3;

/// The defect name of defect-free test images.
pub const GOOD: &str = "good";

/// One test image, scored by some method.
#[derive(Debug, Clone)]
pub struct Scored {
    /// Defect type (the test sub-folder); `"good"` for defect-free images.
    pub defect: String,
    /// A name for messages, e.g. `"crack/003"`.
    pub name: String,
    /// The anomaly map (any size; higher = more anomalous).
    pub map: Map,
    /// Ground truth of the map's size, row-major; `None` = all normal. The image label is "the mask
    /// has a positive pixel".
    pub mask: Option<Vec<bool>>,
    /// The image score (e.g. [`crate::ImageScore::apply`] of the map).
    pub image_score: f32,
}

impl Scored {
    /// The image label: true iff the mask has an anomalous pixel.
    pub fn is_anomalous(&self) -> bool {
        self.mask.as_ref().is_some_and(|m| m.iter().any(|&b| b))
    }
}

/// Metrics of one set of images. Every value is a fraction in [0, 1] except `image_f1_threshold` (score
/// units); `None` (JSON null) where undefined: no anomalous or no normal images/pixels (see
/// [`Report::notes`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Metrics {
    pub image_auroc: Option<f64>,
    pub pixel_auroc: Option<f64>,
    pub aupro: Option<f64>,
    pub pixel_ap: Option<f64>,
    pub image_f1_max: Option<f64>,
    pub image_f1_threshold: Option<f64>,
    pub n_images: usize,
    pub n_anomalous: usize,
}

/// The whole evaluation: the overall metrics (flattened into the top level in JSON) and, per defect type,
/// the metrics of that defect's images against ALL good images.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    #[serde(flatten)]
    pub overall: Metrics,
    pub per_defect: BTreeMap<String, Metrics>,
}

/// Evaluates a scored test set. Items may differ in size; each item's map and mask must agree. Errors
/// name the item: a size mismatch, a NaN/inf in a map or image score, or an empty list.
pub fn evaluate(items: &[Scored]) -> Result<Report, MetricsError> {
    evaluate_inner(items, None).map(|r| r.0)
}

/// [`evaluate`], plus the whole set's image ROC, pixel ROC and PRO curves for plotting, recorded by the
/// same sweeps (no second sort) and thinned to about `max_points` points each (see [`Curve`]). The
/// report is identical to [`evaluate`]'s.
pub fn evaluate_with_curves(
    items: &[Scored],
    max_points: usize,
) -> Result<(Report, Curves), MetricsError> {
    let (report, pixel, image_roc) = evaluate_inner(items, Some(max_points))?;
    Ok((
        report,
        Curves {
            image_roc,
            pixel_roc: pixel.roc,
            pro: pixel.pro,
        },
    ))
}

fn evaluate_inner(
    items: &[Scored],
    curve_points: Option<usize>,
) -> Result<(Report, PixelCurves, Option<Curve>), MetricsError> {
    if items.is_empty() {
        return Err(MetricsError::Empty);
    }
    validate(items)?;

    let defects: Vec<&str> = {
        let mut d: Vec<&str> = items
            .iter()
            .map(|i| i.defect.as_str())
            .filter(|&d| d != GOOD)
            .collect();
        d.sort_unstable();
        d.dedup();
        d
    };
    let index = |name: &str| defects.binary_search(&name).ok();

    let pixel_items: Vec<PixelItem> = items
        .iter()
        .map(|it| PixelItem {
            scores: &it.map.data,
            mask: it.mask.as_deref(),
            width: it.map.width,
            height: it.map.height,
            defect: index(&it.defect),
        })
        .collect();
    let out = pixel_metrics(&pixel_items, defects.len(), AUPRO_FPR_LIMIT, curve_points)?;
    let (pix, pix_per) = (out.all, out.per_defect);

    let labels: Vec<bool> = items.iter().map(Scored::is_anomalous).collect();
    let image = |keep: &dyn Fn(&Scored) -> bool, pix: PixelMetrics| {
        let (mut s, mut l) = (Vec::new(), Vec::new());
        for (it, &lab) in items.iter().zip(&labels) {
            if keep(it) {
                s.push(it.image_score as f64);
                l.push(lab);
            }
        }
        let r = ranking_metrics(&s, &l);
        Metrics {
            image_auroc: r.auroc,
            pixel_auroc: pix.auroc,
            aupro: pix.aupro,
            pixel_ap: pix.ap,
            image_f1_max: r.f1_max,
            image_f1_threshold: r.f1_threshold,
            n_images: s.len(),
            n_anomalous: l.iter().filter(|&&b| b).count(),
        }
    };
    let overall = image(&|_| true, pix);
    let image_roc = curve_points.and_then(|n| {
        let s: Vec<f64> = items.iter().map(|it| it.image_score as f64).collect();
        image_roc(&s, &labels, n)
    });
    let per_defect = defects
        .iter()
        .zip(pix_per)
        .map(|(&d, p)| {
            (
                d.to_string(),
                image(&|it: &Scored| it.defect == d || it.defect == GOOD, p),
            )
        })
        .collect();
    Ok((
        Report {
            overall,
            per_defect,
        },
        out.curves,
        image_roc,
    ))
}

fn validate(items: &[Scored]) -> Result<(), MetricsError> {
    for it in items {
        let m = &it.map;
        if m.width == 0 || m.height == 0 || m.width.checked_mul(m.height) != Some(m.data.len()) {
            return Err(MetricsError::Shape {
                name: it.name.clone(),
                message: format!(
                    "the map has {} values but claims {}×{}",
                    m.data.len(),
                    m.width,
                    m.height
                ),
            });
        }
        if let Some(mask) = &it.mask {
            if mask.len() != m.data.len() {
                return Err(MetricsError::Shape {
                    name: it.name.clone(),
                    message: format!(
                        "the mask has {} pixels but the map is {}×{}; resize the mask to the map (nearest)",
                        mask.len(),
                        m.width,
                        m.height
                    ),
                });
            }
        }
        if let Some(i) = m.first_non_finite() {
            return Err(MetricsError::NonFinite {
                name: it.name.clone(),
                message: format!(
                    "map value {} at (x {}, y {}) is not finite",
                    m.data[i],
                    i % m.width,
                    i / m.width
                ),
            });
        }
        if !it.image_score.is_finite() {
            return Err(MetricsError::NonFinite {
                name: it.name.clone(),
                message: format!("image score {} is not finite", it.image_score),
            });
        }
    }
    Ok(())
}

fn fmt_opt(v: Option<f64>) -> String {
    v.map_or_else(|| "n/a".to_string(), |v| format!("{v:.4}"))
}

impl Metrics {
    /// Why values are `None`, one line each (empty when everything is defined).
    pub fn notes(&self) -> Vec<String> {
        let mut out = Vec::new();
        let normal = self.n_images - self.n_anomalous;
        if self.image_auroc.is_none() {
            out.push(format!(
                "image AUROC undefined: {} anomalous and {normal} normal images (needs both)",
                self.n_anomalous
            ));
        }
        if self.image_f1_max.is_none() {
            out.push("image F1 undefined: no anomalous image".to_string());
        }
        if self.pixel_auroc.is_none() || self.aupro.is_none() || self.pixel_ap.is_none() {
            out.push(
                "pixel metrics undefined where there is no anomalous pixel (AUROC, AP, AUPRO) or no normal \
                 pixel (AUROC, AUPRO)"
                    .to_string(),
            );
        }
        out
    }
}

impl Report {
    /// Notes on undefined values, prefixed with the set they concern.
    pub fn notes(&self) -> Vec<String> {
        let mut out: Vec<String> = self
            .overall
            .notes()
            .into_iter()
            .map(|n| format!("all: {n}"))
            .collect();
        for (d, m) in &self.per_defect {
            out.extend(m.notes().into_iter().map(|n| format!("{d}: {n}")));
        }
        out
    }

    /// A human-readable table: one row for the whole set, one per defect type.
    pub fn table(&self) -> String {
        let width = self
            .per_defect
            .keys()
            .map(|k| k.len() + 2)
            .max()
            .unwrap_or(0)
            .max(12);
        let mut s = format!(
            "{:width$} {:>8} {:>8} {:>8} {:>8} {:>8} {:>10} {:>7} {:>9}\n",
            "set",
            "img_AUC",
            "pix_AUC",
            "AUPRO",
            "pix_AP",
            "F1_max",
            "F1_thresh",
            "images",
            "anomalous"
        );
        let mut row = |name: &str, m: &Metrics| {
            s += &format!(
                "{:width$} {:>8} {:>8} {:>8} {:>8} {:>8} {:>10} {:>7} {:>9}\n",
                name,
                fmt_opt(m.image_auroc),
                fmt_opt(m.pixel_auroc),
                fmt_opt(m.aupro),
                fmt_opt(m.pixel_ap),
                fmt_opt(m.image_f1_max),
                m.image_f1_threshold
                    .map_or_else(|| "n/a".to_string(), |t| format!("{t:.4e}")),
                m.n_images,
                m.n_anomalous
            );
        };
        row("all", &self.overall);
        for (d, m) in &self.per_defect {
            row(&format!("  {d}"), m);
        }
        s
    }
}
