//! A category folder full of awkward and broken files, generated in a tempdir: every problem is
//! reported file by file, nothing stops the rest, and the good files load.
use image::{ImageBuffer, Luma, Rgb, RgbImage, Rgba};
use realnet_data::inspect::{inspect, InspectOptions, ProblemKind};
use realnet_data::{load_all, Category};
use std::path::{Path, PathBuf};

fn write(path: &Path, bytes: &[u8]) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, bytes).unwrap();
}

fn png_bytes(img: &image::DynamicImage) -> Vec<u8> {
    let mut v = Vec::new();
    img.write_to(&mut std::io::Cursor::new(&mut v), image::ImageFormat::Png)
        .unwrap();
    v
}

fn rgb(w: u32, h: u32, seed: u8) -> image::DynamicImage {
    image::DynamicImage::ImageRgb8(RgbImage::from_fn(w, h, |x, y| {
        Rgb([x as u8 ^ seed, y as u8, seed.wrapping_mul(3)])
    }))
}

fn mask(w: u32, h: u32, on: bool) -> image::DynamicImage {
    image::DynamicImage::ImageLuma8(ImageBuffer::from_fn(w, h, |x, _| {
        Luma([if on && x < 2 { 255 } else { 0 }])
    }))
}

/// A 2-entry palette PNG (color type 3), written with the png crate.
fn palette_png() -> Vec<u8> {
    let mut v = Vec::new();
    {
        let mut enc = png::Encoder::new(&mut v, 2, 1);
        enc.set_color(png::ColorType::Indexed);
        enc.set_depth(png::BitDepth::Eight);
        enc.set_palette(vec![10, 20, 30, 200, 100, 50]);
        let mut w = enc.write_header().unwrap();
        w.write_image_data(&[1, 0]).unwrap();
    }
    v
}

fn crc32(data: &[u8]) -> u32 {
    let mut c = !0u32;
    for &b in data {
        c ^= b as u32;
        for _ in 0..8 {
            c = if c & 1 != 0 {
                0xEDB8_8320 ^ (c >> 1)
            } else {
                c >> 1
            };
        }
    }
    !c
}

/// Signature + a valid IHDR claiming 100000×100000 RGB + IEND: tiny file, huge claim.
fn huge_png() -> Vec<u8> {
    let mut v = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut chunk = b"IHDR".to_vec();
    chunk.extend(100_000u32.to_be_bytes());
    chunk.extend(100_000u32.to_be_bytes());
    chunk.extend([8, 2, 0, 0, 0]);
    v.extend(13u32.to_be_bytes());
    v.extend(&chunk);
    v.extend(crc32(&chunk).to_be_bytes());
    v.extend(0u32.to_be_bytes());
    v.extend(b"IEND");
    v.extend(crc32(b"IEND").to_be_bytes());
    v
}

/// A JPEG with an EXIF APP1 segment saying "rotate 90° clockwise" (orientation 6).
fn rotated_jpeg() -> Vec<u8> {
    let mut jpg = Vec::new();
    rgb(4, 2, 9)
        .write_to(
            &mut std::io::Cursor::new(&mut jpg),
            image::ImageFormat::Jpeg,
        )
        .unwrap();
    let mut tiff = b"MM\x00\x2a\x00\x00\x00\x08".to_vec();
    tiff.extend([0, 1]); // one IFD entry
    tiff.extend([0x01, 0x12, 0, 3, 0, 0, 0, 1, 0, 6, 0, 0]); // Orientation, SHORT, 1, value 6
    tiff.extend([0, 0, 0, 0]); // no next IFD
    let mut app1 = b"Exif\x00\x00".to_vec();
    app1.extend(tiff);
    let mut out = jpg[..2].to_vec(); // SOI
    out.extend([0xFF, 0xE1]);
    out.extend(((app1.len() + 2) as u16).to_be_bytes());
    out.extend(app1);
    out.extend(&jpg[2..]);
    out
}

struct Fixture {
    _dir: tempfile::TempDir,
    cat: PathBuf,
}

