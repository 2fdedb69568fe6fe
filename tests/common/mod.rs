//! Helpers shared by the end-to-end tests: the binary under test and the shared data folder.
#![allow(dead_code)] // each test file uses its own subset
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

/// A file or folder under `../shared` (data, weights, fixtures; never copied into the repo).
pub fn shared(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../shared")
        .join(rel)
}

/// The ImageNet EfficientNet-Lite2 weights in `../shared`.
pub fn lite2() -> PathBuf {
    shared("weights/efficientnet_lite2_imagenet.safetensors")
}

/// [`lite2`] when present; otherwise says the test is skipped and gives `None`.
pub fn lite2_or_skip() -> Option<PathBuf> {
    let w = lite2();
    if w.exists() {
        Some(w)
    } else {
        eprintln!("skipping: {} not found", w.display());
        None
    }
}

/// Runs `realnet` on the CPU at one thread (reproducible, and fair to a shared machine).
pub fn realnet(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_realnet"))
        .args(["--device", "cpu", "--threads", "1"])
        .args(args)
        .output()
        .expect("run realnet")
}

/// stdout and stderr together, for looking for messages wherever a command prints them.
pub fn both(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Asserts the exit code, that nothing panicked, and that every one of `needles` appears in stdout
/// or stderr; returns both streams. `what` names the case in failure messages.
pub fn expect(what: &str, out: &Output, code: i32, needles: &[&str]) -> String {
    let text = both(out);
    assert!(
        out.status.code() != Some(101) && !text.contains("panicked"),
        "{what}: panicked\n{text}"
    );
    assert_eq!(out.status.code(), Some(code), "{what}: exit code\n{text}");
    for n in needles {
        assert!(text.contains(n), "{what}: no {n:?} in the output\n{text}");
    }
    text
}

/// Asserts success (showing both streams otherwise) and returns stdout.
pub fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Writes a little-endian float32 `.npy` of shape (h, w), creating its folder.
pub fn write_npy(path: &Path, w: usize, h: usize, data: &[f32]) {
    let mut header = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': ({h}, {w}), }}");
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(' ');
    }
    header.push('\n');
    let mut b = b"\x93NUMPY\x01\x00".to_vec();
    b.extend((header.len() as u16).to_le_bytes());
    b.extend(header.as_bytes());
    b.extend(data.iter().flat_map(|v| v.to_le_bytes()));
    std::fs::create_dir_all(path.parent().expect("a file path")).expect("create folder");
    std::fs::write(path, b).expect("write .npy");
}

/// One HTTP/1.1 exchange on a fresh connection: (status, body).
pub fn http(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> (u16, Vec<u8>) {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(120))).unwrap();
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).unwrap();
    // The server may answer (413) and close before reading a large body: ignore a broken pipe.
    let _ = s.write_all(body);
    let mut resp = Vec::new();
    let _ = s.read_to_end(&mut resp);
    let split = resp
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no HTTP header in {:?}", String::from_utf8_lossy(&resp)));
    let head = String::from_utf8_lossy(&resp[..split]).into_owned();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("bad status line: {head}"));
    assert!(
        !head
            .to_ascii_lowercase()
            .contains("transfer-encoding: chunked"),
        "this little client reads only Content-Length bodies: {head}"
    );
    (status, resp[split + 4..].to_vec())
}

pub fn json(body: &[u8]) -> serde_json::Value {
    serde_json::from_slice(body)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(body)))
}
