//! Anomaly sources (spec §3.3) behind one type: SIA images of the category (`sia:DIR`), texture
//! images with three random augmentations (`textures:DIR`, DRAEM-style), the category's own normal
//! training images with the same augmentations (`self`), or built-in procedural textures
//! (`procedural`) for users with none of these. Image folders are decoded once and cached.
use crate::augment;
use crate::perlin::perlin_noise;
use crate::SynthError;
use image::RgbImage;
use rand::Rng;
use std::collections::{BTreeSet, HashSet};
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::{Arc, Mutex, OnceLock};

/// What a source is, as written in configs and on the command line:
/// `sia:DIR`, `textures:DIR`, `self` or `procedural`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum SourceSpec {
    Sia(PathBuf),
    Textures(PathBuf),
    /// The category's own normal training images (augmented as textures): the anomaly is another
    /// part's surface in the wrong place — a brightness, streak or structure change of the
    /// product's own kind rather than a foreign texture.
    Own,
    Procedural,
}

impl FromStr for SourceSpec {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let t = s.trim();
        if t.eq_ignore_ascii_case("procedural") {
            return Ok(SourceSpec::Procedural);
        }
        if t.eq_ignore_ascii_case("self") {
            return Ok(SourceSpec::Own);
        }
        match t.split_once(':') {
            Some((k, d))
                if !d.is_empty()
                    && (k.eq_ignore_ascii_case("sia") || k.eq_ignore_ascii_case("sdas")) =>
            {
                Ok(SourceSpec::Sia(d.into()))
            }
            Some((k, d))
                if !d.is_empty()
                    && (k.eq_ignore_ascii_case("textures") || k.eq_ignore_ascii_case("dtd")) =>
            {
                Ok(SourceSpec::Textures(d.into()))
            }
            _ => Err(format!(
                "anomaly source '{s}': expected 'sia:DIR' (SIA/SDAS images of the category), \
                 'textures:DIR' (texture images, e.g. DTD), 'self' (the category's own training \
                 images) or 'procedural'"
            )),
        }
    }
}

impl fmt::Display for SourceSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SourceSpec::Sia(d) => write!(f, "sia:{}", d.display()),
            SourceSpec::Textures(d) => write!(f, "textures:{}", d.display()),
            SourceSpec::Own => write!(f, "self"),
            SourceSpec::Procedural => write!(f, "procedural"),
        }
    }
}

impl TryFrom<String> for SourceSpec {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        s.parse()
    }
}

impl From<SourceSpec> for String {
    fn from(s: SourceSpec) -> String {
        s.to_string()
    }
}

/// The kind of a synthesised sample.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Normal,
    Sia,
    Texture,
    /// A part of another normal training image of the category (`self`).
    Own,
    Procedural,
    /// A soft brightness/texture change of the image itself (`SynthConfig::shade`).
    Shade,
}

const IMAGE_EXTS: [&str; 6] = ["png", "jpg", "jpeg", "bmp", "tif", "tiff"];

/// Image files under `dir` (recursively, 3 levels: DTD keeps `images/<class>/*.jpg`), sorted. A
/// folder reached again through a link (a symlink loop) is listed once.
pub fn list_images(dir: &Path) -> Result<Vec<PathBuf>, SynthError> {
    fn walk(
        dir: &Path,
        depth: u32,
        out: &mut Vec<PathBuf>,
        seen: &mut HashSet<PathBuf>,
    ) -> std::io::Result<()> {
        if !seen.insert(std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf())) {
            return Ok(());
        }
        for e in std::fs::read_dir(dir)? {
            let p = e?.path();
            let hidden = p
                .file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with('.'));
            if hidden {
                continue;
            }
            if p.is_dir() {
                if depth > 0 {
                    walk(&p, depth - 1, out, seen)?;
                }
            } else if p
                .extension()
                .and_then(|x| x.to_str())
                .is_some_and(|x| IMAGE_EXTS.contains(&x.to_ascii_lowercase().as_str()))
            {
                out.push(p);
            }
        }
        Ok(())
    }
    let mut out = Vec::new();
    walk(dir, 3, &mut out, &mut HashSet::new()).map_err(|e| {
        SynthError::Input(format!("{}: cannot list the folder: {e}", dir.display()))
    })?;
    out.sort();
    Ok(out)
}

/// Decodes any supported image file to 8-bit RGB.
pub fn decode_rgb(path: &Path) -> Result<RgbImage, String> {
    // realnet-data decodes every format/bit depth with size limits (errors name the file).
    realnet_data::load_rgb(path, None).map_err(|e| e.to_string())
}

