//! Helpers shared by the end-to-end tests: the binary under test and the shared data folder.
#![allow(dead_code)] // each test file uses its own subset
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// A file or folder under `../shared` (data, weights, fixtures; never copied into the repo).
pub fn shared(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../shared")
        .join(rel)
}

/// Runs `realnet` on the CPU at one thread (reproducible, and fair to a shared machine).
pub fn realnet(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_realnet"))
        .args(["--device", "cpu", "--threads", "1"])
        .args(args)
        .output()
        .expect("run realnet")
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
