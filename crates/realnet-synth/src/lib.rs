//! realnet-synth: synthetic anomalies for RealNet training (spec §3): Perlin masks, per-category
//! foreground masks, anomaly sources (SIA images, textures, procedural), blending, and the
//! `realnet synth` job. Pure Rust, no libtorch.
pub mod augment;
pub mod blend;
pub mod foreground;
pub mod job;
pub mod perlin;
pub mod rng;
pub mod shading;
pub mod sources;
pub mod strokes;
pub mod synthesizer;

pub use blend::{blend, mask_fraction};
pub use foreground::{foreground_mask, known_rule, rule_for, ForegroundRule};
pub use perlin::{perlin_mask, PerlinParams};
pub use rng::sample_rng;
pub use shading::ShadeParams;
pub use sources::{ImageSet, Kind, Source, SourceSpec};
pub use strokes::{stroke_mask, StrokeParams};
pub use synthesizer::{SynthConfig, SynthSample, Synthesizer, WeightedSource};

/// What can go wrong; every message names the file or folder and what to do.
#[derive(Debug, thiserror::Error)]
pub enum SynthError {
    /// Unusable input data (folders, images, arguments such as a zero count).
    #[error("{0}")]
    Input(String),
    /// Unusable synthesis settings.
    #[error("{0}")]
    Config(String),
    /// The output cannot be written.
    #[error("{0}")]
    Output(String),
    #[error(transparent)]
    Data(#[from] realnet_data::DataError),
}
