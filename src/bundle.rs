//! The run directory: a self-contained model bundle (DESIGN.md) — `config.toml`, `model.safetensors`,
//! `meta.json`, `history.jsonl`, `checkpoints/`. Everything is written atomically.
use crate::error::UserError;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use tch::{nn, Tensor};

pub const CONFIG: &str = "config.toml";
pub const MODEL: &str = "model.safetensors";
pub const META: &str = "meta.json";
pub const HISTORY: &str = "history.jsonl";
pub const CHECKPOINT: &str = "checkpoints/last.safetensors";
pub const CHECKPOINT_STATE: &str = "checkpoints/last.json";

/// What inference needs besides the weights, and how the model was made.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Meta {
    pub tool_version: String,
    pub backbone: String,
    /// sha256 of the backbone weights file the model was trained with.
    pub backbone_sha256: Option<String>,
    /// The weights file used at training (a hint for inference; any file with the same sha256 works).
    pub backbone_weights: Option<PathBuf>,
    pub image_size: i64,
    pub mean: [f64; 3],
    pub std: [f64; 3],
    pub score_pool: i64,
    /// With `model.score_pool_choices`: each window's best validation image AUROC, of which
    /// `score_pool` was chosen (absent otherwise and in older models).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub score_pool_candidates: Vec<PoolCandidate>,
    pub category: String,
    pub data: PathBuf,
    pub seed: u64,
    pub steps: usize,
    pub train_images: usize,
    pub val_images: usize,
    pub train_seconds: f64,
    pub device: String,
    pub threshold: Threshold,
    /// With a patch memory: the fusion weight in use and how each candidate did on the
    /// validation data (absent in models without a memory and in older ones).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_weight: Option<WeightChoice>,
    /// Set by `realnet calibrate`: the labelled images the threshold (and the fusion weight) were
    /// chosen on instead of the validation data.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub calibration: Option<CalibrationRecord>,
}

/// Where a calibrated model's threshold and fusion weight come from.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CalibrationRecord {
    /// The category folder whose `test/` split was the calibration set.
    pub data: PathBuf,
    pub good: usize,
    pub defective: usize,
    /// Defective images with a mask (the others count for the image threshold only).
    pub with_masks: usize,
    /// Unreadable files, reported and left out.
    pub skipped: Vec<String>,
    /// The run it was calibrated from, and that run's image threshold and fusion weights.
    pub from_run: PathBuf,
    pub previous_threshold: f64,
    pub previous_weight: Option<f64>,
    /// That run's image-score weight (absent in records written before it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_image_weight: Option<f64>,
    /// That run's blur σ of the memory's map, when calibration chose it again (`--blur-choices`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_blur_sigma: Option<f64>,
}

/// One image-score pool window as validation (or calibration) saw it: its best image AUROC and
/// the image weight that reached it.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct PoolCandidate {
    pub pool: i64,
    pub weight: f64,
    pub image_auroc: f64,
}

/// The patch memory's fusion weight, chosen on held-out normal images and synthetic anomalies
/// (or on a `realnet calibrate` set).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WeightChoice {
    /// The map's weight.
    pub chosen: f64,
    /// The weight of the map the image score is taken from (absent in older models: `chosen`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_chosen: Option<f64>,
    pub rule: String,
    pub candidates: Vec<WeightCandidate>,
    /// Mean and standard deviation of ln p (RealNet) and ln q (memory) on the held-out normal
    /// images' pixels, which standardise both before they are weighted (absent in older models:
    /// they fuse unstandardised).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub balance: Option<FusionBalance>,
    /// The memory map's blur σ in use (absent in older models: the config's `blur_sigma`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blur_sigma: Option<f64>,
    /// With `model.memory.blur_choices`: each σ's validation AUROCs at its own best map weight.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub blur_candidates: Vec<BlurCandidate>,
}

/// One candidate blur σ of the memory's map, as validation scored it.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct BlurCandidate {
    pub sigma: f64,
    pub image_auroc: f64,
    pub pixel_auroc: f64,
}

