//! `realnet weights convert`: a PyTorch checkpoint to safetensors, without Python.

use super::file::{hex, write_safetensors_atomic};
use super::pth::read_pth;
use crate::error::UserError;
use anyhow::Result;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::path::Path;

/// What a conversion did, for the user.
#[derive(Debug, Clone)]
pub struct ConvertSummary {
    pub tensors: usize,
    pub parameters: usize,
    pub format: &'static str,
    pub nested_under: String,
    pub skipped: Vec<String>,
    pub source_sha256: String,
}

/// Converts `input` (torch.save zip or legacy format) to `output` (safetensors, written atomically).
/// Tensors keep their names (minus a `module.` prefix), shapes and dtypes; non-contiguous tensors
/// are made contiguous.
pub fn convert(input: &Path, output: &Path) -> Result<ConvertSummary> {
    let ck = read_pth(input).map_err(|e| UserError::BadModel(format!("{e:#}")))?;
    let source_sha256 = hex(&Sha256::digest(std::fs::read(input)?));
    let mut seen = std::collections::HashSet::new();
    for (name, _) in &ck.tensors {
        if !seen.insert(name.as_str()) {
            return Err(UserError::BadModel(format!(
                "{}: tensor {name} appears twice (once with a `module.` prefix?)",
                input.display()
            ))
            .into());
        }
    }
    let mut meta = HashMap::new();
    meta.insert(
        "source".to_string(),
        input
            .file_name()
            .map(|n| n.to_string_lossy().to_string())
            .unwrap_or_default(),
    );
    meta.insert("source_sha256".to_string(), source_sha256.clone());
    meta.insert(
        "converted_by".to_string(),
        format!("realnet {} weights convert", env!("CARGO_PKG_VERSION")),
    );
    write_safetensors_atomic(output, &ck.tensors, meta)?;
    let parameters = ck
        .tensors
        .iter()
        .filter(|(n, _)| !super::strict::is_ignored(n))
        .map(|(_, t)| t.numel())
        .sum();
    Ok(ConvertSummary {
        tensors: ck.tensors.len(),
        parameters,
        format: ck.format,
        nested_under: ck.nested_under,
        skipped: ck.skipped,
        source_sha256,
    })
}
