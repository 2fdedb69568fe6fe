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