/// OpenCV `cv2.resize(..., INTER_LINEAR)` for 8-bit RGB: half-pixel centres, no antialiasing,
/// 11-bit fixed-point weights (the generic C++ path of OpenCV's resize).
pub fn resize_bilinear_cv2(src: &RgbImage, dw: u32, dh: u32) -> RgbImage {
    let (sw, sh) = (src.width() as usize, src.height() as usize);
    if (sw as u32, sh as u32) == (dw, dh) {
        return src.clone();
    }
    const ONE: i32 = 1 << 11;
    let taps = |dn: usize, sn: usize| -> Vec<(usize, usize, i32, i32)> {
        let scale = sn as f64 / dn as f64;
        (0..dn)
            .map(|d| {
                let f = (d as f64 + 0.5) * scale - 0.5;
                let mut s = f.floor() as i64;
                let mut t = f - s as f64;
                if s < 0 {
                    s = 0;
                    t = 0.0;
                }
                if s as usize >= sn - 1 {
                    s = sn as i64 - 1;
                    t = 0.0;
                }
                let s = s as usize;
                let b = (t * ONE as f64).round() as i32;
                (s, (s + 1).min(sn - 1), ONE - b, b)
            })
            .collect()
    };
    let xs = taps(dw as usize, sw);
    let ys = taps(dh as usize, sh);
    let s = src.as_raw();
    // Horizontal pass per source row (kept as i32 with 11 fractional bits).
    let hrow = |r: usize| -> Vec<i32> {
        let row = &s[r * sw * 3..(r + 1) * sw * 3];
        let mut out = Vec::with_capacity(xs.len() * 3);
        for &(x0, x1, a0, a1) in &xs {
            for c in 0..3 {
                out.push(row[x0 * 3 + c] as i32 * a0 + row[x1 * 3 + c] as i32 * a1);
            }
        }
        out
    };
    let mut out = Vec::with_capacity(dw as usize * dh as usize * 3);
    let mut cache: Option<(usize, Vec<i32>, usize, Vec<i32>)> = None;
    for &(y0, y1, b0, b1) in &ys {
        let (r0, r1) = match cache.take() {
            Some((a, ra, b, rb)) if a == y0 && b == y1 => (ra, rb),
            Some((_, _, b, rb)) if b == y0 => (rb, hrow(y1)),
            _ => (hrow(y0), hrow(y1)),
        };
        for (v0, v1) in r0.iter().zip(&r1) {
            let v = (*v0 as i64 * b0 as i64 + *v1 as i64 * b1 as i64 + (1 << 21)) >> 22;
            out.push(v.clamp(0, 255) as u8);
        }
        cache = Some((y0, r0, y1, r1));
    }
    RgbImage::from_raw(dw, dh, out).unwrap_or_else(|| RgbImage::new(dw, dh))
}

/// Images of one folder, decoded lazily once and cached, resized to `size` (cv2 bilinear).
#[derive(Debug)]
pub struct ImageSet {
    pub dir: PathBuf,
    pub files: Vec<PathBuf>,
    size: (u32, u32),
    cache: Vec<OnceLock<Option<Arc<RgbImage>>>>,
    /// The unreadable files met so far, with why (each reported once).
    skipped: Mutex<BTreeSet<String>>,
}

/// SIA sets hold up to 10k images per category: beyond this many cached images (≈ 200 KB each
/// at 256²) further files are decoded on every draw instead of kept.
pub const MAX_CACHED: usize = 4096;

impl ImageSet {
    /// Lists `dir`; with `eager` decodes every file now (textures: few and small). Fails when
    /// the folder holds no readable image; unreadable files are skipped with a warning.
    pub fn open(dir: &Path, size: (u32, u32), eager: bool) -> Result<ImageSet, SynthError> {
        if !dir.is_dir() {
            return Err(SynthError::Input(format!(
                "{}: not a folder (anomaly source images expected there)",
                dir.display()
            )));
        }
        Self::from_files(dir, list_images(dir)?, size, eager)
    }

