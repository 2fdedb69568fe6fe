//! realnet-report: a test run as ONE self-contained HTML page, and the heatmap overlays it shows.
//!
//! Pure Rust (no libtorch): the caller (`realnet test --report`) gathers a [`ReportInput`] — the
//! metrics [`Report`] and plotting [`Curves`] from `realnet-metrics`, one [`ImageEntry`] per test
//! image, PNGs for the images the gallery shows, the model's metadata — and [`render`] returns the page.
//!
//! ```no_run
//! # use realnet_report::*;
//! # fn f(input: ReportInput) -> Result<(), ReportError> {
//! // which images need pictures: the k most and least anomalous, and every miss at the threshold
//! let pick = Gallery::pick(&input.images, input.image_threshold, input.gallery_size);
//! for i in pick.indices() { /* input.pictures.insert(i, Picture { image_png, overlay_png }) */ }
//! let html: String = render(&input)?;
//! # Ok(()) }
//! ```
//!
//! The page needs no network: images are `data:image/png;base64,` URIs, the plots (ROC, PRO, score
//! histogram) are inline SVG drawn with `plotters`' SVG backend (text is left to the browser, so no
//! font files are read), the colour bar is inline SVG and the style sheet is inline. No scripts.
//!
//! [`overlay`] is the one heatmap-overlay implementation of realnet (fixed 0..1 colour scale).

mod html;
pub mod overlay;
mod plots;
pub mod sample;

use std::collections::{BTreeMap, BTreeSet};

pub use realnet_metrics::{Curve, Curves, Metrics, Report};

/// One test image as the report sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct ImageEntry {
    /// e.g. `"broken_large/003"`.
    pub name: String,
    /// The defect type (test sub-folder); `"good"` for defect-free images.
    pub defect: String,
    /// The image score (same units as [`ReportInput::image_threshold`]).
    pub score: f64,
    /// Ground truth: the image has an anomalous pixel.
    pub anomalous: bool,
}

impl ImageEntry {
    /// The model's verdict at `threshold` (score ≥ threshold ⇒ anomalous).
    pub fn predicted(&self, threshold: f64) -> bool {
        self.score >= threshold
    }
}

/// The two pictures of a gallery card, as PNG bytes.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Picture {
    /// The image as the model saw it.
    pub image_png: Vec<u8>,
    /// [`overlay::overlay`] of the image: heatmap, ground-truth and predicted outlines.
    pub overlay_png: Vec<u8>,
}

/// Everything the page shows.
#[derive(Debug, Clone)]
pub struct ReportInput {
    /// The page title, e.g. `"realnet test: bottle"`.
    pub title: String,
    /// Model metadata, shown in order as a two-column table (backbone, preset, seed, …).
    pub metadata: Vec<(String, String)>,
    /// Metrics overall and per defect type.
    pub metrics: Report,
    /// Lines explaining undefined metrics ([`Report::notes`]) or anything else worth a warning.
    pub notes: Vec<String>,
    /// Curve points for the ROC and PRO plots (a missing curve is shown as "n/a").
    pub curves: Curves,
    /// Every scored test image, in any order (histogram, confusion counts, gallery, full list).
    pub images: Vec<ImageEntry>,
    /// The model's image threshold (score ≥ it ⇒ anomalous): marked on the histogram, defines misses.
    pub image_threshold: f64,
    /// The model's pixel threshold: the predicted-mask outline in the overlays (shown in the legend).
    pub pixel_threshold: f64,
    /// Pictures by index into `images`; needed for [`Gallery::pick`]`.indices()` (others are ignored;
    /// a missing one shows as "no picture").
    pub pictures: BTreeMap<usize, Picture>,
    /// How many of the most and of the least anomalous images the gallery shows.
    pub gallery_size: usize,
}

/// Which images the gallery shows, as indices into [`ReportInput::images`].
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Gallery {
    /// The `k` highest scores, highest first.
    pub most: Vec<usize>,
    /// The `k` lowest scores, lowest first.
    pub least: Vec<usize>,
    /// Every anomalous image scored below the threshold, lowest score (worst miss) first.
    pub false_negatives: Vec<usize>,
    /// Every normal image scored at or above the threshold, highest score first.
    pub false_positives: Vec<usize>,
}

impl Gallery {
    /// The gallery of `images` at `threshold` with `k` most and `k` least anomalous images. Ties are
    /// broken by name, so the choice is deterministic.
    pub fn pick(images: &[ImageEntry], threshold: f64, k: usize) -> Gallery {
        let mut order: Vec<usize> = (0..images.len()).collect();
        order.sort_by(|&a, &b| {
            images[b]
                .score
                .total_cmp(&images[a].score)
                .then_with(|| images[a].name.cmp(&images[b].name))
        });
        let most: Vec<usize> = order.iter().copied().take(k).collect();
        let least: Vec<usize> = order.iter().rev().copied().take(k).collect();
        let false_positives = order
            .iter()
            .copied()
            .filter(|&i| !images[i].anomalous && images[i].predicted(threshold))
            .collect();
        let false_negatives = order
            .iter()
            .rev()
            .copied()
            .filter(|&i| images[i].anomalous && !images[i].predicted(threshold))
            .collect();
        Gallery {
            most,
            least,
            false_negatives,
            false_positives,
        }
    }

    /// Every index shown (each once).
    pub fn indices(&self) -> BTreeSet<usize> {
        self.most
            .iter()
            .chain(&self.least)
            .chain(&self.false_negatives)
            .chain(&self.false_positives)
            .copied()
            .collect()
    }
}

/// Why a page could not be made (a plot failed to draw; not expected with valid input).
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("drawing the {plot} plot: {message}")]
    Plot { plot: &'static str, message: String },
}

/// The page: one self-contained HTML document (UTF-8).
pub fn render(input: &ReportInput) -> Result<String, ReportError> {
    html::page(input)
}
