//! `realnet predict`: any files or folders → one JSON line per image.
use crate::cli::Global;
use clap::Args;
use realnet::infer::Detector;
use std::collections::HashSet;
use std::path::{Path, PathBuf};

#[derive(Args, Debug)]
pub struct PredictArgs {
    /// The run folder written by `realnet train`.
    #[arg(long)]
    pub run: PathBuf,
    /// Image files or folders (searched recursively).
    #[arg(required = true)]
    pub paths: Vec<PathBuf>,
    /// Write an overlay PNG per image here.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Backbone weights (default: the file recorded at training, or the cache).
    #[arg(long)]
    pub weights: Option<PathBuf>,
    /// Images per forward pass.
    #[arg(long, default_value_t = 8)]
    pub batch: usize,
    /// Image threshold on the raw score, in (0, 1), instead of the model's (chosen on validation
    /// data or by `realnet calibrate`): lower flags more images. Labels and normalised scores
    /// (threshold ↦ 0.5) follow it.
    #[arg(long)]
    pub threshold: Option<f64>,
}

/// Image files under `p` (folders searched recursively, sorted). A folder reached again through a
/// link (a symlink loop such as `up -> ..`) is searched once; a folder that cannot be listed is an
/// error line, like an unreadable image.
fn collect(
    p: &Path,
    out: &mut Vec<PathBuf>,
    seen: &mut HashSet<PathBuf>,
    errors: &mut Vec<(PathBuf, String)>,
) {
    if !p.is_dir() {
        out.push(p.to_path_buf());
        return;
    }
    let real = std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf());
    if !seen.insert(real) {
        tracing::warn!(
            "{}: skipped, a link to a folder already searched",
            p.display()
        );
        return;
    }
    let mut entries: Vec<PathBuf> = match std::fs::read_dir(p) {
        Ok(rd) => rd.filter_map(|e| e.ok().map(|e| e.path())).collect(),
        Err(e) => {
            let msg = format!("{}: cannot list the folder: {e}", p.display());
            errors.push((p.to_path_buf(), msg));
            return;
        }
    };
    entries.sort();
    for e in entries {
        if e.is_dir() || realnet_data::image_io::has_image_extension(&e) {
            collect(&e, out, seen, errors);
        }
    }
}

pub fn run(a: PredictArgs, g: &Global) -> anyhow::Result<i32> {
    let device = realnet::device::parse_device(&g.device)?;
    let mut det = Detector::load_as(&a.run, a.weights.as_deref(), device, g.precision()?)?;
    if let Some(t) = a.threshold {
        if !(t > 0.0 && t < 1.0) {
            return Err(realnet::error::UserError::BadInput(format!(
                "--threshold {t}: raw scores are probabilities, give a value in (0, 1) (the \
                 model's is {:.4})",
                det.meta.threshold.image
            ))
            .into());
        }
        det.meta.threshold.image = t;
    }
    let mut files = Vec::new();
    let (mut seen, mut errors) = (HashSet::new(), Vec::new());
    for p in &a.paths {
        if !p.exists() {
            eprintln!("error: {}: no such file or folder", p.display());
            continue;
        }
        collect(p, &mut files, &mut seen, &mut errors);
    }
    if let Some(o) = &a.out {
        std::fs::create_dir_all(o)?;
    }
    let size = det.image_size();
    let mut failed = a.paths.iter().filter(|p| !p.exists()).count() + errors.len();
    for (path, msg) in &errors {
        println!("{}", serde_json::json!({"path": path, "error": msg}));
    }
    for chunk in files.chunks(a.batch.max(1)) {
        let mut ok = Vec::new();
        for f in chunk {
            match realnet_data::image_io::load_rgb(f, Some((size, size))) {
                Ok(img) => ok.push((f, img)),
                Err(e) => {
                    failed += 1;
                    println!("{}", serde_json::json!({"path": f, "error": e.to_string()}));
                }
            }
        }
        let imgs: Vec<_> = ok.iter().map(|o| &o.1).collect();
        for ((f, img), p) in ok.iter().zip(det.predict(&imgs)) {
            let mut line = serde_json::json!({
                "path": f, "score": p.score, "normalised_score": p.normalised,
                "label": if p.anomalous { "anomalous" } else { "normal" },
                "threshold": det.meta.threshold.image,
            });
            if let Some(o) = &a.out {
                let stem = f
                    .file_stem()
                    .map(|s| s.to_string_lossy().into_owned())
                    .unwrap_or_default();
                let dst = o.join(format!("{stem}.png"));
                let ov = realnet::overlay::for_prediction(&det.meta, img, &p.map, None);
                realnet::evaluate::save_png_atomic(&ov, &dst)?;
                line["overlay"] = serde_json::json!(dst);
            }
            println!("{line}");
        }
    }
    Ok(if failed == 0 {
        0
    } else {
        realnet::error::exit::PARTIAL
    })
}
