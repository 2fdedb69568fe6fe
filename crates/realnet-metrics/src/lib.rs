//! realnet-metrics: exact anomaly-detection metrics (MVTec AD conventions), pure Rust.
//!
//! - [`evaluate`] turns scored test images ([`Scored`]) into a [`Report`]: image AUROC, pixel AUROC,
//!   AUPRO (FPR ≤ 0.3, normalised), pixel AP, image F1-max with its threshold, overall and per defect type.
//! - [`evaluate_with_curves`] adds the points of the image ROC, pixel ROC and PRO curves ([`Curves`]) for
//!   plotting, from the same sweeps; [`image_roc`] is the image-level curve on its own.
//! - [`ImageScore`] reduces an anomaly map to an image score (`max`, or RealNet's mean-pool-then-max).
//! - [`read_map`] reads anomaly maps from `.npy` / `.tiff` files.
//!
//! Definitions (ties, degenerate cases, the exact PRO sweep) are in `docs/metrics.md`.

mod components;
mod curves;
mod error;
mod map;
mod pixel;
mod radix;
mod ranking;
mod read;
mod report;

pub use components::region_count;
pub use curves::{image_roc, trapezoid, Curve, Curves, DEFAULT_CURVE_POINTS};
pub use error::MetricsError;
pub use map::{ImageScore, Map};
pub use ranking::{ranking_metrics, RankingMetrics};
pub use read::{parse_npy, parse_tiff, read_map, read_npy, read_tiff};
pub use report::{evaluate, evaluate_with_curves, Metrics, Report, Scored, AUPRO_FPR_LIMIT};
