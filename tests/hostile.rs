//! Hostile inputs against every command that reads them (issue #8, item 1). A corpus generated in a
//! temporary folder whose path has spaces and non-ASCII characters — truncated, empty, mislabelled,
//! 16-bit, RGBA, palette, gray, CMYK, 1×1, EXIF-rotated and 100000×100000-claiming images, a symlink
//! loop, masks of the wrong size or missing, empty folders, bad model files and bad configurations —
//! and for each command and input: the documented exit code, a message naming the file and the
//! fault, no panic, and the good inputs still processed where that makes sense.
//!
//! Cases already asserted elsewhere are not repeated: the data layer's own decoding details
//! (`crates/realnet-data/tests/broken_files.rs`), a missing mask / NaN map for `metrics`
//! (`cli_metrics.rs`), another backbone's weights for `test` (`train_e2e.rs`), and the HTTP-level
//! malformations of `serve` (`serve_e2e.rs`).
mod common;
use common::*;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;

// ---------------------------------------------------------------------------------------------
// The corpus

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

fn png_chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
    out.extend((data.len() as u32).to_be_bytes());
    let mut c = kind.to_vec();
    c.extend(data);
    out.extend(&c);
    out.extend(crc32(&c).to_be_bytes());
}

/// A PNG with an IHDR claiming 100000×100000 RGB pixels and no data: tiny file, huge claim.
fn huge_png() -> Vec<u8> {
    let mut v = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut ihdr = 100_000u32.to_be_bytes().to_vec();
    ihdr.extend(100_000u32.to_be_bytes());
    ihdr.extend([8, 2, 0, 0, 0]);
    png_chunk(&mut v, b"IHDR", &ihdr);
    png_chunk(&mut v, b"IEND", b"");
    v
}

/// A 4×4 palette PNG (colour type 3, 4 colours), with a stored (uncompressed) zlib stream.
fn palette_png() -> Vec<u8> {
    let mut v = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut ihdr = 4u32.to_be_bytes().to_vec();
    ihdr.extend(4u32.to_be_bytes());
    ihdr.extend([8, 3, 0, 0, 0]);
    png_chunk(&mut v, b"IHDR", &ihdr);
    png_chunk(
        &mut v,
        b"PLTE",
        &[200, 30, 30, 30, 200, 30, 30, 30, 200, 250, 250, 250],
    );
    let raw: Vec<u8> = (0..4u8)
        .flat_map(|y| [0u8, y % 4, (y + 1) % 4, (y + 2) % 4, (y + 3) % 4])
        .collect();
    let mut z = vec![0x78, 0x01, 0x01];
    z.extend((raw.len() as u16).to_le_bytes());
    z.extend((!(raw.len() as u16)).to_le_bytes());
    z.extend(&raw);
    let (mut a, mut b) = (1u32, 0u32);
    for &x in &raw {
        a = (a + x as u32) % 65521;
        b = (b + a) % 65521;
    }
    z.extend(((b << 16) | a).to_be_bytes());
    png_chunk(&mut v, b"IDAT", &z);
    png_chunk(&mut v, b"IEND", b"");
    v
}

/// An 8×8 baseline CMYK JPEG (four components, Adobe APP14 marker), encoded by hand: each
/// component is one flat block (DC only), quantisation 1, tiny Huffman tables.
fn cmyk_jpeg() -> Vec<u8> {
    fn seg(out: &mut Vec<u8>, marker: u8, data: &[u8]) {
        out.extend([0xFF, marker]);
        out.extend(((data.len() + 2) as u16).to_be_bytes());
        out.extend(data);
    }
    let mut v = vec![0xFF, 0xD8];
    seg(&mut v, 0xEE, b"Adobe\x00\x64\x00\x00\x00\x00\x00"); // transform 0: plain CMYK
    let mut dqt = vec![0u8];
    dqt.extend([1u8; 64]);
    seg(&mut v, 0xDB, &dqt);
    let mut sof = vec![8, 0, 8, 0, 8, 4];
    for id in 1..=4 {
        sof.extend([id, 0x11, 0]);
    }
    seg(&mut v, 0xC0, &sof);
    // DC table 0: categories 0..=11 as 4-bit codes; AC table 0: only EOB, code "0".
    let mut dht = vec![0x00];
    let mut counts = [0u8; 16];
    counts[3] = 12;
    dht.extend(counts);
    dht.extend(0u8..12);
    dht.push(0x10);
    let mut counts = [0u8; 16];
    counts[0] = 1;
    dht.extend(counts);
    dht.push(0x00);
    seg(&mut v, 0xC4, &dht);
    let mut sos = vec![4];
    for id in 1..=4 {
        sos.extend([id, 0x00]);
    }
    sos.extend([0, 63, 0]);
    seg(&mut v, 0xDA, &sos);
    // Entropy-coded data: per component a DC difference (from 0) and EOB.
    let mut bits: Vec<bool> = Vec::new();
    let put = |value: u32, n: u32, bits: &mut Vec<bool>| {
        for i in (0..n).rev() {
            bits.push(value >> i & 1 == 1);
        }
    };
    for level in [40i32, 200, 120, 30] {
        let dc = 8 * (level - 128);
        let cat = 32 - dc.unsigned_abs().leading_zeros();
        put(cat, 4, &mut bits);
        let extra = if dc >= 0 { dc } else { dc - 1 + (1 << cat) };
        put(extra as u32 & ((1 << cat) - 1), cat, &mut bits);
        put(0, 1, &mut bits); // EOB
    }
    bits.resize(bits.len().div_ceil(8) * 8, true); // pad with 1-bits
    for byte in bits.chunks(8) {
        let b = byte.iter().fold(0u8, |acc, &x| acc << 1 | x as u8);
        v.push(b);
        if b == 0xFF {
            v.push(0);
        }
    }
    v.extend([0xFF, 0xD9]);
    v
}

