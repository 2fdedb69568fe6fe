//! Anomaly map files: `.npy` (float32/float64, H×W or 1×H×W, C order) and `.tiff` (one float gray
//! plane). Every error names the file and says what is expected.
use crate::{Map, MetricsError};
use std::path::Path;

/// Reads a map by extension (`.npy`, `.tif`, `.tiff`, any case). Rejects NaN/inf values.
pub fn read_map(path: &Path) -> Result<Map, MetricsError> {
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase);
    match ext.as_deref() {
        Some("npy") => read_npy(path),
        Some("tif" | "tiff") => read_tiff(path),
        _ => Err(MetricsError::file(
            path,
            "unknown map format: expected a .npy or .tiff file",
        )),
    }
}

fn finite(path: &Path, map: Map) -> Result<Map, MetricsError> {
    match map.first_non_finite() {
        None => Ok(map),
        Some(i) => Err(MetricsError::file(
            path,
            format!(
                "value {} at (x {}, y {}) is not finite; anomaly maps must hold finite numbers",
                map.data[i],
                i % map.width,
                i / map.width
            ),
        )),
    }
}

/// Reads a `.npy` map: little-endian `<f4` or `<f8`, shape (H, W) or (1, H, W), C order.
pub fn read_npy(path: &Path) -> Result<Map, MetricsError> {
    let bytes =
        std::fs::read(path).map_err(|e| MetricsError::file(path, format!("cannot read: {e}")))?;
    let map = parse_npy(&bytes).map_err(|m| MetricsError::file(path, m))?;
    finite(path, map)
}

/// Parses `.npy` bytes (what [`read_npy`] reads from a file); public for the fuzz target.
pub fn parse_npy(b: &[u8]) -> Result<Map, String> {
    if b.len() < 10 || &b[..6] != b"\x93NUMPY" {
        return Err("not a .npy file (no \\x93NUMPY magic)".into());
    }
    let (hlen, start) = match b[6] {
        1 => (u16::from_le_bytes([b[8], b[9]]) as usize, 10),
        2 | 3 if b.len() >= 12 => (u32::from_le_bytes([b[8], b[9], b[10], b[11]]) as usize, 12),
        v => return Err(format!("unsupported .npy format version {v}")),
    };
    let header = b
        .get(start..start + hlen)
        .and_then(|h| std::str::from_utf8(h).ok())
        .ok_or("truncated or unreadable .npy header")?;
    let descr = dict_value(header, "descr").ok_or("the .npy header has no 'descr'")?;
    let descr = descr.trim_matches(|c| c == '\'' || c == '"');
    let fortran =
        dict_value(header, "fortran_order").ok_or("the .npy header has no 'fortran_order'")?;
    if fortran != "False" {
        return Err("Fortran-order array; save it in C order (np.ascontiguousarray) first".into());
    }
    let shape_s = dict_value(header, "shape").ok_or("the .npy header has no 'shape'")?;
    let shape: Vec<usize> = shape_s
        .trim_matches(|c| c == '(' || c == ')')
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| s.trim_end_matches('L').parse::<usize>())
        .collect::<Result<_, _>>()
        .map_err(|_| format!("cannot parse the shape {shape_s}"))?;
    let (h, w) = match shape[..] {
        [h, w] | [1, h, w] => (h, w),
        _ => return Err(format!("shape {shape_s}: expected an H×W (or 1×H×W) map")),
    };
    let width = match descr {
        "<f4" => 4,
        "<f8" => 8,
        _ => {
            return Err(format!(
                "dtype '{descr}': expected little-endian float32 ('<f4') or float64 ('<f8')"
            ))
        }
    };
    let n = h.checked_mul(w).ok_or("the shape overflows")?;
    let data = &b[start + hlen..];
    if n == 0 || data.len() != n * width {
        return Err(format!(
            "{} data bytes for shape {shape_s} of '{descr}' (want {})",
            data.len(),
            n * width
        ));
    }
    let values: Vec<f32> = if width == 4 {
        data.chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect()
    } else {
        data.chunks_exact(8)
            .map(|c| f64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]) as f32)
            .collect()
    };
    Map::new(w, h, values).map_err(|e| e.to_string())
}

/// The raw text of `'key': value` in a numpy header dict (value up to the next top-level comma).
fn dict_value<'a>(header: &'a str, key: &str) -> Option<&'a str> {
    let at = header.find(&format!("'{key}'"))? + key.len() + 2;
    let rest = header[at..].trim_start().strip_prefix(':')?.trim_start();
    let end = if rest.starts_with('(') {
        rest.find(')')? + 1
    } else {
        rest.find([',', '}']).unwrap_or(rest.len())
    };
    Some(rest[..end].trim())
}

/// Reads a `.tiff` map: one gray plane of 32- or 64-bit floats.
pub fn read_tiff(path: &Path) -> Result<Map, MetricsError> {
    let bytes =
        std::fs::read(path).map_err(|e| MetricsError::file(path, format!("cannot read: {e}")))?;
    let map = parse_tiff(&bytes).map_err(|m| MetricsError::file(path, m))?;
    finite(path, map)
}

