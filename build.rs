//! Makes the `realnet` binaries find the libtorch they were built against, with no environment
//! set at run time: an rpath to the libtorch `lib` folder (the pip `torch` wheel's, by default).
//! Without it the loader may pick the machine's old Debian libtorch and fail on missing symbols.
//! It also keeps `libtorch_cuda` linked when present: nothing references its symbols directly,
//! so `--as-needed` would drop it and CUDA would look absent at run time.
use std::path::PathBuf;
use std::process::Command;

fn torch_lib_dir() -> Option<PathBuf> {
    if let Ok(dir) = std::env::var("LIBTORCH") {
        return Some(PathBuf::from(dir).join("lib"));
    }
    let python = std::env::var("PYTHON_SYS_EXECUTABLE").unwrap_or_else(|_| "python".into());
    let out = Command::new(python)
        .args([
            "-c",
            "import os, torch; print(os.path.join(os.path.dirname(torch.__file__), 'lib'))",
        ])
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    let dir = String::from_utf8(out.stdout).ok()?.trim().to_string();
    (!dir.is_empty()).then(|| PathBuf::from(dir))
}

fn main() {
    println!("cargo:rerun-if-env-changed=LIBTORCH");
    println!("cargo:rerun-if-env-changed=LIBTORCH_USE_PYTORCH");
    println!("cargo:rerun-if-env-changed=PYTHON_SYS_EXECUTABLE");
    let Some(lib) = torch_lib_dir() else {
        println!(
            "cargo:warning=libtorch not found: run scripts/setup.sh (or set LIBTORCH / LIBTORCH_USE_PYTORCH=1)"
        );
        return;
    };
    let lib = lib.display();
    println!("cargo:rustc-link-arg=-Wl,-rpath,{lib}");
    println!("cargo:rustc-env=REALNET_TORCH_LIB={lib}");
    if std::path::Path::new(&format!("{lib}/libtorch_cuda.so")).exists() {
        println!("cargo:rustc-link-arg=-L{lib}");
        println!("cargo:rustc-link-arg=-Wl,--no-as-needed,-ltorch_cuda,--as-needed");
    }
}
