//! The `realnet synth` job: writes `images/NNNNN.png`, `masks/NNNNN.png` and `index.jsonl` for
//! `count` synthetic anomalies of one category. Atomic writes, resumable, the same bytes for any
//! thread count (every draw comes from (seed, index); the index is rewritten sorted at the end).
use crate::foreground::{known_rule, ForegroundRule};
use crate::sources::{ImageSet, Kind, SourceSpec};
use crate::synthesizer::{SynthConfig, Synthesizer, WeightedSource};
use crate::{mask_fraction, SynthError};
use image::{GrayImage, RgbImage};
use rayon::prelude::*;
use realnet_data::{Category, LayoutKind, Sample};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// What to synthesise.
#[derive(Debug, Clone)]
pub struct SynthJob {
    /// Category folder; its normal training images are the base images.
    pub data: PathBuf,
    pub out: PathBuf,
    pub count: usize,
    pub seed: u64,
    /// Anomaly sources, equally weighted; empty = procedural.
    pub sources: Vec<SourceSpec>,
    /// `None` = the category's official rule (or the whole image for unknown categories).
    pub foreground: Option<ForegroundRule>,
    /// Contact sheet of the first 16 samples.
    pub preview: Option<PathBuf>,
    /// Side of the square base images (official 256).
    pub size: u32,
    /// Share of scratch/crack strokes among the masks (0 = Perlin only, official).
    pub stroke_prob: f64,
    /// Share of large soft brightness/texture changes among the anomalies (0 = official).
    pub shade_prob: f64,
}

impl SynthJob {
    pub fn new(data: impl Into<PathBuf>, out: impl Into<PathBuf>, count: usize) -> SynthJob {
        SynthJob {
            data: data.into(),
            out: out.into(),
            count,
            seed: 0,
            sources: Vec::new(),
            foreground: None,
            preview: None,
            size: 256,
            stroke_prob: 0.0,
            shade_prob: 0.0,
        }
    }
}

/// One line of `index.jsonl`.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct IndexLine {
    pub index: u64,
    /// Relative to the output folder.
    pub image: String,
    pub mask: String,
    /// The base (normal training) image.
    pub base: PathBuf,
    pub kind: Kind,
    /// The anomaly source image (none for procedural textures).
    pub source_file: Option<PathBuf>,
    pub beta: f64,
    pub mask_fraction: f64,
    pub seed: u64,
    /// Texture augmentations, in order.
    #[serde(default)]
    pub ops: Vec<String>,
    /// The mask is thin strokes (`--strokes`), not a Perlin region; absent when false.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub strokes: bool,
}

/// What the job did.
#[derive(Debug, Clone)]
pub struct SynthReport {
    pub written: usize,
    /// Indices found complete from an earlier run.
    pub resumed: usize,
    /// Base images and anomaly source images that could not be read (each reported; the others
    /// were used).
    pub skipped_inputs: Vec<String>,
    pub foreground: ForegroundRule,
    /// Whether the rule came from `--foreground` or the category table (else: whole image).
    pub foreground_known: bool,
    /// Samples whose foreground left no room, so the mask ignored it.
    pub foreground_ignored: usize,
    pub mean_mask_fraction: f64,
    pub index: PathBuf,
    pub preview: Option<PathBuf>,
}

fn name(i: u64) -> String {
    format!("{i:05}.png")
}

/// The official rule of an opened category, looked up by layout and folder names.
pub fn category_rule(cat: &Category) -> Option<ForegroundRule> {
    let dataset = match cat.layout {
        LayoutKind::Btad => "btad".to_string(),
        LayoutKind::Visa => "visa".to_string(),
        _ => cat
            .root
            .canonicalize()
            .unwrap_or_else(|_| cat.root.clone())
            .parent()
            .and_then(|p| p.file_name())
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
    };
    known_rule(&dataset, &cat.name)
}

/// Writes `bytes` to `path` through a temporary name in the same folder and a rename.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let fname = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{fname}.tmp{}", std::process::id()));
    let res = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_data()?;
        std::fs::rename(&tmp, path)
    })();
    if res.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    res
}

fn png_bytes(img: image::DynamicImage) -> Result<Vec<u8>, String> {
    let mut buf = std::io::Cursor::new(Vec::new());
    img.write_to(&mut buf, image::ImageFormat::Png)
        .map_err(|e| e.to_string())?;
    Ok(buf.into_inner())
}

fn out_err(path: &Path, e: impl std::fmt::Display) -> SynthError {
    SynthError::Output(format!(
        "{}: cannot write: {e}; choose a writable output folder (--out)",
        path.display()
    ))
}

