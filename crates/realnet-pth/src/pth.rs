//! Reading PyTorch checkpoints (`torch.save`) without Python: the zip format (torch ≥ 1.6) and the
//! legacy format (magic number, pickles, then raw storages). Only tensors are extracted; nothing in
//! the pickle is executed.

use crate::pickle::{self, Value};
use anyhow::{anyhow, bail, Context, Result};
use safetensors::Dtype;
use std::collections::HashMap;
use std::io::Read;
use std::path::Path;

/// A dense tensor in memory: row-major (contiguous), little-endian.
#[derive(Debug, Clone, PartialEq)]
pub struct RawTensor {
    pub dtype: Dtype,
    pub shape: Vec<usize>,
    pub data: Vec<u8>,
}

impl RawTensor {
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }
}

/// So that converted tensors are written by `safetensors::serialize` without a copy.
impl safetensors::View for &RawTensor {
    fn dtype(&self) -> Dtype {
        self.dtype
    }
    fn shape(&self) -> &[usize] {
        &self.shape
    }
    fn data(&self) -> std::borrow::Cow<'_, [u8]> {
        std::borrow::Cow::Borrowed(&self.data)
    }
    fn data_len(&self) -> usize {
        self.data.len()
    }
}

/// The tensors of a checkpoint's state dict, in file order, with any `module.` prefix removed.
#[derive(Debug)]
pub struct Checkpoint {
    pub tensors: Vec<(String, RawTensor)>,
    /// `"zip"` or `"legacy"`.
    pub format: &'static str,
    /// Where the state dict was found: `""` (top level), `"state_dict"` or `"model"`.
    pub nested_under: String,
    /// Entries of the state dict that were not tensors (skipped), e.g. `epoch`.
    pub skipped: Vec<String>,
}

const LEGACY_MAGIC: [u8; 10] = [0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19];

/// Reads a `.pth`/`.pt`/`.bin` checkpoint written by `torch.save`.
pub fn read_pth(path: &Path) -> Result<Checkpoint> {
    let bytes = std::fs::read(path).with_context(|| format!("{}: cannot read", path.display()))?;
    parse_pth(&bytes)
        .with_context(|| format!("{}: cannot read as a PyTorch checkpoint", path.display()))
}

/// Parses checkpoint bytes (what [`read_pth`] reads from a file); public for the fuzz target.
pub fn parse_pth(bytes: &[u8]) -> Result<Checkpoint> {
    if bytes.starts_with(b"PK\x03\x04") {
        read_zip(bytes)
    } else if bytes.len() > 2 && bytes[0] == 0x80 {
        read_legacy(bytes)
    } else if bytes.len() > 262 && &bytes[257..262] == b"ustar" {
        Err(anyhow!("this is the tar format of torch < 0.4, which is not supported; re-save it with a newer torch"))
    } else {
        Err(anyhow!(
            "not a PyTorch checkpoint (neither a zip archive nor a legacy pickle stream)"
        ))
    }
}

/// One storage: its element type and raw bytes (little-endian).
struct Storage {
    dtype: Dtype,
    bytes: Vec<u8>,
}

fn read_zip(bytes: &[u8]) -> Result<Checkpoint> {
    let mut zip = zip::ZipArchive::new(std::io::Cursor::new(bytes))
        .map_err(|e| anyhow!("broken zip archive (truncated download?): {e}"))?;
    let names: Vec<String> = zip.file_names().map(str::to_string).collect();
    let pkl = names
        .iter()
        .find(|n| n.ends_with("data.pkl") && n.matches('/').count() <= 1)
        .ok_or_else(|| anyhow!("zip archive without data.pkl: not a torch.save file"))?
        .clone();
    let prefix = pkl.trim_end_matches("data.pkl").to_string();
    let read_entry =
        |zip: &mut zip::ZipArchive<std::io::Cursor<&[u8]>>, name: &str| -> Result<Vec<u8>> {
            let mut f = zip
                .by_name(name)
                .map_err(|e| anyhow!("archive entry {name}: {e}"))?;
            // The header's size is only a claim (a fuzzed file said 4 GB): reserve at most the
            // archive's own length (torch stores entries uncompressed) and let real data grow it.
            let mut out = Vec::with_capacity((f.size() as usize).min(bytes.len()));
            f.read_to_end(&mut out)
                .map_err(|e| anyhow!("archive entry {name}: {e} (truncated file?)"))?;
            Ok(out)
        };
    if names.contains(&format!("{prefix}byteorder")) {
        let order = read_entry(&mut zip, &format!("{prefix}byteorder"))?;
        if order.trim_ascii() != b"little" {
            bail!("big-endian checkpoint: not supported");
        }
    }
    let data = read_entry(&mut zip, &pkl)?;
    let (root, _) = pickle::parse(&data).map_err(|e| anyhow!("{pkl}: {e}"))?;
    let mut cache: HashMap<String, Storage> = HashMap::new();
    let mut load = |pid: &Value| -> Result<(String, Dtype)> {
        // ('storage', storage_type, key, location, numel)
        let (_, key, dtype) = storage_pid(pid)?;
        if !cache.contains_key(key) {
            let b = read_entry(&mut zip, &format!("{prefix}data/{key}"))?;
            cache.insert(key.to_string(), Storage { dtype, bytes: b });
        }
        Ok((key.to_string(), dtype))
    };
    let mut keys = HashMap::new();
    collect_storages(&root, &mut |pid| {
        let (k, d) = load(pid)?;
        keys.insert(pid_id(pid), (k, d));
        Ok(())
    })?;
    let storages: HashMap<String, Storage> = cache;
    extract(&root, &keys, &storages, "zip")
}

