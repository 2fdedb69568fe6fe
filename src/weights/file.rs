//! safetensors files: reading into tch tensors (with clear errors for the wrong kind of file) and
//! writing converted checkpoints atomically.

use super::pth::RawTensor;
use crate::error::UserError;
use anyhow::{Context, Result};
use safetensors::tensor::{Dtype, SafeTensors};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// The content of a safetensors file, every tensor on the CPU with its stored dtype.
pub struct TensorFile {
    pub path: PathBuf,
    /// In file (offset) order.
    pub tensors: Vec<(String, tch::Tensor)>,
    pub metadata: HashMap<String, String>,
    /// sha256 of the file bytes, lowercase hex.
    pub sha256: String,
}

impl TensorFile {
    pub fn get(&self, name: &str) -> Option<&tch::Tensor> {
        self.tensors.iter().find(|(n, _)| n == name).map(|(_, t)| t)
    }
}

fn bad(path: &Path, msg: impl std::fmt::Display) -> anyhow::Error {
    UserError::BadModel(format!("{}: {msg}", path.display())).into()
}

/// Reads a whole safetensors file. Errors (exit code 4) name the file and say what to do.
pub fn read_safetensors(path: &Path) -> Result<TensorFile> {
    let bytes =
        std::fs::read(path).map_err(|e| bad(path, format!("cannot read the weights file: {e}")))?;
    let (tensors, metadata) = parse_safetensors(&bytes, path)?;
    Ok(TensorFile {
        path: path.to_path_buf(),
        tensors,
        metadata,
        sha256: hex(&Sha256::digest(&bytes)),
    })
}

/// The tensors (in file order) and metadata of safetensors bytes; `path` only names them in
/// errors. Public for the fuzz target.
#[allow(clippy::type_complexity)]
pub fn parse_safetensors(
    bytes: &[u8],
    path: &Path,
) -> Result<(Vec<(String, tch::Tensor)>, HashMap<String, String>)> {
    if bytes.starts_with(b"PK\x03\x04") || bytes.first() == Some(&0x80) {
        return Err(bad(
            path,
            "this is a PyTorch checkpoint (.pth), not safetensors; convert it first with \
             `realnet weights convert IN.pth OUT.safetensors`",
        ));
    }
    let st = SafeTensors::deserialize(bytes).map_err(|e| {
        let why = match e {
            safetensors::SafeTensorError::MetadataIncompleteBuffer
            | safetensors::SafeTensorError::InvalidOffset(_) => {
                format!("truncated safetensors file ({} bytes; {e:?}); download or convert it again", bytes.len())
            }
            safetensors::SafeTensorError::HeaderTooSmall | safetensors::SafeTensorError::HeaderTooLarge => {
                format!("not a safetensors file ({e:?}); expected the output of `realnet weights convert`")
            }
            other => format!("not a valid safetensors file ({other:?})"),
        };
        bad(path, why)
    })?;
    let (_, meta) = SafeTensors::read_metadata(bytes).map_err(|e| bad(path, format!("{e:?}")))?;
    let metadata = meta.metadata().clone().unwrap_or_default();
    let mut views = st.tensors();
    // Keep file order: deterministic listing in errors and conversions.
    views.sort_by_key(|(_, v)| v.data().as_ptr() as usize);
    let mut tensors = Vec::with_capacity(views.len());
    for (name, view) in views {
        let kind = kind_of(view.dtype()).ok_or_else(|| {
            bad(
                path,
                format!("tensor {name}: unsupported dtype {:?}", view.dtype()),
            )
        })?;
        let shape: Vec<i64> = view.shape().iter().map(|&d| d as i64).collect();
        let t = tch::Tensor::f_from_data_size(view.data(), &shape, kind)
            .map_err(|e| bad(path, format!("tensor {name}: {e}")))?;
        tensors.push((name, t));
    }
    Ok((tensors, metadata))
}

/// The tch kind of a safetensors dtype (`None`: not representable, e.g. F8).
fn kind_of(d: Dtype) -> Option<tch::Kind> {
    use tch::Kind;
    Some(match d {
        Dtype::BOOL => Kind::Bool,
        Dtype::U8 => Kind::Uint8,
        Dtype::I8 => Kind::Int8,
        Dtype::I16 => Kind::Int16,
        Dtype::I32 => Kind::Int,
        Dtype::I64 => Kind::Int64,
        Dtype::F16 => Kind::Half,
        Dtype::BF16 => Kind::BFloat16,
        Dtype::F32 => Kind::Float,
        Dtype::F64 => Kind::Double,
        _ => return None,
    })
}

/// sha256 of a file, lowercase hex.
pub fn sha256_file(path: &Path) -> Result<String> {
    let bytes = std::fs::read(path).with_context(|| format!("{}: cannot read", path.display()))?;
    Ok(hex(&Sha256::digest(&bytes)))
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Writes tensors to `path` via a temporary file in the same folder and a rename, so a crash never
/// leaves a half-written file under the final name.
pub fn write_safetensors_atomic(
    path: &Path,
    tensors: &[(String, RawTensor)],
    metadata: HashMap<String, String>,
) -> Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{file_name}.tmp-{}", std::process::id()));
    let views: Vec<(&str, &RawTensor)> = tensors.iter().map(|(n, t)| (n.as_str(), t)).collect();
    let res = safetensors::tensor::serialize_to_file(views, &Some(metadata), &tmp)
        .map_err(|e| anyhow::anyhow!("{}: cannot write: {e:?}", tmp.display()))
        .and_then(|_| {
            std::fs::rename(&tmp, path)
                .with_context(|| format!("{}: cannot move into place", path.display()))
        });
    if res.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    res
}