/// Reads the complete entries of an earlier run: parseable lines whose files exist, `index <
/// count`, last line per index wins. A torn last line from a crash is ignored.
pub fn read_index(out: &Path, count: usize) -> BTreeMap<u64, IndexLine> {
    let mut done = BTreeMap::new();
    let Ok(text) = std::fs::read_to_string(out.join("index.jsonl")) else {
        return done;
    };
    for line in text.lines() {
        let Ok(l) = serde_json::from_str::<IndexLine>(line) else {
            continue;
        };
        if (l.index as usize) < count
            && l.image == format!("images/{}", name(l.index))
            && l.mask == format!("masks/{}", name(l.index))
            && out.join(&l.image).is_file()
            && out.join(&l.mask).is_file()
        {
            done.insert(l.index, l);
        }
    }
    done
}

fn write_index(out: &Path, lines: &BTreeMap<u64, IndexLine>) -> Result<(), SynthError> {
    let mut text = String::new();
    for l in lines.values() {
        text.push_str(&serde_json::to_string(l).map_err(|e| SynthError::Output(e.to_string()))?);
        text.push('\n');
    }
    let p = out.join("index.jsonl");
    write_atomic(&p, text.as_bytes()).map_err(|e| out_err(&p, e))
}

/// Base images: the readable training images, in order (size×size, Pillow bilinear). Decodes only
/// as many as `count` needs, replacing unreadable ones by later files.
fn load_bases(
    train: &[Sample],
    count: usize,
    size: u32,
    skipped: &mut Vec<String>,
) -> Vec<(PathBuf, RgbImage)> {
    let want = count.min(train.len());
    let mut bases = Vec::new();
    let mut next = 0;
    while bases.len() < want && next < train.len() {
        let take = (want - bases.len()).min(train.len() - next);
        let chunk = &train[next..next + take];
        next += take;
        for (s, r) in chunk
            .iter()
            .zip(realnet_data::load_all(chunk, Some((size, size))))
        {
            match r {
                Ok(l) => bases.push((s.path.clone(), l.image)),
                Err(e) => {
                    tracing::warn!("skipped base image: {e}");
                    skipped.push(e.to_string());
                }
            }
        }
    }
    bases
}