fn rgb(w: u32, h: u32, seed: u32) -> image::RgbImage {
    image::RgbImage::from_fn(w, h, |x, y| {
        let v = (x * 7 + y * 13 + seed * 31) % 251;
        image::Rgb([v as u8, (v * 3 % 256) as u8, (255 - v) as u8])
    })
}

fn encode(img: image::DynamicImage, format: image::ImageFormat) -> Vec<u8> {
    let mut v = Vec::new();
    img.write_to(&mut std::io::Cursor::new(&mut v), format)
        .unwrap();
    v
}

/// A JPEG with an EXIF APP1 segment saying "rotate 90° clockwise" (orientation 6).
fn rotated_jpeg() -> Vec<u8> {
    let jpg = encode(rgb(48, 32, 9).into(), image::ImageFormat::Jpeg);
    let mut tiff = b"MM\x00\x2a\x00\x00\x00\x08".to_vec();
    tiff.extend([0, 1, 0x01, 0x12, 0, 3, 0, 0, 0, 1, 0, 6, 0, 0, 0, 0, 0, 0]);
    let mut app1 = b"Exif\x00\x00".to_vec();
    app1.extend(tiff);
    let mut out = jpg[..2].to_vec();
    out.extend([0xFF, 0xE1]);
    out.extend(((app1.len() + 2) as u16).to_be_bytes());
    out.extend(app1);
    out.extend(&jpg[2..]);
    out
}

/// What reading a corpus file should give: a usable image, or an error whose message has this.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Want {
    Ok,
    Err(&'static str),
}

/// The hostile images as (relative path, bytes, expected outcome). Symlinks are added by
/// [`write_images`].
fn images() -> Vec<(&'static str, Vec<u8>, Want)> {
    use image::{DynamicImage as D, ImageBuffer, ImageFormat as F};
    let png = |img: D| encode(img, F::Png);
    let good = png(rgb(48, 40, 1).into());
    let big_png = png(rgb(64, 64, 2).into());
    let big_jpg = encode(rgb(64, 64, 3).into(), F::Jpeg);
    let rgb16: ImageBuffer<image::Rgb<u16>, Vec<u16>> = ImageBuffer::from_fn(40, 30, |x, y| {
        image::Rgb([x as u16 * 1500, y as u16 * 2000, 40000])
    });
    let rgba = image::RgbaImage::from_fn(40, 30, |x, _| image::Rgba([x as u8 * 6, 90, 20, 100]));
    let gray = image::GrayImage::from_fn(40, 30, |x, y| image::Luma([(x * y) as u8]));
    vec![
        ("good.png", good, Want::Ok),
        (
            "größe test/bild 1.png",
            png(rgb(40, 48, 4).into()),
            Want::Ok,
        ),
        ("sixteen bit.png", png(D::ImageRgb16(rgb16)), Want::Ok),
        ("rgba.png", png(D::ImageRgba8(rgba)), Want::Ok),
        ("palette.png", palette_png(), Want::Ok),
        ("gray.png", png(D::ImageLuma8(gray)), Want::Ok),
        ("cmyk.jpg", cmyk_jpeg(), Want::Ok),
        ("one_px.png", png(rgb(1, 1, 5).into()), Want::Ok),
        ("rotated.jpg", rotated_jpeg(), Want::Ok),
        (
            "truncated.png",
            big_png[..big_png.len() / 2].to_vec(),
            Want::Err("truncated png"),
        ),
        (
            "truncated.jpg",
            big_jpg[..big_jpg.len() / 2].to_vec(),
            Want::Err("truncated jpeg"),
        ),
        ("empty.png", Vec::new(), Want::Err("empty file")),
        (
            "text.png",
            b"just some text, no picture\n".to_vec(),
            Want::Err("not an image"),
        ),
        ("huge.png", huge_png(), Want::Err("over the limit")),
    ]
}

/// The symlink loop: `loop.png` points at itself.
const LOOP: (&str, Want) = ("loop.png", Want::Err("symbolic links"));

/// Writes the corpus into `dir`, plus `loop.png` (a link to itself) and `up` (a link to `dir`
/// itself: a folder loop that must not make anything be read twice). Returns every image path
/// (loop.png included) with its expected outcome.
fn write_images(dir: &Path) -> Vec<(PathBuf, Want)> {
    let mut out = Vec::new();
    for (rel, bytes, want) in images() {
        let p = dir.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, bytes).unwrap();
        out.push((p, want));
    }
    std::os::unix::fs::symlink(LOOP.0, dir.join(LOOP.0)).unwrap();
    std::os::unix::fs::symlink(".", dir.join("up")).unwrap();
    out.push((dir.join(LOOP.0), LOOP.1));
    out
}

fn gray_png(path: &Path, w: u32, h: u32, on: bool) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    image::GrayImage::from_fn(w, h, |x, _| {
        image::Luma([if on && x < w / 2 { 255 } else { 0 }])
    })
    .save(path)
    .unwrap();
}

