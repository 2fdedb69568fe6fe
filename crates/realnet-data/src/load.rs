//! Decoding many samples at once on all cores (rayon). Results come back in input order, one per
//! sample, so one bad file is reported and the others are used.

use crate::image_io::{self, DecodeOptions};
use crate::layout::Sample;
use crate::DataError;
use image::{GrayImage, RgbImage};
use rayon::prelude::*;

/// A decoded sample.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub image: RgbImage,
    /// The binary mask (0 / 255) at the image's (final) size; `None` when the sample has no mask
    /// (normal images, or defective images whose mask is missing).
    pub mask: Option<GrayImage>,
}

/// Decodes every sample (image and, if it has one, mask) in parallel, resizing images to `size`
/// with Pillow bilinear and masks to the image's final size with Pillow nearest. An unreadable
/// mask, or one whose size differs from its image's, makes that sample an error too: a defective
/// image with a wrong mask must not be scored.
pub fn load_all(samples: &[Sample], size: Option<(u32, u32)>) -> Vec<Result<Loaded, DataError>> {
    load_all_with(samples, size, &DecodeOptions::default())
}

/// [`load_all`] with explicit decoder limits.
pub fn load_all_with(
    samples: &[Sample],
    size: Option<(u32, u32)>,
    opts: &DecodeOptions,
) -> Vec<Result<Loaded, DataError>> {
    samples
        .par_iter()
        .map(|s| load_one(s, size, opts))
        .collect()
}

/// Decodes one sample (see [`load_all`]).
pub fn load_one(
    sample: &Sample,
    size: Option<(u32, u32)>,
    opts: &DecodeOptions,
) -> Result<Loaded, DataError> {
    let (decoded, _) = image_io::decode(&sample.path, opts)?;
    let (w, h) = (decoded.width(), decoded.height());
    let image = image_io::rgb_at(&decoded, size);
    drop(decoded);
    let mask = match &sample.mask {
        Some(p) => {
            let m = image_io::load_mask_native(p, opts)?;
            if m.dimensions() != (w, h) {
                // A mask of another size belongs to another image (or was resized): its defect
                // outline would be scored in the wrong place.
                return Err(DataError::file(
                    p,
                    format!(
                        "mask is {}×{} but its image {} is {w}×{h}; use the mask made for this image",
                        m.width(),
                        m.height(),
                        sample.path.display()
                    ),
                ));
            }
            Some(image_io::resize_mask(&m, image.width(), image.height()))
        }
        None => None,
    };
    Ok(Loaded { image, mask })
}