fn read_legacy(bytes: &[u8]) -> Result<Checkpoint> {
    let mut pos = 0usize;
    let mut next = |what: &str| -> Result<Value> {
        let (v, n) = pickle::parse(&bytes[pos..]).map_err(|e| anyhow!("{what}: {e}"))?;
        pos += n;
        Ok(v)
    };
    match next("magic number")? {
        Value::BigInt(b) if b == LEGACY_MAGIC => {}
        _ => bail!("a pickle, but not a torch.save file (wrong magic number); if it is a plain pickle, load and re-save it with torch.save"),
    }
    let proto = next("protocol version")?;
    if proto.as_int() != Some(1001) {
        bail!("legacy torch file with protocol {proto:?}, expected 1001");
    }
    let _sys_info = next("sys_info")?;
    let root = next("main pickle")?;
    let keys_v = next("storage key list")?;
    let order: Vec<String> = keys_v
        .as_seq()
        .ok_or_else(|| anyhow!("storage key list is not a list"))?
        .iter()
        .map(|k| {
            k.as_str()
                .map(str::to_string)
                .ok_or_else(|| anyhow!("storage key is not a string"))
        })
        .collect::<Result<_>>()?;
    // Element types and view layout come from the persistent ids in the main pickle.
    let mut roots: HashMap<String, Dtype> = HashMap::new();
    let mut views: Vec<(Value, String, Option<StorageView>)> = Vec::new();
    collect_storages(&root, &mut |pid| {
        // ('storage', storage_type, root_key, location, size, view_metadata)
        let (t, key, dtype) = storage_pid(pid)?;
        roots.insert(key.to_string(), dtype);
        let view = match t.get(5) {
            Some(Value::Tuple(v)) if v.len() == 3 => {
                let vk = v[0]
                    .as_str()
                    .ok_or_else(|| anyhow!("bad storage view key"))?;
                let off = v[1]
                    .as_int()
                    .ok_or_else(|| anyhow!("bad storage view offset"))?;
                let size = v[2]
                    .as_int()
                    .ok_or_else(|| anyhow!("bad storage view size"))?;
                Some((vk.to_string(), off as usize, size as usize))
            }
            _ => None,
        };
        views.push((pid.clone(), key.to_string(), view));
        Ok(())
    })?;
    let mut storages: HashMap<String, Storage> = HashMap::new();
    for key in &order {
        let dtype = *roots
            .get(key)
            .ok_or_else(|| anyhow!("storage {key} is stored but never used"))?;
        let n = read_u64(bytes, &mut pos).context("storage size (truncated file?)")? as usize;
        let len = n
            .checked_mul(dtype.size())
            .ok_or_else(|| anyhow!("storage {key}: absurd size {n}"))?;
        if pos + len > bytes.len() {
            bail!(
                "storage {key} needs {len} bytes at offset {pos}, but the file has {} bytes: truncated file",
                bytes.len()
            );
        }
        storages.insert(
            key.clone(),
            Storage {
                dtype,
                bytes: bytes[pos..pos + len].to_vec(),
            },
        );
        pos += len;
    }
    // Storage views become storages of their own (rare: only very old checkpoints).
    let mut keys = HashMap::new();
    for (pid, key, view) in views {
        let (name, dtype) = match view {
            None => (key.clone(), roots[&key]),
            Some((vk, off, size)) => {
                let dtype = roots[&key];
                let root = storages
                    .get(&key)
                    .ok_or_else(|| anyhow!("storage view of missing {key}"))?;
                let (a, b) = (off * dtype.size(), (off + size) * dtype.size());
                let slice = root
                    .bytes
                    .get(a..b)
                    .ok_or_else(|| anyhow!("storage view {vk} out of range"))?;
                let s = Storage {
                    dtype,
                    bytes: slice.to_vec(),
                };
                storages.insert(vk.clone(), s);
                (vk, dtype)
            }
        };
        keys.insert(pid_id(&pid), (name, dtype));
    }
    extract(&root, &keys, &storages, "legacy")
}