/// Everything the tests share: the corpus folders and a tiny model trained on the hostile category.
struct Fixture {
    root: PathBuf,
    /// The corpus as a plain folder (for `predict`, `serve` and `textures:`).
    imgs: PathBuf,
    /// The corpus and their expected outcomes.
    corpus: Vec<(PathBuf, Want)>,
    /// MVTec layout: train/good = the corpus; test/good = 2 good + 1 truncated; test/crack = 000
    /// (mask right), 001 (mask of the wrong size).
    cat: PathBuf,
    /// `train` on `cat`: its output, and the run folder it wrote.
    train: Output,
    run: PathBuf,
    /// The model file of a run trained with MobileNetV2 instead of EfficientNet-Lite2.
    mnv2_model: PathBuf,
}

/// The detector configuration of every run here: 64² input and one UNet level, a few steps.
const TINY: [&str; 14] = [
    "--set",
    "model.image_size=64",
    "--set",
    "model.channel_mult=[1,2]",
    "--set",
    "train.steps=2",
    "--set",
    "train.batch_size=2",
    "--set",
    "train.afs_batches=1",
    "--set",
    "train.val_anomalies_per_image=1",
    "--set",
    "train.checkpoint_every=2",
];

/// The SDAS configuration of every run here: 16², one level, two steps.
const SDAS_TINY: [&str; 12] = [
    "--set",
    "model.image_size=16",
    "--set",
    "model.channel_mult=[1,2]",
    "--set",
    "train.steps=2",
    "--set",
    "train.batch_size=2",
    "--set",
    "train.checkpoint_every=2",
    "--set",
    "sample.batch_size=2",
];

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// `realnet train` with the tiny configuration and the Lite2 weights (unless `extra` has others).
fn train(data: &Path, out: &Path, extra: &[&str]) -> Output {
    let w = lite2();
    let mut args = vec!["train", "--data", s(data), "--out", s(out)];
    if !extra.contains(&"--weights") {
        args.extend(["--weights", s(&w)]);
    }
    args.extend(TINY);
    args.extend(extra);
    realnet(&args)
}

fn fixture() -> Option<&'static Fixture> {
    static F: OnceLock<Option<Fixture>> = OnceLock::new();
    F.get_or_init(|| {
        lite2_or_skip()?;
        // Spaces and non-ASCII in every path the commands see.
        let root = Path::new(env!("CARGO_TARGET_TMPDIR")).join("hostile ü inputs");
        let _ = std::fs::remove_dir_all(&root);
        let imgs = root.join("corpus");
        let corpus = write_images(&imgs);
        let cat = root.join("widget");
        write_images(&cat.join("train/good"));
        for i in 0..2 {
            rgb(48, 40, 10 + i)
                .save(cat.join(format!("test/good/00{i}.png")).tap_dir())
                .unwrap();
            rgb(48, 40, 20 + i)
                .save(cat.join(format!("test/crack/00{i}.png")).tap_dir())
                .unwrap();
        }
        std::fs::copy(
            imgs.join("truncated.png"),
            cat.join("test/good/truncated.png"),
        )
        .unwrap();
        gray_png(&cat.join("ground_truth/crack/000_mask.png"), 48, 40, true);
        gray_png(&cat.join("ground_truth/crack/001_mask.png"), 10, 10, true);
        let run = root.join("run");
        let trained = train(&cat, &run, &[]);
        // A run with another backbone, whose model file is then put where the Lite2 one should be.
        let mnv2 = root.join("run mobilenet_v2");
        let mnv2_weights = shared("weights/mobilenet_v2_torchvision_imagenet1k_v1.safetensors");
        #[rustfmt::skip]
        expect("train mobilenet_v2", &train(&cat, &mnv2, &[
            "--weights", s(&mnv2_weights), "--set", "model.backbone=mobilenet_v2",
            "--set", "model.afs_keep=[24,32,96,160]",
        ]), 5, &[]);
        Some(Fixture {
            root,
            imgs,
            corpus,
            cat,
            train: trained,
            run,
            mnv2_model: mnv2.join("model.safetensors"),
        })
    })
    .as_ref()
}

trait TapDir {
    fn tap_dir(self) -> Self;
}

impl TapDir for PathBuf {
    /// Creates the parent folder and returns the path.
    fn tap_dir(self) -> Self {
        std::fs::create_dir_all(self.parent().unwrap()).unwrap();
        self
    }
}

/// Creates the folder `p` and returns it.
fn mkdir(p: &Path) -> PathBuf {
    std::fs::create_dir_all(p).unwrap();
    p.to_path_buf()
}

fn name(p: &Path) -> String {
    p.file_name().unwrap().to_string_lossy().into_owned()
}

/// A fresh folder under the fixture's root.
fn fresh(f: &Fixture, rel: &str) -> PathBuf {
    let p = f.root.join(rel);
    let _ = std::fs::remove_dir_all(&p);
    std::fs::create_dir_all(&p).unwrap();
    p
}

/// A copy of the run folder (config, model, meta) to damage.
fn run_copy(f: &Fixture, rel: &str) -> PathBuf {
    let p = fresh(f, rel);
    for file in ["config.toml", "model.safetensors", "meta.json"] {
        std::fs::copy(f.run.join(file), p.join(file)).unwrap();
    }
    p
}