impl WeightChoice {
    /// The image score's weight: its own, or the map's in models saved before it had one.
    pub fn image_weight(&self) -> f64 {
        self.image_chosen.unwrap_or(self.chosen)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct FusionBalance {
    pub log_p_mean: f64,
    pub log_p_sd: f64,
    pub log_q_mean: f64,
    pub log_q_sd: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct WeightCandidate {
    pub weight: f64,
    /// Normal against anomalous images by image score (held-out normals and synthetic
    /// anomalies, or a `realnet calibrate` set's good and defective images).
    pub image_auroc: f64,
    /// The anomalies' masks against every other pixel of the same images.
    pub pixel_auroc: f64,
}

/// Thresholds from held-out normal images and synthetic anomalies on them — never the test set.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Threshold {
    /// Image-score threshold: score ≥ it ⇒ anomalous.
    pub image: f64,
    /// Pixel threshold for the predicted defect outline.
    pub pixel: f64,
    /// How `image` was chosen.
    pub method: String,
    pub val_normal: ScoreStats,
    pub val_synthetic: ScoreStats,
    /// AUROC of held-out normals against synthetic anomalies (a health check, not a test metric).
    pub val_auroc: Option<f64>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ScoreStats {
    pub n: usize,
    pub mean: f64,
    pub min: f64,
    pub max: f64,
    pub p50: f64,
    pub p95: f64,
}

impl ScoreStats {
    pub fn of(v: &[f64]) -> Self {
        if v.is_empty() {
            return Self::default();
        }
        let mut s = v.to_vec();
        s.sort_by(f64::total_cmp);
        let q = |p: f64| s[((s.len() - 1) as f64 * p).round() as usize];
        Self {
            n: s.len(),
            mean: s.iter().sum::<f64>() / s.len() as f64,
            min: s[0],
            max: s[s.len() - 1],
            p50: q(0.5),
            p95: q(0.95),
        }
    }
}

impl Threshold {
    /// Maps a raw score to [0, 1] with the threshold at 0.5, monotone (raw scores are probabilities).
    pub fn normalise(&self, score: f64) -> f64 {
        let t = self.image.clamp(1e-9, 1.0 - 1e-9);
        let v = if score <= t {
            0.5 * score / t
        } else {
            0.5 + 0.5 * (score - t) / (1.0 - t)
        };
        v.clamp(0.0, 1.0)
    }
}

/// Writes `bytes` to `path` atomically (temporary file in the same folder, then rename).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = tmp_path(path);
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path)
}

fn tmp_path(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!(".{name}.tmp{}", std::process::id()))
}

/// Writes named tensors as safetensors, atomically.
pub fn save_tensors(path: &Path, named: &[(String, Tensor)]) -> anyhow::Result<()> {
    let tmp = tmp_path(path);
    let cpu: Vec<(String, Tensor)> = named
        .iter()
        .map(|(n, t)| (n.clone(), t.to_device(tch::Device::Cpu).contiguous()))
        .collect();
    Tensor::write_safetensors(&cpu, &tmp)?;
    std::fs::rename(&tmp, path)?;
    Ok(())
}

/// The VarStore's variables, sorted by name (a stable file layout).
pub fn named_vars(vs: &nn::VarStore) -> Vec<(String, Tensor)> {
    let mut v: Vec<(String, Tensor)> = vs.variables().into_iter().collect();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v
}

/// Reads a safetensors file into a name → tensor map, naming the file on failure.
pub fn read_tensors(path: &Path) -> Result<HashMap<String, Tensor>, UserError> {
    let v = Tensor::read_safetensors(path).map_err(|e| {
        UserError::BadModel(format!(
            "{}: not a readable safetensors file ({e}); retrain or copy the run folder again",
            path.display()
        ))
    })?;
    Ok(v.into_iter().collect())
}