/// A legacy storage view: (view key, offset, size) in elements of its root storage.
type StorageView = (String, usize, usize);

fn read_u64(bytes: &[u8], pos: &mut usize) -> Result<u64> {
    let b = bytes
        .get(*pos..*pos + 8)
        .ok_or_else(|| anyhow!("unexpected end of file"))?;
    *pos += 8;
    let mut a = [0u8; 8];
    a.copy_from_slice(b);
    Ok(u64::from_le_bytes(a))
}

/// A printable identity for a persistent id (they are compared by value).
/// A storage's persistent id: its fields, the storage key and the element type (bytes when the
/// storage type is not given).
fn storage_pid(pid: &Value) -> Result<(&[Value], &str, Dtype)> {
    let t = pid
        .as_seq()
        .ok_or_else(|| anyhow!("persistent id is not a tuple"))?;
    let key = t
        .get(2)
        .and_then(Value::as_str)
        .ok_or_else(|| anyhow!("persistent id without a key"))?;
    let dtype = t
        .get(1)
        .map(storage_dtype)
        .transpose()?
        .flatten()
        .unwrap_or(Dtype::U8);
    Ok((t, key, dtype))
}

fn pid_id(pid: &Value) -> String {
    format!("{pid:?}")
}

/// Calls `f` on every persistent id in the tree.
fn collect_storages(v: &Value, f: &mut dyn FnMut(&Value) -> Result<()>) -> Result<()> {
    match v {
        Value::PersId(pid) => f(pid),
        Value::Tuple(items) | Value::List(items) => {
            items.iter().try_for_each(|i| collect_storages(i, f))
        }
        Value::Dict(items) => items.iter().try_for_each(|(k, v)| {
            collect_storages(k, f)?;
            collect_storages(v, f)
        }),
        Value::Call { func, args, state } => {
            collect_storages(func, f)?;
            args.iter().try_for_each(|a| collect_storages(a, f))?;
            state.as_deref().map_or(Ok(()), |s| collect_storages(s, f))
        }
        _ => Ok(()),
    }
}

/// `torch.FloatStorage` → F32 …; `None` for an untyped storage (the dtype comes elsewhere).
fn storage_dtype(v: &Value) -> Result<Option<Dtype>> {
    let Some((_, name)) = v.as_global() else {
        // Older legacy files name the type as a string, e.g. 'FloatStorage'.
        return match v.as_str() {
            Some(s) => dtype_of_name(s).map(Some),
            None => Ok(None),
        };
    };
    if name == "UntypedStorage" {
        return Ok(None);
    }
    dtype_of_name(name).map(Some)
}

fn dtype_of_name(name: &str) -> Result<Dtype> {
    Ok(match name {
        "FloatStorage" | "float32" | "float" => Dtype::F32,
        "HalfStorage" | "float16" | "half" => Dtype::F16,
        "BFloat16Storage" | "bfloat16" => Dtype::BF16,
        "DoubleStorage" | "float64" | "double" => Dtype::F64,
        "LongStorage" | "int64" | "long" => Dtype::I64,
        "IntStorage" | "int32" | "int" => Dtype::I32,
        "ShortStorage" | "int16" | "short" => Dtype::I16,
        "CharStorage" | "int8" => Dtype::I8,
        "ByteStorage" | "uint8" => Dtype::U8,
        "BoolStorage" | "bool" => Dtype::BOOL,
        other => bail!("unsupported tensor type {other}"),
    })
}

type StorageKeys = HashMap<String, (String, Dtype)>;