/// Run folders damaged in every way a model can be: (name, folder, expected substrings). Each is
/// refused with exit 4 by `test`, `predict` and `serve`.
fn bad_runs(f: &Fixture, tag: &str) -> Vec<(&'static str, PathBuf, Vec<String>)> {
    let model = |p: &Path| p.join("model.safetensors");
    let mut v = Vec::new();

    let p = run_copy(f, &format!("{tag} bad runs/truncated model"));
    let bytes = std::fs::read(model(&p)).unwrap();
    std::fs::write(model(&p), &bytes[..bytes.len() / 3]).unwrap();
    v.push((
        "truncated model",
        p.clone(),
        vec![
            s(&model(&p)).to_string(),
            "not a readable safetensors".into(),
        ],
    ));

    let p = run_copy(f, &format!("{tag} bad runs/wrong shape"));
    let mut t = realnet::bundle::read_tensors(&model(&p)).unwrap();
    let key = t
        .keys()
        .filter(|k| k.starts_with("rrs.conv1"))
        .min()
        .unwrap()
        .clone();
    t.insert(
        key.clone(),
        tch::Tensor::zeros([3, 5], (tch::Kind::Float, tch::Device::Cpu)),
    );
    let mut named: Vec<(String, tch::Tensor)> = t.into_iter().collect();
    named.sort_by(|a, b| a.0.cmp(&b.0));
    realnet::bundle::save_tensors(&model(&p), &named).unwrap();
    v.push((
        "wrongly shaped model",
        p.clone(),
        vec![
            s(&model(&p)).to_string(),
            format!("'{key}' has shape [3, 5]"),
        ],
    ));

    let p = run_copy(f, &format!("{tag} bad runs/other backbone's model"));
    std::fs::copy(&f.mnv2_model, model(&p)).unwrap();
    v.push((
        "the model of a MobileNetV2 run",
        p.clone(),
        vec![s(&model(&p)).to_string(), "'afs.1' has shape [32]".into()],
    ));

    // An ImageNet backbone (another one) where the trained model should be.
    let p = run_copy(f, &format!("{tag} bad runs/backbone as model"));
    std::fs::copy(
        shared("weights/mobilenet_v2_torchvision_imagenet1k_v1.safetensors"),
        model(&p),
    )
    .unwrap();
    v.push((
        "backbone weights as the model",
        p.clone(),
        vec![s(&model(&p)).to_string(), "does not match the model".into()],
    ));

    let p = run_copy(f, &format!("{tag} bad runs/unknown key"));
    let mut cfg = std::fs::read_to_string(p.join("config.toml")).unwrap();
    cfg.push_str("bogus_key = 1\n");
    std::fs::write(p.join("config.toml"), cfg).unwrap();
    v.push((
        "config.toml with an unknown key",
        p.clone(),
        vec![s(&p.join("config.toml")).to_string(), "bogus_key".into()],
    ));

    let p = run_copy(f, &format!("{tag} bad runs/out of range"));
    let cfg = std::fs::read_to_string(p.join("config.toml")).unwrap();
    std::fs::write(
        p.join("config.toml"),
        cfg.replace("image_size = 64", "image_size = 65"),
    )
    .unwrap();
    v.push((
        "config.toml with an out-of-range value",
        p.clone(),
        vec![
            s(&p.join("config.toml")).to_string(),
            "model.image_size = 65".into(),
        ],
    ));

    let p = run_copy(f, &format!("{tag} bad runs/meta"));
    std::fs::write(p.join("meta.json"), "{\"backbone\": ").unwrap();
    v.push((
        "torn meta.json",
        p.clone(),
        vec![s(&p.join("meta.json")).to_string()],
    ));

    let p = fresh(f, &format!("{tag} bad runs/empty"));
    v.push((
        "an empty folder",
        p.clone(),
        vec![
            s(&p.join("meta.json")).to_string(),
            "finished realnet run folder".into(),
        ],
    ));
    v
}

/// A refused command line: what, the data folder, extra arguments, exit code, expected substrings.
type Case<'a> = (&'a str, &'a Path, Vec<&'a str>, i32, Vec<&'a str>);

// ---------------------------------------------------------------------------------------------
// data inspect