    /// The given image files (`open` after listing; `dir` names the set in messages); with `eager`
    /// every file is decoded now. Fails when no file is readable; unreadable ones are skipped with
    /// a warning.
    pub fn from_files(
        dir: &Path,
        files: Vec<PathBuf>,
        size: (u32, u32),
        eager: bool,
    ) -> Result<ImageSet, SynthError> {
        let cache = (0..files.len()).map(|_| OnceLock::new()).collect();
        let set = ImageSet {
            dir: dir.to_path_buf(),
            files,
            size,
            cache,
            skipped: Mutex::default(),
        };
        let readable = if eager {
            use rayon::prelude::*;
            (0..set.files.len())
                .into_par_iter()
                .filter(|&i| set.get(i).is_some())
                .count()
        } else {
            usize::from((0..set.files.len()).any(|i| set.get(i).is_some()))
        };
        if readable == 0 {
            return Err(SynthError::Input(format!(
                "{}: no readable image (png/jpg/bmp/tiff) in this folder or its subfolders ({} candidate files); \
                 point the source at a folder of images",
                dir.display(),
                set.files.len()
            )));
        }
        Ok(set)
    }

    /// A set of images already decoded (e.g. a category's training images): shared, not copied,
    /// when already at `size`, else resized; `dir` only names the set in messages. Fails when
    /// `images` is empty.
    pub fn from_images(
        dir: &Path,
        images: Vec<(PathBuf, Arc<RgbImage>)>,
        size: (u32, u32),
    ) -> Result<ImageSet, SynthError> {
        if images.is_empty() {
            return Err(SynthError::Input(format!(
                "{}: no images to draw anomalies from",
                dir.display()
            )));
        }
        let (files, cache) = images
            .into_iter()
            .map(|(path, img)| {
                let img = if img.dimensions() == size {
                    img
                } else {
                    Arc::new(resize_bilinear_cv2(&img, size.0, size.1))
                };
                (path, OnceLock::from(Some(img)))
            })
            .unzip();
        Ok(ImageSet {
            dir: dir.to_path_buf(),
            files,
            size,
            cache,
            skipped: Mutex::default(),
        })
    }

    fn load(&self, i: usize) -> Option<Arc<RgbImage>> {
        match decode_rgb(&self.files[i]) {
            Ok(img) => Some(Arc::new(resize_bilinear_cv2(
                &img,
                self.size.0,
                self.size.1,
            ))),
            Err(e) => {
                let mut skipped = self.skipped.lock().unwrap_or_else(|p| p.into_inner());
                if skipped.insert(e.clone()) {
                    tracing::warn!("anomaly source skipped: {e}");
                }
                None
            }
        }
    }

    /// The unreadable files met so far (sorted), each with why.
    pub fn skipped(&self) -> Vec<String> {
        let skipped = self.skipped.lock().unwrap_or_else(|p| p.into_inner());
        skipped.iter().cloned().collect()
    }

    /// Image `i` at the set's size, `None` when unreadable (warned once).
    pub fn get(&self, i: usize) -> Option<Arc<RgbImage>> {
        if let Some(hit) = self.cache[i].get() {
            return hit.clone();
        }
        if i >= MAX_CACHED {
            return self.load(i);
        }
        self.cache[i].get_or_init(|| self.load(i)).clone()
    }

    /// A uniformly random readable image: the drawn file, or the next readable one after it.
    pub fn draw<R: Rng + ?Sized>(&self, rng: &mut R) -> Option<(Arc<RgbImage>, &Path)> {
        let n = self.files.len();
        if n == 0 {
            return None;
        }
        let start = rng.gen_range(0..n);
        (0..n)
            .map(|k| (start + k) % n)
            .find_map(|i| self.get(i).map(|img| (img, self.files[i].as_path())))
    }
}

/// An opened anomaly source.
#[derive(Debug, Clone)]
pub enum Source {
    Sia(Arc<ImageSet>),
    Textures(Arc<ImageSet>),
    Own(Arc<ImageSet>),
    Procedural,
}

/// What a source produced for one sample.
pub struct Drawn {
    /// Shared with the cache when a cached image is used as is (no copy per sample).
    pub image: Arc<RgbImage>,
    pub file: Option<PathBuf>,
    pub ops: Vec<augment::Op>,
}

impl Source {
    /// Opens (lists, and for textures decodes) a source for `size`-sized base images. `own` is
    /// the category's training images, which only the `self` source reads.
    pub fn open(
        spec: &SourceSpec,
        size: (u32, u32),
        own: Option<&Arc<ImageSet>>,
    ) -> Result<Source, SynthError> {
        Ok(match spec {
            SourceSpec::Sia(d) => Source::Sia(Arc::new(ImageSet::open(d, size, false)?)),
            SourceSpec::Textures(d) => Source::Textures(Arc::new(ImageSet::open(d, size, true)?)),
            SourceSpec::Own => Source::Own(own.cloned().ok_or_else(|| {
                SynthError::Config(
                    "the 'self' anomaly source draws from the category's own training images, \
                     which this command does not provide; use it with `realnet train` or \
                     `realnet synth`"
                        .into(),
                )
            })?),
            SourceSpec::Procedural => Source::Procedural,
        })
    }

