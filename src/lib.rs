//! realnet: RealNet (Zhang, Xu, Zhou, CVPR 2024, arXiv 2403.05897) for industrial visual anomaly
//! detection, on libtorch through `tch`.
//!
//! The pure-Rust parts live in their own crates and are re-exported here: the data layer
//! ([`data`]), the evaluation metrics ([`metrics`]), the HTML report and overlays ([`report`]) and
//! anomaly synthesis ([`synth`]). This crate adds
//! the tensor parts (backbones, AFS, reconstruction, RRS, SDAS) and the command line.

pub use realnet_data as data;
pub use realnet_metrics as metrics;
pub use realnet_report as report;
pub use realnet_synth as synth;

pub mod alloc;
pub mod batch;
pub mod bench;
pub mod bundle;
pub mod calibration;
pub mod config;
pub mod demo;
pub mod device;
pub mod error;
pub mod evaluate;
pub mod infer;
pub mod model;
pub mod optim;
pub mod overlay;
pub mod precision;
pub mod progress;
pub mod sampling;
pub mod sdas;
pub mod serve;
pub mod train;
pub mod weights;