/// Runs the job on the current rayon pool; `progress` is called once per written sample.
pub fn run_job(job: &SynthJob, progress: &(dyn Fn() + Sync)) -> Result<SynthReport, SynthError> {
    if job.count == 0 {
        return Err(SynthError::Input("--count must be at least 1".into()));
    }
    if job.size < 8 {
        return Err(SynthError::Input(format!(
            "image size {} is too small (at least 8)",
            job.size
        )));
    }
    let cat = Category::open(&job.data)?;
    let train: Vec<Sample> = cat
        .train
        .iter()
        .filter(|s| !s.is_anomalous())
        .cloned()
        .collect();
    if train.is_empty() {
        return Err(SynthError::Input(format!(
            "{}: no normal training images (train/good) to synthesise on",
            job.data.display()
        )));
    }
    let (rule, known) = match &job.foreground {
        Some(r) => (r.clone(), true),
        None => match category_rule(&cat) {
            Some(r) => (r, true),
            None => {
                tracing::warn!(
                    "{}: no foreground rule known for category '{}'; anomalies may fall anywhere \
                     in the image (set one with --foreground, e.g. otsu:gray:dark:close6:open6)",
                    job.data.display(),
                    cat.name
                );
                (ForegroundRule::All, false)
            }
        },
    };
    let specs = if job.sources.is_empty() {
        vec![SourceSpec::Procedural]
    } else {
        job.sources.clone()
    };
    let own = if specs.contains(&SourceSpec::Own) {
        let files: Vec<PathBuf> = train.iter().map(|s| s.path.clone()).collect();
        let dir = job.data.join("train");
        // Decoded when drawn (as SIA sets): the bases already decode up to `count` of them.
        Some(std::sync::Arc::new(ImageSet::from_files(
            &dir,
            files,
            (job.size, job.size),
            false,
        )?))
    } else {
        None
    };
    let synth = Synthesizer::with_own(
        SynthConfig {
            sources: specs
                .into_iter()
                .map(|source| WeightedSource {
                    source,
                    weight: 1.0,
                })
                .collect(),
            normal_prob: 0.0,
            foreground: rule.clone(),
            redraw_empty: true,
            strokes: crate::StrokeParams {
                prob: job.stroke_prob,
                ..Default::default()
            },
            shade: crate::ShadeParams {
                prob: job.shade_prob,
                ..Default::default()
            },
            ..SynthConfig::default()
        },
        own,
    )?;

    // Output folders, and a probe that they are writable (create_dir_all succeeds on read-only ones).
    for d in [job.out.join("images"), job.out.join("masks")] {
        std::fs::create_dir_all(&d).map_err(|e| out_err(&d, e))?;
        let probe = d.join(format!(".probe{}", std::process::id()));
        std::fs::write(&probe, b"").map_err(|e| out_err(&d, e))?;
        let _ = std::fs::remove_file(&probe);
    }

    let mut lines = read_index(&job.out, job.count);
    let resumed = lines.len();
    write_index(&job.out, &lines)?; // consistent index before appending

    let todo: Vec<u64> = (0..job.count as u64)
        .filter(|i| !lines.contains_key(i))
        .collect();
    let mut skipped = Vec::new();
    let bases = if todo.is_empty() {
        Vec::new()
    } else {
        load_bases(&train, job.count, job.size, &mut skipped)
    };
    if !todo.is_empty() && bases.is_empty() {
        return Err(SynthError::Input(format!(
            "{}: none of the {} training images could be read",
            job.data.display(),
            train.len()
        )));
    }
    let fgs: Vec<GrayImage> = bases
        .par_iter()
        .map(|(_, img)| synth.foreground(img))
        .collect();

    let index_path = job.out.join("index.jsonl");
    let index_file = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(&index_path)
        .map_err(|e| out_err(&index_path, e))?;
    let index_file = Mutex::new(index_file);
    let results: Vec<Result<(IndexLine, bool), SynthError>> = todo
        .par_iter()
        .map(|&i| {
            let b = (i % bases.len() as u64) as usize;
            let (base_path, base) = &bases[b];
            let s = synth.anomalous(base, &fgs[b], job.seed, i);
            let img_rel = format!("images/{}", name(i));
            let mask_rel = format!("masks/{}", name(i));
            let line = IndexLine {
                index: i,
                image: img_rel.clone(),
                mask: mask_rel.clone(),
                base: base_path.clone(),
                kind: s.kind,
                source_file: s.source_file.clone(),
                beta: s.beta,
                mask_fraction: mask_fraction(&s.mask),
                seed: job.seed,
                ops: s.ops.iter().map(|o| format!("{o:?}")).collect(),
                strokes: s.strokes,
            };
            for (rel, img) in [
                (&img_rel, image::DynamicImage::ImageRgb8(s.image)),
                (&mask_rel, image::DynamicImage::ImageLuma8(s.mask)),
            ] {
                let p = job.out.join(rel);
                let bytes = png_bytes(img).map_err(|e| out_err(&p, e))?;
                write_atomic(&p, &bytes).map_err(|e| out_err(&p, e))?;
            }
            // The index line goes in only after both files exist.
            let text =
                serde_json::to_string(&line).map_err(|e| SynthError::Output(e.to_string()))? + "\n";
            {
                let mut f = index_file
                    .lock()
                    .map_err(|_| SynthError::Output("index writer poisoned".into()))?;
                f.write_all(text.as_bytes())
                    .map_err(|e| out_err(&index_path, e))?;
            }
            progress();
            Ok((line, s.foreground_ignored))
        })
        .collect();
    drop(index_file);
    let mut written = 0;
    let mut foreground_ignored = 0;
    let mut first_err = None;
    for r in results {
        match r {
            Ok((l, ign)) => {
                written += 1;
                foreground_ignored += usize::from(ign);
                lines.insert(l.index, l);
            }
            Err(e) => {
                first_err.get_or_insert(e);
            }
        }
    }
    // Sorted rewrite: identical bytes whatever the completion order.
    write_index(&job.out, &lines)?;
    if let Some(e) = first_err {
        return Err(e);
    }
    let mean_mask_fraction =
        lines.values().map(|l| l.mask_fraction).sum::<f64>() / lines.len().max(1) as f64;
    let preview = match &job.preview {
        Some(p) => {
            write_preview(&job.out, &lines, p)?;
            Some(p.clone())
        }
        None => None,
    };
    skipped.extend(synth.skipped_sources());
    Ok(SynthReport {
        written,
        resumed,
        skipped_inputs: skipped,
        foreground: rule,
        foreground_known: known,
        foreground_ignored,
        mean_mask_fraction,
        index: index_path,
        preview,
    })
}