/// Finds the state dict in the object tree and materialises its tensors.
fn extract(
    root: &Value,
    keys: &StorageKeys,
    storages: &HashMap<String, Storage>,
    format: &'static str,
) -> Result<Checkpoint> {
    let mut map = as_mapping(root).ok_or_else(|| anyhow!("the checkpoint is not a dict (a whole pickled model?); save model.state_dict() instead"))?;
    let mut nested_under = String::new();
    // {"state_dict": …} (Lightning, many repos) or {"model": …} (timm/DeiT training checkpoints).
    for wrapper in ["state_dict", "model", "state_dict_ema", "model_ema"] {
        if let Some((_, inner)) = map.iter().find(|(k, _)| k == wrapper) {
            if let Some(m) = as_mapping(inner) {
                nested_under = wrapper.to_string();
                map = m;
                break;
            }
        }
    }
    let mut tensors = Vec::new();
    let mut skipped = Vec::new();
    for (name, v) in map {
        match tensor_of(v, keys, storages).with_context(|| format!("tensor {name}"))? {
            Some(t) => {
                let name = name.strip_prefix("module.").unwrap_or(&name).to_string();
                tensors.push((name, t));
            }
            None => skipped.push(name),
        }
    }
    if tensors.is_empty() {
        bail!(
            "no tensors found in the checkpoint (top-level entries: {})",
            skipped.join(", ")
        );
    }
    Ok(Checkpoint {
        tensors,
        format,
        nested_under,
        skipped,
    })
}

/// A dict or an `OrderedDict(...)` with string keys.
fn as_mapping(v: &Value) -> Option<Vec<(String, &Value)>> {
    let items = match v {
        Value::Dict(items) => items,
        Value::Call {
            func,
            state: Some(s),
            ..
        } if func.as_global().is_some_and(|(_, n)| n == "OrderedDict") => match s.as_ref() {
            Value::Dict(items) => items,
            _ => return None,
        },
        Value::Call {
            func, state: None, ..
        } if func.as_global().is_some_and(|(_, n)| n == "OrderedDict") => return Some(Vec::new()),
        _ => return None,
    };
    items
        .iter()
        .map(|(k, v)| k.as_str().map(|k| (k.to_string(), v)))
        .collect()
}

/// Materialises `_rebuild_tensor_v2(storage, offset, size, stride, …)` (and the parameter and v3
/// variants); `None` when `v` is not a tensor.
fn tensor_of(
    v: &Value,
    keys: &StorageKeys,
    storages: &HashMap<String, Storage>,
) -> Result<Option<RawTensor>> {
    let Value::Call { func, args, .. } = v else {
        return Ok(None);
    };
    let Some((module, name)) = func.as_global() else {
        return Ok(None);
    };
    if !module.starts_with("torch") {
        return Ok(None);
    }
    match name {
        "_rebuild_parameter" | "_rebuild_parameter_with_state" => match args.first() {
            Some(inner) => tensor_of(inner, keys, storages),
            None => bail!("_rebuild_parameter without arguments"),
        },
        "_rebuild_tensor_v2" | "_rebuild_tensor_v3" | "_rebuild_tensor" => {
            let Some(Value::PersId(pid)) = args.first() else {
                bail!("{name}: first argument is not a storage")
            };
            let (key, mut dtype) = keys
                .get(&pid_id(pid))
                .cloned()
                .ok_or_else(|| anyhow!("unknown storage"))?;
            if name == "_rebuild_tensor_v3" {
                if let Some((_, dt)) = args.get(6).and_then(Value::as_global) {
                    dtype = dtype_of_name(dt)?;
                }
            }
            let offset = args
                .get(1)
                .and_then(Value::as_int)
                .ok_or_else(|| anyhow!("bad storage offset"))?;
            let ints = |i: usize, what: &str| -> Result<Vec<i64>> {
                args.get(i)
                    .and_then(Value::as_seq)
                    .ok_or_else(|| anyhow!("bad {what}"))?
                    .iter()
                    .map(|x| x.as_int().ok_or_else(|| anyhow!("bad {what}")))
                    .collect()
            };
            let size = ints(2, "size")?;
            let stride = ints(3, "stride")?;
            let storage = storages
                .get(&key)
                .ok_or_else(|| anyhow!("storage {key} missing from the file"))?;
            if storage.dtype.size() != dtype.size() && storage.dtype != Dtype::U8 {
                bail!(
                    "storage {key} holds {:?} but the tensor is {:?}",
                    storage.dtype,
                    dtype
                );
            }
            Ok(Some(
                gather(&storage.bytes, dtype, offset, &size, &stride)
                    .with_context(|| format!("storage {key}"))?,
            ))
        }
        _ => Ok(None),
    }
}

