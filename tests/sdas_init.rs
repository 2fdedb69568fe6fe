//! A guided-diffusion checkpoint (made by OpenAI's own `UNetModel`, ImageNet-style with 1000
//! classes, saved with `torch.save`) converts with `realnet weights convert` and initialises
//! `realnet sdas train --init` in every tensor but the class embedding, as the official training
//! does with `256x256_diffusion.pt`. Needs the venv's python with `guided-diffusion-sdk`
//! (scripts/setup.sh installs both); skipped with a note otherwise.
use std::path::PathBuf;
use std::process::Command;

fn python() -> Option<PathBuf> {
    let cache = std::env::var_os("REALNET_CACHE")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/realnet")))?;
    let py = cache.join("venv/bin/python");
    let ok = Command::new(&py)
        .args(["-c", "import guided_diffusion.unet"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if !ok {
        eprintln!(
            "NOTE: skipped: {} cannot import guided_diffusion (scripts/setup.sh installs it)",
            py.display()
        );
        return None;
    }
    Some(py)
}

const MAKE: &str = r#"
import sys, warnings
warnings.filterwarnings("ignore")
import torch
from guided_diffusion.unet import UNetModel
m = UNetModel(image_size=16, in_channels=3, model_channels=32, out_channels=6, num_res_blocks=1,
              attention_resolutions=(2,), dropout=0.0, channel_mult=(1, 2), num_classes=1000,
              num_heads=4, num_head_channels=16, num_heads_upsample=-1, use_scale_shift_norm=True,
              resblock_updown=True)
torch.save(m.state_dict(), sys.argv[1])
print(len(m.state_dict()))
"#;

#[test]
fn guided_diffusion_checkpoint_initialises_the_denoiser() {
    let Some(py) = python() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let pth = tmp.path().join("gd.pt");
    let out = Command::new(&py)
        .args(["-c", MAKE])
        .arg(&pth)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let n: usize = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
    let st = tmp.path().join("gd.safetensors");
    let bin = env!("CARGO_BIN_EXE_realnet");
    let conv = Command::new(bin)
        .args(["weights", "convert"])
        .arg(&pth)
        .arg(&st)
        .output()
        .unwrap();
    assert!(
        conv.status.success(),
        "{}",
        String::from_utf8_lossy(&conv.stderr)
    );

    let data = tmp.path().join("fabric");
    realnet::demo::write_dataset(&data, 32, 4, 1, 1).unwrap();
    let run = tmp.path().join("run");
    let sets = [
        "model.image_size=16",
        "model.model_channels=32",
        "model.channel_mult=[1,2]",
        "model.num_res_blocks=1",
        "model.attention_resolutions=[8]",
        "model.num_head_channels=16",
        "train.steps=1",
        "train.batch_size=2",
    ];
    let mut cmd = Command::new(bin);
    cmd.args([
        "--device",
        "cpu",
        "--threads",
        "1",
        "sdas",
        "train",
        "--data",
    ])
    .arg(&data)
    .arg("--out")
    .arg(&run)
    .arg("--init")
    .arg(&st);
    for s in sets {
        cmd.args(["--set", s]);
    }
    let out = cmd.output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    // Every tensor but label_emb (1000 rows there, 1 here).
    assert!(
        err.contains(&format!("initialised {} of {n} tensors", n - 1)),
        "{err}"
    );
}