fn build() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let cat = dir.path().join("widget");
    let train = cat.join("train/good");
    let good_png = png_bytes(&rgb(8, 6, 1));
    write(&train.join("a_rgb.png"), &good_png);
    write(&train.join("b_gray.png"), &png_bytes(&mask(8, 6, true)));
    let rgba = ImageBuffer::from_fn(3, 2, |x, _| Rgba([x as u8 * 50, 7, 9, 0]));
    write(
        &train.join("c_rgba.png"),
        &png_bytes(&image::DynamicImage::ImageRgba8(rgba)),
    );
    write(&train.join("d_palette.png"), &palette_png());
    let g16: ImageBuffer<Luma<u16>, Vec<u16>> =
        ImageBuffer::from_raw(2, 1, vec![0xABCD, 0x00FF]).unwrap();
    write(
        &train.join("e_sixteen.png"),
        &png_bytes(&image::DynamicImage::ImageLuma16(g16)),
    );
    write(&train.join("f_one_px.png"), &png_bytes(&rgb(1, 1, 5)));
    let big = png_bytes(&rgb(64, 64, 3));
    write(&train.join("g_truncated.png"), &big[..big.len() / 2]);
    write(&train.join("h_empty.png"), b"");
    write(
        &train.join("i_text.jpg"),
        b"this is not a picture, just some text\n",
    );
    write(&train.join("j_huge.png"), &huge_png());
    write(&train.join("k_rotated.JPG"), &rotated_jpeg());
    write(&train.join("notes.txt"), b"ignored");

    write(&cat.join("test/good/000.png"), &good_png);
    let crack = cat.join("test/crack");
    let gt = cat.join("ground_truth/crack");
    write(&crack.join("000.png"), &good_png);
    write(&gt.join("000_mask.png"), &png_bytes(&mask(8, 6, true)));
    write(&crack.join("001.png"), &good_png);
    write(&gt.join("001_mask.png"), &png_bytes(&mask(5, 5, true))); // wrong size
    write(&crack.join("002.png"), &good_png); // no mask
    write(&crack.join("003.png"), &good_png);
    write(&gt.join("003_mask.png"), &png_bytes(&mask(8, 6, false))); // all zero
    write(&crack.join("004.png"), &good_png);
    write(&gt.join("004_mask.png"), b"\x89PNG\r\n\x1a\n"); // signature only
    write(&gt.join("009_mask.png"), &png_bytes(&mask(8, 6, true))); // no image
    Fixture { _dir: dir, cat }
}

fn name(p: &Path) -> String {
    p.file_name().unwrap().to_string_lossy().into_owned()
}

#[test]
fn every_problem_is_reported_file_by_file() {
    let f = build();
    let cat = Category::open(&f.cat).unwrap();
    assert_eq!(cat.train.len(), 11); // notes.txt is not an image by name
    assert_eq!(
        cat.ignored.iter().map(|p| name(p)).collect::<Vec<_>>(),
        ["notes.txt"]
    );
    assert_eq!(cat.test.len(), 6);
    assert_eq!(
        cat.missing_masks().map(|s| s.stem()).collect::<Vec<_>>(),
        ["002"]
    );

    let report = inspect(&cat, &InspectOptions::default());
    let got: Vec<(ProblemKind, String)> = report
        .problems
        .iter()
        .map(|p| (p.kind, name(&p.path)))
        .collect();
    for p in &report.problems {
        eprintln!("{} [{:?}] {}", p.path.display(), p.kind, p.message);
        // every message names a fault a person can act on
        assert!(p.message.len() > 15, "{p:?}");
    }
    assert_eq!(
        got,
        vec![
            (ProblemKind::BadImage, "g_truncated.png".into()),
            (ProblemKind::BadImage, "h_empty.png".into()),
            (ProblemKind::BadImage, "i_text.jpg".into()),
            (ProblemKind::BadImage, "j_huge.png".into()),
            (ProblemKind::MaskSizeMismatch, "001_mask.png".into()),
            (ProblemKind::MissingMask, "002.png".into()),
            (ProblemKind::EmptyMask, "003_mask.png".into()),
            (ProblemKind::BadMask, "004_mask.png".into()),
            (ProblemKind::UnusedMask, "009_mask.png".into()),
        ]
    );
    let msg = |file: &str| {
        report
            .problems
            .iter()
            .find(|p| name(&p.path) == file)
            .unwrap()
            .message
            .clone()
    };
    assert!(
        msg("h_empty.png").contains("empty file"),
        "{}",
        msg("h_empty.png")
    );
    assert!(
        msg("i_text.jpg").contains("not an image"),
        "{}",
        msg("i_text.jpg")
    );
    assert!(
        msg("j_huge.png").contains("100000×100000"),
        "{}",
        msg("j_huge.png")
    );
    assert!(
        msg("g_truncated.png").contains("png"),
        "{}",
        msg("g_truncated.png")
    );
    assert_eq!(report.masks.expected, 5);
    assert_eq!(report.masks.found, 4);
    assert_eq!(report.masks.unused, 1);
    assert_eq!(report.images.kinds.get("png palette8"), Some(&1));
    assert_eq!(report.images.kinds.get("png gray16"), Some(&1));
    assert_eq!(report.images.kinds.get("png rgba8"), Some(&1));
    assert_eq!(report.images.kinds.get("jpeg rgb8"), Some(&1));

    // Headers only: the truncated PNG passes (its header is intact), everything else is the same.
    let quick = inspect(
        &cat,
        &InspectOptions {
            full_decode: false,
            ..Default::default()
        },
    );
    assert_eq!(quick.problems.len(), report.problems.len() - 1);
    assert!(quick
        .problems
        .iter()
        .all(|p| name(&p.path) != "g_truncated.png"));
}

