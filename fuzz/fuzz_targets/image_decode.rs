//! The image and mask loaders on arbitrary bytes (PNG/JPEG/BMP/TIFF sniffing, limits, decoding,
//! orientation, conversion to RGB and PIL-style resizing; for masks, binarising at the stored bit
//! depth and Pillow-nearest resizing): an error is fine, a panic or an abort is a bug.
#![no_main]
use libfuzzer_sys::fuzz_target;
use realnet_data::image_io::{
    binarize, decode_bytes, load_rgb_from_bytes, resize_mask, DecodeOptions,
};
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    // A small pixel limit keeps each run's memory bounded; the limit itself is part of what is tested.
    let opts = DecodeOptions {
        max_pixels: 1 << 20,
    };
    if let Ok(img) = load_rgb_from_bytes(data, Path::new("fuzz"), Some((17, 9)), &opts) {
        assert_eq!(img.dimensions(), (17, 9));
    }
    // The mask path: `load_mask` is decode → binarize → resize_mask.
    if let Ok((img, _)) = decode_bytes(data, Path::new("fuzz_mask.png"), &opts) {
        let m = resize_mask(&binarize(&img), 17, 9);
        assert_eq!(m.dimensions(), (17, 9));
        assert!(m.iter().all(|&v| v == 0 || v == 255));
    }
});