/// Copies tensors into the VarStore; every missing or wrongly shaped variable is listed in one error.
pub fn load_vars(
    vs: &nn::VarStore,
    named: &HashMap<String, Tensor>,
    file: &Path,
) -> Result<(), UserError> {
    let mut problems = Vec::new();
    let vars = vs.variables();
    let mut names: Vec<&String> = vars.keys().collect();
    names.sort();
    for name in names {
        let var = &vars[name];
        match named.get(name) {
            None => problems.push(format!("missing tensor '{name}'")),
            Some(t) if t.size() != var.size() => problems.push(format!(
                "'{name}' has shape {:?}, the configured model needs {:?}",
                t.size(),
                var.size()
            )),
            Some(t) => tch::no_grad(|| {
                let mut v = var.shallow_clone();
                v.copy_(t);
            }),
        }
    }
    if problems.is_empty() {
        return Ok(());
    }
    let shown = problems
        .iter()
        .take(12)
        .cloned()
        .collect::<Vec<_>>()
        .join("; ");
    let more = problems.len().saturating_sub(12);
    Err(UserError::BadModel(format!(
        "{}: does not match the model described by config.toml ({} problem(s): {shown}{})",
        file.display(),
        problems.len(),
        if more > 0 {
            format!("; and {more} more")
        } else {
            String::new()
        }
    )))
}

/// Makes `out` ready for a training run: refuses to overwrite a run unless resuming, and creates
/// `out/checkpoints`.
pub fn open_run_dir(out: &Path, resume: bool) -> Result<(), UserError> {
    if !resume && out.join(CHECKPOINT).exists() {
        return Err(UserError::BadInput(format!(
            "{} already holds a training run; add --resume to continue it, or choose another --out",
            out.display()
        )));
    }
    std::fs::create_dir_all(out.join("checkpoints")).map_err(|e| {
        UserError::BadInput(format!(
            "{}: cannot create the run folder: {e}",
            out.display()
        ))
    })
}

/// Drops history lines past `step` (written after the checkpoint a resumed run restarts from).
pub fn truncate_history(path: &Path, step: usize) -> anyhow::Result<()> {
    let Ok(text) = std::fs::read_to_string(path) else {
        return Ok(());
    };
    let kept: Vec<&str> = text
        .lines()
        .filter(|l| {
            serde_json::from_str::<serde_json::Value>(l)
                .ok()
                .and_then(|v| v.get("step").and_then(|s| s.as_u64()))
                .is_some_and(|s| s as usize <= step)
        })
        .collect();
    let mut body = kept.join("\n");
    if !body.is_empty() {
        body.push('\n');
    }
    write_atomic(path, body.as_bytes())?;
    Ok(())
}

pub fn read_meta(run: &Path) -> Result<Meta, UserError> {
    let p = run.join(META);
    let text = std::fs::read_to_string(&p).map_err(|e| {
        UserError::BadModel(format!(
            "{}: cannot read ({e}); is {} a finished realnet run folder?",
            p.display(),
            run.display()
        ))
    })?;
    serde_json::from_str(&text).map_err(|e| UserError::BadModel(format!("{}: {e}", p.display())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalised_score_is_monotone_with_threshold_at_half() {
        let t = Threshold {
            image: 0.2,
            pixel: 0.5,
            method: String::new(),
            val_normal: ScoreStats::default(),
            val_synthetic: ScoreStats::default(),
            val_auroc: None,
        };
        assert!((t.normalise(0.2) - 0.5).abs() < 1e-12);
        assert_eq!(t.normalise(0.0), 0.0);
        assert!((t.normalise(1.0) - 1.0).abs() < 1e-12);
        let mut prev = -1.0;
        for i in 0..=100 {
            let v = t.normalise(i as f64 / 100.0);
            assert!(v >= prev);
            prev = v;
        }
    }

    #[test]
    fn atomic_write_leaves_no_temp_file() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("a.json");
        write_atomic(&p, b"{}").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"{}");
        assert_eq!(std::fs::read_dir(d.path()).unwrap().count(), 1);
    }

    #[test]
    fn load_vars_lists_every_problem() {
        let vs = nn::VarStore::new(tch::Device::Cpu);
        let _a = vs.root().zeros("a", &[2]);
        let _b = vs.root().zeros("b", &[3]);
        let mut named = HashMap::new();
        named.insert(
            "a".to_string(),
            Tensor::zeros([5], (tch::Kind::Float, tch::Device::Cpu)),
        );
        let e = load_vars(&vs, &named, Path::new("m.safetensors"))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("missing tensor 'b'") && e.contains("'a' has shape [5]"),
            "{e}"
        );
    }
}
