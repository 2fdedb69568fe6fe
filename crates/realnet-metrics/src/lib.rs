//! realnet-metrics: exact anomaly-detection metrics (MVTec AD conventions), pure Rust.
//!
//! - [`evaluate`] turns scored test images ([`Scored`]) into a [`Report`]: image AUROC, pixel AUROC,
//!   AUPRO (FPR ≤ 0.3, normalised), pixel AP, image F1-max with its threshold, overall and per defect type.
//! - [`ImageScore`] reduces an anomaly map to an image score (`max`, or RealNet's mean-pool-then-max).
//! - [`read_map`] reads anomaly maps from `.npy` / `.tiff` files.
//!
//! Definitions (ties, degenerate cases, the exact PRO sweep) are in `docs/metrics.md`.

mod components;
mod error;
mod map;
mod pixel;
mod radix;
mod ranking;
mod read;
mod report;

pub use components::region_count;
pub use error::MetricsError;
pub use map::{ImageScore, Map};
pub use ranking::{ranking_metrics, RankingMetrics};
pub use read::{read_map, read_npy, read_tiff};
pub use report::{evaluate, Metrics, Report, Scored, AUPRO_FPR_LIMIT};