    /// The source images found unreadable so far, each with why.
    pub fn skipped(&self) -> Vec<String> {
        match self {
            Source::Sia(set) | Source::Textures(set) | Source::Own(set) => set.skipped(),
            Source::Procedural => Vec::new(),
        }
    }

    pub fn kind(&self) -> Kind {
        match self {
            Source::Sia(_) => Kind::Sia,
            Source::Textures(_) => Kind::Texture,
            Source::Own(_) => Kind::Own,
            Source::Procedural => Kind::Procedural,
        }
    }

    /// Official β ranges: SIA U(0.5, 1), DTD textures U(0.2, 1); `self` and procedural as textures.
    pub fn default_beta(&self) -> (f64, f64) {
        match self {
            Source::Sia(_) => (0.5, 1.0),
            Source::Textures(_) | Source::Own(_) | Source::Procedural => (0.2, 1.0),
        }
    }

    /// One anomaly source image of `w×h`.
    pub fn draw<R: Rng + ?Sized>(&self, rng: &mut R, w: u32, h: u32) -> Drawn {
        let fit = |img: Arc<RgbImage>| {
            if img.dimensions() == (w, h) {
                img
            } else {
                Arc::new(resize_bilinear_cv2(&img, w, h))
            }
        };
        match self {
            Source::Sia(set) | Source::Textures(set) | Source::Own(set) => match set.draw(rng) {
                Some((img, file)) => {
                    let mut image = fit(img);
                    let ops = if matches!(self, Source::Textures(_) | Source::Own(_)) {
                        // Copies the image first when the cache still shares it.
                        augment::rand_augment(rng, Arc::make_mut(&mut image)).to_vec()
                    } else {
                        Vec::new()
                    };
                    Drawn {
                        image,
                        file: Some(file.to_path_buf()),
                        ops,
                    }
                }
                // Every file became unreadable after opening (e.g. deleted): fall back, warned.
                None => Drawn {
                    image: Arc::new(procedural_texture(rng, w, h)),
                    file: None,
                    ops: Vec::new(),
                },
            },
            Source::Procedural => Drawn {
                image: Arc::new(procedural_texture(rng, w, h)),
                file: None,
                ops: Vec::new(),
            },
        }
    }
}

