//! `realnet demo` — the README's first command — end to end at a tiny budget: it draws its dataset,
//! trains, tests and writes the summary, overlays, report and model bundle.
mod common;
use common::*;

#[test]
fn demo_runs_end_to_end_and_writes_everything() {
    let Some(weights) = lite2_or_skip() else {
        return;
    };
    let dir = tempfile::tempdir().expect("temp dir");
    let out = dir.path().join("demo out ü");
    let o = realnet(&[
        "demo",
        "--out",
        out.to_str().expect("utf-8 path"),
        "--steps",
        "2",
        "--weights",
        weights.to_str().expect("utf-8 path"),
    ]);
    let stdout = ok(&o);
    for want in [
        "img_AUC",
        "pix_AUC",
        "AUPRO",
        "threshold",
        "overlays:",
        "report:",
    ] {
        assert!(stdout.contains(want), "no '{want}' in:\n{stdout}");
    }
    for f in [
        "run/model.safetensors",
        "run/meta.json",
        "run/config.toml",
        "report/report.html",
    ] {
        assert!(out.join(f).is_file(), "{f} missing");
    }
    let overlays = walk_pngs(&out.join("overlays"));
    assert!(overlays > 0, "no overlay PNGs");
}

fn walk_pngs(dir: &std::path::Path) -> usize {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(Result::ok)
                .map(|e| e.path())
                .map(|p| {
                    if p.is_dir() {
                        walk_pngs(&p)
                    } else {
                        usize::from(p.extension().is_some_and(|x| x == "png"))
                    }
                })
                .sum()
        })
        .unwrap_or(0)
}
