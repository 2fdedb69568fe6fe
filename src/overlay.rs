//! Heatmap overlays for people to look at. The implementation (and the fixed colour scale: map values
//! are probabilities, always drawn on 0..1) lives in `realnet-report` ([`realnet_report::overlay`]) so
//! that the report's colour bar and every overlay share it; [`for_prediction`] is the one call that
//! `realnet predict --out`, `realnet test --overlays` and `realnet test --report` make, so their
//! pictures are identical.
use crate::bundle::Meta;
use image::{GrayImage, RgbImage};
pub use realnet_report::overlay::{
    alpha, colour, draw_outline, overlay, png_bytes, ANCHORS, GT_OUTLINE, PRED_OUTLINE,
};

/// The overlay of one prediction: `map` (row-major, the image's size) in the fixed scale, the
/// predicted outline at the model's pixel threshold, and the ground-truth outline when known.
pub fn for_prediction(
    meta: &Meta,
    img: &RgbImage,
    map: &[f32],
    ground_truth: Option<&GrayImage>,
) -> RgbImage {
    overlay(img, map, ground_truth, Some(meta.threshold.pixel as f32))
}