#[test]
fn data_inspect_names_every_bad_file() {
    let Some(f) = fixture() else { return };
    let out = realnet(&["data", "inspect", s(&f.cat)]);
    let text = expect("inspect", &out, 3, &[]);
    for (p, want) in &f.corpus {
        let shown = format!("train/good/{}", p.strip_prefix(&f.imgs).unwrap().display());
        match want {
            Want::Ok => assert!(
                !text
                    .lines()
                    .any(|l| l.contains(&shown) && l.contains("[bad_image]")),
                "{shown} is fine\n{text}"
            ),
            Want::Err(fault) => assert!(
                text.lines()
                    .any(|l| l.contains(&shown) && l.contains("[bad_image]") && l.contains(fault)),
                "{shown}: no line with {fault:?}\n{text}"
            ),
        }
    }
    assert!(
        text.contains("001_mask.png [mask_size_mismatch]: mask is 10×10"),
        "{text}"
    );
    assert!(
        text.contains("test/good/truncated.png [bad_image]"),
        "{text}"
    );
    // Every good image directly in train/good was read (the MVTec layout has no sub-folders there,
    // so `größe test/` is ignored), the folder loop `up` read nothing twice, EXIF rotation applied.
    let flat = |p: &Path| p.parent() == Some(f.imgs.as_path());
    let good = f
        .corpus
        .iter()
        .filter(|c| c.1 == Want::Ok && flat(&c.0))
        .count()
        + 2
        + 2;
    assert!(
        text.contains(&format!("checked   {good} readable images")),
        "{text}"
    );
    let json = realnet(&["data", "inspect", s(&f.cat), "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    let sizes = v["images"]["common_sizes"].as_array().unwrap();
    assert!(
        sizes.iter().any(|s| s["width"] == 32 && s["height"] == 48),
        "rotated 48×32 → 32×48: {v}"
    );
    for kind in ["png palette8", "png rgb16", "png rgba8", "png gray8"] {
        assert_eq!(v["images"]["kinds"][kind], 1, "{kind}: {v}");
    }

    // The huge header is refused by the pixel limit in --quick mode too (no OOM).
    let out = realnet(&["data", "inspect", s(&f.cat), "--quick"]);
    expect(
        "inspect --quick",
        &out,
        3,
        &["huge.png [bad_image]: header says 100000×100000"],
    );
    // An empty training folder.
    let empty = fresh(f, "empty cat");
    std::fs::create_dir_all(empty.join("train/good")).unwrap();
    std::fs::create_dir_all(empty.join("test/good")).unwrap();
    let out = realnet(&["data", "inspect", s(&empty)]);
    expect("inspect empty", &out, 3, &["train [empty_split]"]);
}

// ---------------------------------------------------------------------------------------------
// train

#[test]
fn train_skips_bad_images_and_refuses_bad_settings() {
    let Some(f) = fixture() else { return };
    // The fixture's run: trained on the good images, each bad one named with its fault (exit 5).
    let mut needles: Vec<String> = Vec::new();
    for (p, want) in &f.corpus {
        if let Want::Err(fault) = want {
            needles.push(format!("{}: ", name(p)));
            needles.push(fault.to_string());
        }
    }
    let refs: Vec<&str> = needles.iter().map(String::as_str).collect();
    let text = expect("train on the corpus", &f.train, 5, &refs);
    assert!(
        text.contains(&format!("{} skipped", needles.len() / 2)),
        "{text}"
    );
    assert!(f.run.join("model.safetensors").is_file());

    // Bad texture files are skipped inputs too (exit 5, each named).
    let out = train(
        &f.cat,
        &fresh(f, "run textures"),
        &["--source", &format!("textures:{}", s(&f.imgs))],
    );
    let text = expect("train --source textures:corpus", &out, 5, &[]);
    for (p, want) in &f.corpus {
        if let Want::Err(fault) = want {
            assert!(
                text.lines().any(|l| l.contains(s(p)) && l.contains(fault)),
                "{}: not reported\n{text}",
                p.display()
            );
        }
    }

    let empty = fresh(f, "empty train");
    std::fs::create_dir_all(empty.join("train/good")).unwrap();
    let only_bad = fresh(f, "only bad");
    for n in ["empty.png", "text.png", "huge.png"] {
        std::fs::copy(f.imgs.join(n), mkdir(&only_bad.join("train/good")).join(n)).unwrap();
    }
    let cfg = |name: &str, text: &str| {
        let p = f.root.join(name);
        std::fs::write(&p, text).unwrap();
        p
    };
    let unknown = cfg("unknown key.toml", "[train]\nsteps = 2\nstepz = 3\n");
    let range = cfg("out of range.toml", "[train]\nval_fraction = 0.95\n");
    let not_toml = cfg("not toml.toml", "this is = = not TOML\n");
    let wrong_type = cfg("wrong type.toml", "[train]\nsteps = \"many\"\n");
    let trunc_w = f.root.join("truncated weights.safetensors");
    std::fs::write(&trunc_w, &std::fs::read(lite2()).unwrap()[..5000]).unwrap();
    let mnv2 = shared("weights/mobilenet_v2_torchvision_imagenet1k_v1.safetensors");
    #[rustfmt::skip]
    let cases: Vec<Case> = vec![
        ("empty training folder", &empty, vec![], 3, vec!["no training images"]),
        ("no readable training image", &only_bad, vec![], 3, vec!["only 0 readable training image", "empty.png: empty file", "text.png: not an image", "huge.png: header says"]),
        ("config: unknown key", &f.cat, vec!["--config", s(&unknown)], 4, vec![s(&unknown), "stepz"]),
        ("config: out of range", &f.cat, vec!["--config", s(&range)], 4, vec![s(&range), "train.val_fraction = 0.95"]),
        ("config: not TOML", &f.cat, vec!["--config", s(&not_toml)], 4, vec![s(&not_toml), "not valid TOML"]),
        ("config: wrong type", &f.cat, vec!["--config", s(&wrong_type)], 4, vec![s(&wrong_type), "many"]),
        ("--set head width splitting attention unevenly", &f.cat, vec!["--set", "model.head_channels=7"], 4, vec!["model.head_channels = 7"]),
        ("--set rrs.top_max beyond the kept channels", &f.cat, vec!["--set", "model.rrs.top_max=100000"], 4, vec!["model.rrs.top_max = 100000"]),
        ("--set rrs.top_max negative", &f.cat, vec!["--set", "model.rrs.top_max=-3"], 4, vec!["model.rrs.top_max = -3"]),
        ("--set image_size huge (no allocation abort)", &f.cat, vec!["--set", "model.image_size=4096000"], 4, vec!["model.image_size = 4096000"]),
        ("--set afs_batches=0", &f.cat, vec!["--set", "train.afs_batches=0"], 4, vec!["train.afs_batches"]),
        ("--set unknown key", &f.cat, vec!["--set", "train.stepz=1"], 4, vec!["unknown key 'train.stepz'"]),
        ("truncated backbone weights", &f.cat, vec!["--weights", s(&trunc_w)], 4, vec![s(&trunc_w)]),
        ("another backbone's weights", &f.cat, vec!["--weights", s(&mnv2)], 4, vec![s(&mnv2), "efficientnet_lite2"]),
    ];
    for (i, (what, data, extra, code, needles)) in cases.into_iter().enumerate() {
        let out = train(data, &f.root.join(format!("train case {i}")), &extra);
        expect(what, &out, code, &needles);
    }
}

// ---------------------------------------------------------------------------------------------
// test

#[test]
fn test_skips_bad_images_and_masks_and_refuses_bad_models() {
    let Some(f) = fixture() else { return };
    let run = s(&f.run);
    let out = realnet(&["test", "--run", run, "--data", s(&f.cat), "--json"]);
    expect(
        "test on the hostile category",
        &out,
        5,
        &[
            "test/good/truncated.png: truncated png",
            "001_mask.png: mask is 10×10 but its image",
        ],
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["n_images"], 3, "the 3 good test images are scored: {v}");

    // A defective image without a mask: the whole test is refused (metrics would be wrong).
    let cat = fresh(f, "missing mask");
    for i in 0..2 {
        rgb(48, 40, 30 + i)
            .save(cat.join(format!("train/good/{i}.png")).tap_dir())
            .unwrap();
        rgb(48, 40, 40 + i)
            .save(cat.join(format!("test/good/{i}.png")).tap_dir())
            .unwrap();
        rgb(48, 40, 50 + i)
            .save(cat.join(format!("test/crack/{i}.png")).tap_dir())
            .unwrap();
    }
    gray_png(&cat.join("ground_truth/crack/0_mask.png"), 48, 40, true);
    let out = realnet(&["test", "--run", run, "--data", s(&cat)]);
    expect(
        "missing mask",
        &out,
        3,
        &["test/crack/1.png", "without a mask"],
    );
    // An empty test split.
    let empty = fresh(f, "empty test");
    std::fs::copy(
        f.imgs.join("good.png"),
        mkdir(&empty.join("train/good")).join("a.png"),
    )
    .unwrap();
    std::fs::create_dir_all(empty.join("test")).unwrap();
    let out = realnet(&["test", "--run", run, "--data", s(&empty)]);
    expect("empty test split", &out, 3, &["no test images"]);

    for (what, dir, needles) in bad_runs(f, "test") {
        let refs: Vec<&str> = needles.iter().map(String::as_str).collect();
        expect(
            what,
            &realnet(&["test", "--run", s(&dir), "--data", s(&f.cat)]),
            4,
            &refs,
        );
    }
    let trunc_w = f.root.join("truncated weights (test).safetensors");
    std::fs::write(&trunc_w, &std::fs::read(lite2()).unwrap()[..5000]).unwrap();
    let out = realnet(&["test", "--run", run, "--weights", s(&trunc_w)]);
    expect("truncated --weights", &out, 4, &[s(&trunc_w)]);
}

// ---------------------------------------------------------------------------------------------
// predict

#[test]
fn predict_scores_the_good_files_and_names_the_bad_ones() {
    let Some(f) = fixture() else { return };
    let missing = f.root.join("no such file.png");
    let out = realnet(&["predict", "--run", s(&f.run), s(&f.imgs), s(&missing)]);
    let text = expect(
        "predict on the corpus",
        &out,
        5,
        &[&format!("{}: no such file", s(&missing))],
    );
    let mut scored = Vec::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let j: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        let path = PathBuf::from(j["path"].as_str().unwrap());
        let want = f.corpus.iter().find(|c| c.0 == path).map(|c| c.1);
        match (want, j["error"].as_str()) {
            (Some(Want::Ok), None) => {
                assert!(j["score"].as_f64().is_some_and(f64::is_finite), "{line}");
                scored.push(path);
            }
            (Some(Want::Err(fault)), Some(e)) => {
                assert!(e.contains(s(&path)) && e.contains(fault), "{line}")
            }
            _ => {
                panic!("unexpected line (a file read twice through the `up` loop?): {line}\n{text}")
            }
        }
    }
    let good = f.corpus.iter().filter(|c| c.1 == Want::Ok).count();
    assert_eq!(scored.len(), good, "every good file scored once\n{text}");

    for (what, dir, needles) in bad_runs(f, "predict") {
        let refs: Vec<&str> = needles.iter().map(String::as_str).collect();
        expect(
            what,
            &realnet(&["predict", "--run", s(&dir), s(&f.imgs)]),
            4,
            &refs,
        );
    }
}

// ---------------------------------------------------------------------------------------------
// metrics

#[test]
fn metrics_lists_every_bad_map_and_mask() {
    let Some(f) = fixture() else { return };
    let maps = fresh(f, "maps");
    let map = vec![0.5f32; 64];
    write_npy(&maps.join("good/000.npy"), 8, 8, &map);
    write_npy(&maps.join("crack/000.npy"), 8, 8, &map);
    write_npy(&maps.join("crack/001.npy"), 8, 8, &map); // its mask is 10×10, the image 48×40
    let full = std::fs::read(maps.join("good/000.npy")).unwrap();
    std::fs::write(maps.join("good/001.npy"), &full[..full.len() - 40]).unwrap();
    std::fs::write(maps.join("good/truncated.npy"), b"").unwrap();
    std::fs::write(maps.join("good/stale.npy"), b"no numpy here").unwrap();
    let out = realnet(&["metrics", "--maps", s(&maps), "--data", s(&f.cat)]);
    expect(
        "metrics",
        &out,
        3,
        &[
            "001_mask.png: mask is 10×10 but its image",
            "good/001.npy: 216 data bytes",
            "good/truncated.npy: not a .npy file",
            "good/stale.npy: no test image",
            "4 problem(s)",
        ],
    );
    // A category without test images.
    let empty = fresh(f, "metrics empty");
    std::fs::copy(
        f.imgs.join("good.png"),
        mkdir(&empty.join("train/good")).join("a.png"),
    )
    .unwrap();
    let out = realnet(&["metrics", "--maps", s(&maps), "--data", s(&empty)]);
    expect(
        "metrics, empty test split",
        &out,
        3,
        &["test split is empty"],
    );
}

// ---------------------------------------------------------------------------------------------
// synth

#[test]
fn synth_skips_bad_base_and_texture_images() {
    let Some(f) = fixture() else { return };
    // Base images: the corpus (every one is used: count ≥ the number of files).
    let out_dir = fresh(f, "synth out");
    let n = f.corpus.len().to_string();
    let tex = format!("textures:{}", s(&f.imgs));
    let out = realnet(&[
        "synth",
        "--data",
        s(&f.cat),
        "--out",
        s(&out_dir),
        "--count",
        &n,
        "--source",
        &tex,
    ]);
    let text = expect("synth", &out, 5, &["unreadable input images"]);
    for (p, want) in &f.corpus {
        if let Want::Err(fault) = want {
            for base in [f.cat.join("train/good").join(name(p)), p.clone()] {
                assert!(
                    text.lines().any(|l| l.starts_with("skipped: ")
                        && l.contains(s(&base))
                        && l.contains(fault)),
                    "{}: not listed as skipped\n{text}",
                    base.display()
                );
            }
        }
    }
    let good = f.corpus.iter().filter(|c| c.1 == Want::Ok).count();
    let images = std::fs::read_dir(out_dir.join("images")).unwrap().count();
    assert_eq!(
        images,
        f.corpus.len(),
        "every sample written ({good} good bases)"
    );
    let empty = fresh(f, "synth empty");
    std::fs::create_dir_all(empty.join("train/good")).unwrap();
    let out = realnet(&[
        "synth",
        "--data",
        s(&empty),
        "--out",
        s(&fresh(f, "synth out 2")),
        "--count",
        "2",
    ]);
    expect(
        "synth, empty training folder",
        &out,
        3,
        &["no normal training images"],
    );
}

// ---------------------------------------------------------------------------------------------
// sdas train / sample

fn sdas_train(data: &Path, out: &Path, extra: &[&str]) -> Output {
    let mut args = vec!["sdas", "train", "--data", s(data), "--out", s(out)];
    args.extend(SDAS_TINY);
    args.extend(extra);
    realnet(&args)
}

#[test]
fn sdas_skips_bad_images_and_refuses_bad_models() {
    let Some(f) = fixture() else { return };
    let model = fresh(f, "sdas model");
    let out = sdas_train(&f.cat, &model, &[]);
    let mut needles = Vec::new();
    for (p, want) in &f.corpus {
        if let Want::Err(fault) = want {
            needles.push(format!("{}: ", s(&f.cat.join("train/good").join(name(p)))));
            needles.push(fault.to_string());
        }
    }
    let refs: Vec<&str> = needles.iter().map(String::as_str).collect();
    expect("sdas train on the corpus", &out, 5, &refs);

    let empty = fresh(f, "sdas empty");
    std::fs::create_dir_all(empty.join("train/good")).unwrap();
    let unknown = f.root.join("sdas unknown.toml");
    std::fs::write(&unknown, "[diffusion]\ntimesteps = 100\nbogus = true\n").unwrap();
    let range = f.root.join("sdas range.toml");
    std::fs::write(&range, "[diffusion]\ntimesteps = 1000000000\n").unwrap();
    #[rustfmt::skip]
    let cases: Vec<Case> = vec![
        ("empty training folder", &empty, vec![], 3, vec!["no training images"]),
        ("config: unknown key", &f.cat, vec!["--config", s(&unknown)], 4, vec![s(&unknown), "bogus"]),
        ("config: out of range", &f.cat, vec!["--config", s(&range)], 4, vec![s(&range), "diffusion.timesteps = 1000000000"]),
        ("--set head width splitting attention unevenly", &f.cat, vec!["--set", "model.num_head_channels=7"], 4, vec!["num_head_channels = 7"]),
        ("--set model_channels=1", &f.cat, vec!["--set", "model.model_channels=1"], 4, vec!["model_channels must be ≥ 2"]),
        ("--set image_size huge", &f.cat, vec!["--set", "model.image_size=4096000"], 4, vec!["image_size 4096000"]),
    ];
    for (i, (what, data, extra, code, needles)) in cases.into_iter().enumerate() {
        let out = sdas_train(data, &f.root.join(format!("sdas case {i}")), &extra);
        expect(what, &out, code, &needles);
    }

    // sample: damaged model folders.
    let copy = |rel: &str| {
        let p = fresh(f, rel);
        for file in ["config.toml", "model.safetensors", "meta.json"] {
            std::fs::copy(model.join(file), p.join(file)).unwrap();
        }
        p
    };
    let trunc = copy("sdas bad/truncated");
    let m = trunc.join("model.safetensors");
    std::fs::write(&m, &std::fs::read(&m).unwrap()[..300]).unwrap();
    let detector = copy("sdas bad/detector model");
    std::fs::copy(
        f.run.join("model.safetensors"),
        detector.join("model.safetensors"),
    )
    .unwrap();
    let key = copy("sdas bad/unknown key");
    let cfg = std::fs::read_to_string(key.join("config.toml")).unwrap();
    std::fs::write(key.join("config.toml"), format!("{cfg}bogus_key = 1\n")).unwrap();
    #[rustfmt::skip]
    let cases: Vec<(&str, &Path, Vec<String>)> = vec![
        ("truncated model", &trunc, vec![s(&m).into(), "not a readable safetensors".into()]),
        ("a detector's model as the SDAS model", &detector, vec![s(&detector.join("model.safetensors")).into(), "does not match".into()]),
        ("config.toml with an unknown key", &key, vec![s(&key.join("config.toml")).into(), "bogus_key".into()]),
    ];
    for (what, dir, needles) in cases {
        let refs: Vec<&str> = needles.iter().map(String::as_str).collect();
        let out = realnet(&[
            "sdas",
            "sample",
            "--model",
            s(dir),
            "--category",
            "widget",
            "--count",
            "2",
            "--out",
            s(&f.root.join("sdas samples")),
        ]);
        expect(what, &out, 4, &refs);
    }
}

// ---------------------------------------------------------------------------------------------
// serve

/// One HTTP/1.1 exchange on a fresh connection: (status, JSON body).
fn post(addr: &str, path: &str, ctype: &str, body: &[u8]) -> (u16, serde_json::Value) {
    let (status, body) = http(addr, "POST", path, &[("Content-Type", ctype)], body);
    (status, json(&body))
}

fn get(addr: &str, path: &str) -> u16 {
    http(addr, "GET", path, &[], b"").0
}

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn serve_answers_hostile_uploads_with_4xx_and_keeps_serving() {
    let Some(f) = fixture() else { return };
    let mut child = Command::new(env!("CARGO_BIN_EXE_realnet"))
        .args([
            "--device",
            "cpu",
            "--threads",
            "1",
            "serve",
            "--run",
            s(&f.run),
        ])
        .args(["--addr", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let srv = Server(child);
    let addr = loop {
        match lines.next() {
            Some(Ok(l)) => {
                if let Some(a) = l.strip_prefix("listening on http://") {
                    break a.trim().to_string();
                }
            }
            _ => panic!("serve exited before listening"),
        }
    };
    for (rel, bytes, want) in images() {
        let (status, v) = post(&addr, "/v1/predict", "application/octet-stream", &bytes);
        match want {
            Want::Ok => {
                assert_eq!(status, 200, "{rel}: {v}");
                assert!(
                    v["predictions"][0]["score"].as_f64().is_some(),
                    "{rel}: {v}"
                );
            }
            Want::Err(fault) => {
                // An empty body is a bad request; an unreadable image an unprocessable one.
                let code = if bytes.is_empty() { 400 } else { 422 };
                assert_eq!(status, code, "{rel}: {v}");
                let e = v["error"].as_str().unwrap_or_default();
                assert!(bytes.is_empty() || e.contains(fault), "{rel}: {v}");
            }
        }
    }
    // Multipart: a non-ASCII file name comes back as given; a bad part fails the request, named.
    let boundary = "hostile-boundary-42";
    let part = |name: &str, bytes: &[u8]| {
        let mut b = format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"image\"; filename=\"{name}\"\r\n\
             Content-Type: application/octet-stream\r\n\r\n"
        )
        .into_bytes();
        b.extend(bytes);
        b.extend(b"\r\n");
        b
    };
    let ctype = format!("multipart/form-data; boundary={boundary}");
    let good = std::fs::read(f.imgs.join("good.png")).unwrap();
    let cmyk = std::fs::read(f.imgs.join("cmyk.jpg")).unwrap();
    let trunc = std::fs::read(f.imgs.join("truncated.jpg")).unwrap();
    let mut body = part("größe bild 1.png", &good);
    body.extend(part("cmyk.jpg", &cmyk));
    body.extend(format!("--{boundary}--\r\n").as_bytes());
    let (status, v) = post(&addr, "/v1/predict", &ctype, &body);
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["predictions"][0]["name"], "größe bild 1.png", "{v}");
    let mut body = part("gut.png", &good);
    body.extend(part("kaputt ü.jpg", &trunc));
    body.extend(format!("--{boundary}--\r\n").as_bytes());
    let (status, v) = post(&addr, "/v1/predict", &ctype, &body);
    assert_eq!(status, 422, "{v}");
    let e = v["error"].as_str().unwrap();
    assert!(
        e.contains("kaputt ü.jpg") && e.contains("truncated jpeg"),
        "{v}"
    );
    assert_eq!(get(&addr, "/healthz"), 200, "still serving");
    drop(srv);

    // Damaged run folders: refused before listening.
    for (what, dir, needles) in bad_runs(f, "serve") {
        let refs: Vec<&str> = needles.iter().map(String::as_str).collect();
        let out = realnet(&["serve", "--run", s(&dir), "--addr", "127.0.0.1:0"]);
        expect(what, &out, 4, &refs);
    }
}
