//! Our resizes against Pillow 13's own output, bit for bit (fixture from scripts/fixtures/make_resize_fixture.py).
use realnet_data::image_io::{load_mask, load_rgb, resize_mask, resize_rgb};
use std::path::PathBuf;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/resize"
    ))
    .join(name)
}

#[test]
fn bilinear_matches_pillow() {
    let src = load_rgb(&fixture("src_37x29.png"), None).unwrap();
    assert_eq!(src.dimensions(), (37, 29));
    for (w, h) in [(16, 16), (64, 48), (23, 41), (9, 7), (37, 16), (20, 29)] {
        let want = load_rgb(&fixture(&format!("bilinear_{w}x{h}.png")), None).unwrap();
        let got = resize_rgb(&src, w, h);
        assert_eq!(got.dimensions(), (w, h));
        let diffs: Vec<i32> = got
            .as_raw()
            .iter()
            .zip(want.as_raw())
            .map(|(a, b)| (*a as i32 - *b as i32).abs())
            .collect();
        let max = diffs.iter().copied().max().unwrap_or(0);
        let off = diffs.iter().filter(|d| **d > 0).count();
        eprintln!(
            "bilinear {w}x{h}: max abs diff {max}, {off} of {} values differ",
            diffs.len()
        );
        // Bit-exact: Pillow's fixed-point arithmetic is reproduced, not approximated.
        assert_eq!(max, 0, "{w}x{h}: max abs diff {max}, {off} values differ");
        // load_rgb's own resize path gives the same bytes.
        let via_load = load_rgb(&fixture("src_37x29.png"), Some((w, h))).unwrap();
        assert_eq!(via_load, got);
    }
}

#[test]
fn nearest_matches_pillow_exactly() {
    let src = load_mask(&fixture("mask_37x29.png"), (37, 29)).unwrap();
    for (w, h) in [(16, 16), (64, 48), (23, 41), (13, 7)] {
        let want = image::open(fixture(&format!("nearest_{w}x{h}.png")))
            .unwrap()
            .to_luma8();
        assert_eq!(resize_mask(&src, w, h), want, "nearest {w}x{h}");
        assert_eq!(load_mask(&fixture("mask_37x29.png"), (w, h)).unwrap(), want);
    }
}

#[test]
fn same_size_is_identity() {
    let src = load_rgb(&fixture("src_37x29.png"), None).unwrap();
    assert_eq!(resize_rgb(&src, 37, 29), src);
}

/// Speed of the MVTec-sized resize (900×900 → 256×256 RGB), one thread. Compare with Pillow:
/// `python -c "import time,numpy as n;from PIL import Image;i=Image.fromarray(n.random.default_rng(0).integers(0,256,(900,900,3),dtype=n.uint8));t=time.perf_counter();[i.resize((256,256),Image.BILINEAR) for _ in range(50)];print((time.perf_counter()-t)/50*1e3,'ms')"`
#[test]
#[ignore]
fn bench_resize_900_to_256() {
    let img = image::RgbImage::from_fn(900, 900, |x, y| {
        image::Rgb([(x * 7 + y) as u8, (x ^ y) as u8, (y * 3) as u8])
    });
    let t = std::time::Instant::now();
    for _ in 0..50 {
        std::hint::black_box(resize_rgb(&img, 256, 256));
    }
    eprintln!(
        "resize_rgb 900x900 -> 256x256: {:.2} ms",
        t.elapsed().as_secs_f64() / 50.0 * 1e3
    );
}