/// A 4-column contact sheet of the first 16 samples with each mask outline drawn in the
/// primary/secondary colour farthest from the image colours under it.
pub fn write_preview(
    out: &Path,
    lines: &BTreeMap<u64, IndexLine>,
    path: &Path,
) -> Result<(), SynthError> {
    let mut tiles = Vec::new();
    for l in lines.values().take(16) {
        let img = crate::sources::decode_rgb(&out.join(&l.image))
            .map_err(|e| SynthError::Output(format!("{}: {e}", out.join(&l.image).display())))?;
        let mask = image::open(out.join(&l.mask))
            .map_err(|e| SynthError::Output(format!("{}: {e}", out.join(&l.mask).display())))?
            .to_luma8();
        tiles.push(outline(&img, &mask));
    }
    let Some(first) = tiles.first() else {
        return Err(SynthError::Output("no samples to preview".into()));
    };
    let (tw, th) = first.dimensions();
    let cols = 4u32.min(tiles.len() as u32);
    let rows = (tiles.len() as u32).div_ceil(4);
    let gap = 4;
    let mut sheet = RgbImage::from_pixel(
        cols * (tw + gap) - gap,
        rows * (th + gap) - gap,
        image::Rgb([255; 3]),
    );
    for (k, t) in tiles.iter().enumerate() {
        let (c, r) = (k as u32 % 4, k as u32 / 4);
        image::imageops::replace(
            &mut sheet,
            t,
            (c * (tw + gap)) as i64,
            (r * (th + gap)) as i64,
        );
    }
    let bytes = png_bytes(image::DynamicImage::ImageRgb8(sheet)).map_err(|e| out_err(path, e))?;
    if let Some(d) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(d).map_err(|e| out_err(d, e))?;
    }
    write_atomic(path, &bytes).map_err(|e| out_err(path, e))
}

/// The image with the mask's boundary (mask pixels with a 4-neighbour outside it) recoloured.
pub fn outline(img: &RgbImage, mask: &GrayImage) -> RgbImage {
    let (w, h) = img.dimensions();
    let mut out = img.clone();
    if mask.dimensions() != (w, h) {
        return out;
    }
    let inside = |x: i64, y: i64| {
        x >= 0
            && y >= 0
            && x < w as i64
            && y < h as i64
            && mask.get_pixel(x as u32, y as u32).0[0] != 0
    };
    let mut edge = Vec::new();
    for y in 0..h as i64 {
        for x in 0..w as i64 {
            if inside(x, y)
                && !(inside(x - 1, y) && inside(x + 1, y) && inside(x, y - 1) && inside(x, y + 1))
            {
                edge.push((x as u32, y as u32));
            }
        }
    }
    if edge.is_empty() {
        return out;
    }
    let mut mean = [0f64; 3];
    for &(x, y) in &edge {
        for (m, &v) in mean.iter_mut().zip(&img.get_pixel(x, y).0) {
            *m += v as f64 / edge.len() as f64;
        }
    }
    let palette = [
        [255u8, 0, 0],
        [0, 255, 0],
        [0, 0, 255],
        [255, 255, 0],
        [255, 0, 255],
        [0, 255, 255],
    ];
    let dist = |p: &[u8; 3]| (0..3).map(|c| (p[c] as f64 - mean[c]).powi(2)).sum::<f64>();
    let colour = palette
        .iter()
        .copied()
        .max_by(|a, b| dist(a).total_cmp(&dist(b)))
        .unwrap_or([255, 0, 0]);
    for (x, y) in edge {
        out.put_pixel(x, y, image::Rgb(colour));
    }
    out
}

#[cfg(test)]
mod index_tests {
    use super::*;

    /// A resumed job rewrites the lines it read back: they must come out byte-identical, which
    /// needs exact float parsing (serde_json's `float_roundtrip`; without it the last digit of β
    /// can change, as a kill-and-resume run showed).
    #[test]
    fn index_lines_round_trip_exactly() {
        let line = r#"{"index":12,"image":"images/00012.png","mask":"masks/00012.png","base":"b.png","kind":"procedural","source_file":null,"beta":0.9314015104915403,"mask_fraction":0.0701751708984375,"seed":1,"ops":[]}"#;
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("index.jsonl"), format!("{line}\n")).unwrap();
        std::fs::create_dir_all(d.path().join("images")).unwrap();
        std::fs::create_dir_all(d.path().join("masks")).unwrap();
        std::fs::write(d.path().join("images/00012.png"), b"x").unwrap();
        std::fs::write(d.path().join("masks/00012.png"), b"x").unwrap();
        let read = read_index(d.path(), 20);
        let back = serde_json::to_string(&read[&12]).unwrap();
        assert_eq!(back, line);
    }
}