/// Parses `.tiff` bytes (what [`read_tiff`] reads from a file); public for the fuzz target. The
/// decoder's default limits bound the memory a lying header can ask for.
pub fn parse_tiff(b: &[u8]) -> Result<Map, String> {
    use tiff::decoder::{Decoder, DecodingResult};
    let bad = |e: tiff::TiffError| format!("not a readable TIFF: {e}");
    let mut dec = Decoder::new(std::io::Cursor::new(b)).map_err(bad)?;
    let (w, h) = dec.dimensions().map_err(bad)?;
    let ct = dec.colortype().map_err(bad)?;
    let data = match (ct, dec.read_image().map_err(bad)?) {
        (tiff::ColorType::Gray(32), DecodingResult::F32(v)) => v,
        (tiff::ColorType::Gray(64), DecodingResult::F64(v)) => {
            v.into_iter().map(|x| x as f32).collect()
        }
        (ct, _) => {
            return Err(format!(
                "color type {ct:?} of integer or multi-channel samples: expected one 32-bit float gray plane"
            ))
        }
    };
    Map::new(w as usize, h as usize, data).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn npy(descr: &str, fortran: bool, shape: &str, payload: &[u8]) -> Vec<u8> {
        let mut h = format!(
            "{{'descr': '{descr}', 'fortran_order': {}, 'shape': {shape}, }}",
            if fortran { "True" } else { "False" }
        );
        while (10 + h.len() + 1) % 64 != 0 {
            h.push(' ');
        }
        h.push('\n');
        let mut b = b"\x93NUMPY\x01\x00".to_vec();
        b.extend((h.len() as u16).to_le_bytes());
        b.extend(h.as_bytes());
        b.extend(payload);
        b
    }

    fn f4(v: &[f32]) -> Vec<u8> {
        v.iter().flat_map(|x| x.to_le_bytes()).collect()
    }

    #[test]
    fn parses_f4_f8_and_leading_one() {
        let m = parse_npy(&npy("<f4", false, "(2, 3)", &f4(&[0., 1., 2., 3., 4., 5.]))).unwrap();
        assert_eq!((m.width, m.height, m.data[5]), (3, 2, 5.0));
        let f8: Vec<u8> = [0.5f64, -1.0]
            .iter()
            .flat_map(|x| x.to_le_bytes())
            .collect();
        let m = parse_npy(&npy("<f8", false, "(1, 1, 2)", &f8)).unwrap();
        assert_eq!((m.width, m.height, m.data.clone()), (2, 1, vec![0.5, -1.0]));
    }

    #[test]
    fn rejects_with_reasons() {
        let p = f4(&[0.; 4]);
        let err = |b: Vec<u8>| parse_npy(&b).unwrap_err();
        assert!(err(npy("<f4", true, "(2, 2)", &p)).contains("Fortran"));
        assert!(err(npy("<i4", false, "(2, 2)", &p)).contains("dtype"));
        assert!(err(npy(">f4", false, "(2, 2)", &p)).contains("little-endian"));
        assert!(err(npy("<f4", false, "(4,)", &p)).contains("H×W"));
        assert!(err(npy("<f4", false, "(2, 1, 2)", &p)).contains("H×W"));
        assert!(err(npy("<f4", false, "(2, 3)", &p)).contains("data bytes"));
        assert!(err(b"PK\x03\x04 not numpy".to_vec()).contains("magic"));
    }

    #[test]
    fn files_roundtrip_and_nan_names_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let good = dir.path().join("a.npy");
        std::fs::write(
            &good,
            npy("<f4", false, "(2, 2)", &f4(&[0.1, 0.2, 0.3, 0.4])),
        )
        .unwrap();
        assert_eq!(read_map(&good).unwrap().data, vec![0.1, 0.2, 0.3, 0.4]);
        let nan = dir.path().join("nan.npy");
        std::fs::write(
            &nan,
            npy("<f4", false, "(2, 2)", &f4(&[0.1, f32::NAN, 0.3, 0.4])),
        )
        .unwrap();
        let e = read_map(&nan).unwrap_err().to_string();
        assert!(e.contains("nan.npy") && e.contains("not finite"), "{e}");

        let t = dir.path().join("m.tiff");
        let mut enc = tiff::encoder::TiffEncoder::new(std::fs::File::create(&t).unwrap()).unwrap();
        enc.write_image::<tiff::encoder::colortype::Gray32Float>(3, 2, &[1., 2., 3., 4., 5., 6.])
            .unwrap();
        let m = read_map(&t).unwrap();
        assert_eq!((m.width, m.height, m.data[3]), (3, 2, 4.0));

        let t8 = dir.path().join("u8.tif");
        let mut enc = tiff::encoder::TiffEncoder::new(std::fs::File::create(&t8).unwrap()).unwrap();
        enc.write_image::<tiff::encoder::colortype::Gray8>(2, 1, &[1, 2])
            .unwrap();
        let e = read_map(&t8).unwrap_err().to_string();
        assert!(e.contains("u8.tif") && e.contains("float"), "{e}");
        let e = read_map(&dir.path().join("x.png")).unwrap_err().to_string();
        assert!(e.contains(".npy or .tiff"), "{e}");
        let e = read_map(&dir.path().join("missing.npy"))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("missing.npy") && e.contains("cannot read"),
            "{e}"
        );
    }
}