/// Copies a strided view out of a storage into a contiguous tensor.
pub fn gather(
    storage: &[u8],
    dtype: Dtype,
    offset: i64,
    size: &[i64],
    stride: &[i64],
) -> Result<RawTensor> {
    if size.len() != stride.len() || size.iter().chain(stride).any(|&x| x < 0) || offset < 0 {
        bail!("bad tensor layout: size {size:?}, stride {stride:?}, offset {offset}");
    }
    let es = dtype.size();
    let overflow = || anyhow!("tensor of size {size:?}, stride {stride:?}: sizes overflow");
    let numel = size
        .iter()
        .try_fold(1usize, |acc, &s| acc.checked_mul(s as usize))
        .filter(|n| n.checked_mul(es).is_some())
        .ok_or_else(overflow)?;
    let shape: Vec<usize> = size.iter().map(|&s| s as usize).collect();
    if numel == 0 {
        return Ok(RawTensor {
            dtype,
            shape,
            data: Vec::new(),
        });
    }
    // Largest element index touched, to check bounds once.
    let last = size
        .iter()
        .zip(stride)
        .try_fold(offset as usize, |acc, (&n, &s)| {
            (n as usize - 1)
                .checked_mul(s as usize)
                .and_then(|d| acc.checked_add(d))
        })
        .filter(|l| l.checked_add(1).and_then(|n| n.checked_mul(es)).is_some())
        .ok_or_else(overflow)?;
    // A view with overlapping elements (stride 0, as `expand` makes) would materialise more than
    // its storage holds; state dicts never contain one, and refusing it bounds memory by the file.
    if numel * es > storage.len() {
        bail!(
            "tensor of size {size:?}, stride {stride:?} has more elements than its storage \
             ({} bytes): overlapping views are not supported; save a contiguous copy",
            storage.len()
        );
    }
    if (last + 1) * es > storage.len() {
        bail!(
            "tensor of size {size:?} at offset {offset} needs {} bytes but the storage has {} (truncated file?)",
            (last + 1) * es,
            storage.len()
        );
    }
    let contiguous = {
        let mut expect = 1i64;
        let mut ok = true;
        for (&n, &s) in size.iter().zip(stride).rev() {
            if n != 1 && s != expect {
                ok = false;
            }
            expect *= n;
        }
        ok
    };
    let start = offset as usize * es;
    if contiguous {
        return Ok(RawTensor {
            dtype,
            shape,
            data: storage[start..start + numel * es].to_vec(),
        });
    }
    let mut data = Vec::with_capacity(numel * es);
    let mut idx = vec![0usize; size.len()];
    for _ in 0..numel {
        let e = offset as usize
            + idx
                .iter()
                .zip(stride)
                .map(|(&i, &s)| i * s as usize)
                .sum::<usize>();
        data.extend_from_slice(&storage[e * es..(e + 1) * es]);
        // Row-major increment.
        for d in (0..idx.len()).rev() {
            idx[d] += 1;
            if idx[d] < shape[d] {
                break;
            }
            idx[d] = 0;
        }
    }
    Ok(RawTensor { dtype, shape, data })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gather_transposed_view() {
        // storage 0..6 as f32; view 3×2 with strides (1, 3) is the transpose of a 2×3 matrix.
        let st: Vec<u8> = (0..6).flat_map(|i| (i as f32).to_le_bytes()).collect();
        let t = gather(&st, Dtype::F32, 0, &[3, 2], &[1, 3]).unwrap();
        let v: Vec<f32> = t
            .data
            .chunks(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        assert_eq!(v, vec![0.0, 3.0, 1.0, 4.0, 2.0, 5.0]);
        assert_eq!(t.shape, vec![3, 2]);
    }

    #[test]
    fn gather_offset_and_bounds() {
        let st: Vec<u8> = (0..6).flat_map(|i| (i as f32).to_le_bytes()).collect();
        let t = gather(&st, Dtype::F32, 4, &[2], &[1]).unwrap();
        assert_eq!(t.data, [4f32.to_le_bytes(), 5f32.to_le_bytes()].concat());
        assert!(gather(&st, Dtype::F32, 5, &[2], &[1]).is_err());
        // Sizes whose product or extent overflows are errors, not panics or wrapped bounds.
        let huge = i64::MAX / 2;
        assert!(gather(&st, Dtype::F32, 0, &[huge, huge], &[0, 0]).is_err());
        assert!(gather(&st, Dtype::F32, 0, &[2, 2], &[huge, huge]).is_err());
        // A broadcast view (stride 0) would materialise beyond its storage: refused.
        assert!(gather(&st, Dtype::F32, 0, &[100_000, 100_000], &[0, 0]).is_err());
    }

    #[test]
    fn scalar_tensor() {
        let st = 7i64.to_le_bytes().to_vec();
        let t = gather(&st, Dtype::I64, 0, &[], &[]).unwrap();
        assert_eq!(t.shape, Vec::<usize>::new());
        assert_eq!(t.data, st);
    }
}