#[test]
fn good_files_load_and_bad_ones_fail_in_order() {
    let f = build();
    let cat = Category::open(&f.cat).unwrap();
    let loaded = load_all(&cat.train, None);
    let ok: Vec<bool> = loaded.iter().map(|r| r.is_ok()).collect();
    assert_eq!(
        ok,
        [true, true, true, true, true, true, false, false, false, false, true]
    );
    for (r, s) in loaded.iter().zip(&cat.train) {
        if let Err(e) = r {
            assert_eq!(e.path(), Some(s.path.as_path()), "error names its own file");
            assert!(e.to_string().starts_with(&s.path.display().to_string()));
        }
    }
    let img = |i: usize| loaded[i].as_ref().unwrap().image.clone();
    assert_eq!(img(1).get_pixel(0, 0).0, [255, 255, 255]); // gray repeated
    assert_eq!(
        img(2).as_raw(),
        &[0, 7, 9, 50, 7, 9, 100, 7, 9, 0, 7, 9, 50, 7, 9, 100, 7, 9]
    ); // alpha 0 dropped, not composited
    assert_eq!(img(3).as_raw(), &[200, 100, 50, 10, 20, 30]); // palette expanded
    assert_eq!(img(4).as_raw(), &[0xAB, 0xAB, 0xAB, 0, 0, 0]); // 16 bit: high byte
    assert_eq!(img(5).dimensions(), (1, 1));
    assert_eq!(img(10).dimensions(), (2, 4)); // EXIF orientation 6 applied to a 4×2 JPEG
    assert_eq!(
        realnet_data::image_io::probe(&cat.train[10].path)
            .unwrap()
            .width,
        2
    );

    // Resized loading: every good file comes out 16×16, a 1×1 image included.
    for r in load_all(&cat.train, Some((16, 16))).into_iter().flatten() {
        assert_eq!(r.image.dimensions(), (16, 16));
    }

    // Test split: masks follow the image size; a missing mask is None; an undecodable mask fails
    // its sample.
    let test = load_all(&cat.test, Some((16, 16)));
    let defects: Vec<_> = cat
        .test
        .iter()
        .map(|s| (s.defect.as_str(), s.stem()))
        .collect();
    assert_eq!(defects[0], ("crack", "000".to_string()));
    assert_eq!(defects[5], ("good", "000".to_string()));
    let m0 = test[0].as_ref().unwrap().mask.as_ref().unwrap();
    assert_eq!(m0.dimensions(), (16, 16));
    assert!(m0.as_raw().iter().all(|&v| v == 0 || v == 255));
    assert_eq!(m0.as_raw().iter().filter(|&&v| v == 255).count(), 4 * 16); // x < 2 of 8 → x < 4 of 16
    assert!(test[2].as_ref().unwrap().mask.is_none());
    assert!(test[4].is_err());
    assert!(test[5].as_ref().unwrap().mask.is_none());
}

#[test]
fn pixel_limit_is_configurable() {
    let f = build();
    let path = f.cat.join("train/good/a_rgb.png");
    let opts = realnet_data::image_io::DecodeOptions { max_pixels: 47 };
    let err = realnet_data::image_io::load_rgb_with(&path, None, &opts).unwrap_err();
    assert!(err.to_string().contains("8×6 = 48 pixels"), "{err}");
    let opts = realnet_data::image_io::DecodeOptions { max_pixels: 48 };
    assert!(realnet_data::image_io::load_rgb_with(&path, None, &opts).is_ok());
}