/// A coloured fractal-noise texture: 2–4 octaves of Perlin noise mapped through a random
/// 3-colour palette, optionally turned into warped stripes (wood/marble-like), with a second
/// noise modulating brightness. Deterministic from `rng`.
pub fn procedural_texture<R: Rng + ?Sized>(rng: &mut R, w: u32, h: u32) -> RgbImage {
    let (wu, hu) = (w as usize, h as usize);
    let fractal = |rng: &mut R| -> Vec<f32> {
        let octaves = rng.gen_range(2..=4);
        let base = rng.gen_range(1..=4u32);
        let mut acc = vec![0f32; wu * hu];
        let mut amp = 1.0f32;
        let mut norm = 0.0f32;
        for o in 0..octaves {
            let res = 1usize << (base + o).min(7);
            let n = perlin_noise(rng, hu, wu, res, res);
            acc.iter_mut().zip(&n).for_each(|(a, v)| *a += amp * v);
            norm += amp;
            amp *= 0.5;
        }
        acc.iter_mut().for_each(|a| *a /= norm);
        acc
    };
    let n1 = fractal(rng);
    let n2 = fractal(rng);
    let stripes = rng.gen_bool(0.5);
    let freq: f32 = rng.gen_range(2.0..12.0);
    let angle: f32 = rng.gen_range(0.0..std::f32::consts::PI);
    let (ca, sa) = (angle.cos(), angle.sin());
    let palette: [[f32; 3]; 3] =
        std::array::from_fn(|_| std::array::from_fn(|_| rng.gen_range(0.0..255.0)));
    let contrast: f32 = rng.gen_range(0.3..0.6);
    let mut out = Vec::with_capacity(wu * hu * 3);
    for y in 0..hu {
        for x in 0..wu {
            let i = y * wu + x;
            let t = if stripes {
                let u = (x as f32 * ca + y as f32 * sa) / wu.max(1) as f32;
                0.5 + 0.5 * (std::f32::consts::TAU * (freq * u + 2.0 * n1[i])).sin()
            } else {
                (0.5 + n1[i] / (2.0 * contrast)).clamp(0.0, 1.0)
            };
            let (c0, c1, f) = if t < 0.5 {
                (palette[0], palette[1], t * 2.0)
            } else {
                (palette[1], palette[2], t * 2.0 - 1.0)
            };
            let shade = 1.0 + 0.3 * n2[i];
            for c in 0..3 {
                out.push(((c0[c] + f * (c1[c] - c0[c])) * shade).clamp(0.0, 255.0) as u8);
            }
        }
    }
    RgbImage::from_raw(w, h, out).unwrap_or_else(|| RgbImage::new(w, h))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::sample_rng;

    #[test]
    fn specs_parse() {
        assert_eq!(
            "sia:/a/b".parse::<SourceSpec>().unwrap(),
            SourceSpec::Sia("/a/b".into())
        );
        assert_eq!(
            "textures:t".parse::<SourceSpec>().unwrap(),
            SourceSpec::Textures("t".into())
        );
        assert_eq!(
            "Procedural".parse::<SourceSpec>().unwrap(),
            SourceSpec::Procedural
        );
        for bad in ["", "sia:", "texture", "foo:bar"] {
            assert!(bad.parse::<SourceSpec>().is_err(), "{bad}");
        }
        assert_eq!(
            SourceSpec::Textures("x/y".into()).to_string(),
            "textures:x/y"
        );
    }

    #[test]
    fn cv2_resize_identity_and_constant() {
        let img = RgbImage::from_fn(7, 5, |x, y| image::Rgb([x as u8 * 30, y as u8 * 40, 9]));
        assert_eq!(resize_bilinear_cv2(&img, 7, 5), img);
        let c = RgbImage::from_pixel(20, 20, image::Rgb([13, 200, 77]));
        let r = resize_bilinear_cv2(&c, 256, 33);
        assert!(r.pixels().all(|p| p.0 == [13, 200, 77]));
        // 2x upscale of [0, 100]: cv2 gives [0, 25, 75, 100].
        let two = RgbImage::from_fn(2, 1, |x, _| image::Rgb([x as u8 * 100; 3]));
        let up = resize_bilinear_cv2(&two, 4, 1);
        let row: Vec<u8> = up.pixels().map(|p| p.0[0]).collect();
        assert_eq!(row, vec![0, 25, 75, 100]);
        // 2x downscale averages pairs: [0, 100, 50, 50] -> [50, 50].
        let four = RgbImage::from_fn(4, 1, |x, _| image::Rgb([[0u8, 100, 50, 50][x as usize]; 3]));
        let down: Vec<u8> = resize_bilinear_cv2(&four, 2, 1)
            .pixels()
            .map(|p| p.0[0])
            .collect();
        assert_eq!(down, vec![50, 50]);
    }

    #[test]
    fn procedural_is_deterministic_and_varied() {
        let a = procedural_texture(&mut sample_rng(1, 1), 64, 48);
        assert_eq!(a, procedural_texture(&mut sample_rng(1, 1), 64, 48));
        assert_ne!(a, procedural_texture(&mut sample_rng(1, 2), 64, 48));
        assert_eq!(a.dimensions(), (64, 48));
        let (mn, mx) = a
            .as_raw()
            .iter()
            .fold((255u8, 0u8), |(a, b), &v| (a.min(v), b.max(v)));
        assert!(mx - mn > 20, "flat texture {mn}..{mx}");
    }

    #[test]
    fn folder_without_images_is_a_clear_error() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("notes.txt"), "x").unwrap();
        std::fs::write(d.path().join("broken.png"), "not a png").unwrap();
        let e = Source::open(&SourceSpec::Textures(d.path().into()), (32, 32), None)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains(&d.path().display().to_string()) && e.contains("no readable image"),
            "{e}"
        );
        let e = Source::open(&SourceSpec::Sia(d.path().join("missing")), (32, 32), None)
            .unwrap_err()
            .to_string();
        assert!(e.contains("not a folder"), "{e}");
    }

    #[test]
    fn unreadable_files_are_skipped() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir(d.path().join("class")).unwrap();
        std::fs::write(d.path().join("class/a_broken.png"), "nope").unwrap();
        RgbImage::from_pixel(10, 10, image::Rgb([1, 2, 3]))
            .save(d.path().join("class/b.png"))
            .unwrap();
        let src = Source::open(&SourceSpec::Sia(d.path().into()), (16, 16), None).unwrap();
        for i in 0..10 {
            let got = src.draw(&mut sample_rng(0, i), 16, 16);
            assert_eq!(
                got.file.as_deref(),
                Some(d.path().join("class/b.png").as_path())
            );
            assert!(got.image.pixels().all(|p| p.0 == [1, 2, 3]));
        }
    }
}
