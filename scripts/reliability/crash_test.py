#!/usr/bin/env python3
"""Crash safety: SIGKILL `train`, `sdas train`, `sdas sample` and `synth` at random moments and resume.

For each job: one uninterrupted reference run; then interrupted runs — start (with --resume where the
command has it), kill -9 after a random delay in (0.2 s, reference duration), start again … until the
job finishes; the finished output must equal the reference byte for byte (models, images, masks,
indexes), and after every kill every output file that exists under its final name must be whole
(PNG decodes, JSON parses, every JSONL line parses, safetensors header and size consistent).
Repeats until each job has been killed at least --kills times.

Run (after a build): ~/.cache/realnet/venv/bin/python scripts/reliability/crash_test.py \
    --bin target/release/realnet --kills 20 [--jobs train,sdas-train,sdas-sample,synth] [--json OUT]
Needs ../shared/data/mvtec_ad/bottle and the Lite2 weights in ../shared/weights.
"""
import argparse
import json
import os
import random
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from PIL import Image

ROOT = Path(__file__).resolve().parents[2]
SHARED = ROOT.parent / "shared"
BOTTLE = SHARED / "data/mvtec_ad/bottle"
WEIGHTS = SHARED / "weights/efficientnet_lite2_imagenet.safetensors"


def small_category(dst: Path) -> Path:
    """8 training images, 2 good and 2 defective test images (with masks) of bottle."""
    cat = dst / "bottle"
    for sub, src, n in (("train/good", "train/good", 8), ("test/good", "test/good", 2),
                        ("test/broken_large", "test/broken_large", 2)):
        (cat / sub).mkdir(parents=True, exist_ok=True)
        for f in sorted((BOTTLE / src).iterdir())[:n]:
            shutil.copy(f, cat / sub / f.name)
            if "broken" in sub:
                m = BOTTLE / "ground_truth/broken_large" / (f.stem + "_mask.png")
                (cat / "ground_truth/broken_large").mkdir(parents=True, exist_ok=True)
                shutil.copy(m, cat / "ground_truth/broken_large" / m.name)
    return cat


def check_whole(out: Path) -> list:
    """Files under their final names that are not whole."""
    bad = []
    for p in out.rglob("*"):
        if not p.is_file() or p.name.startswith("."):
            continue  # dot-prefixed names are in-progress temporary files
        try:
            if p.suffix == ".png":
                with Image.open(p) as im:
                    im.load()
            elif p.suffix == ".json":
                json.loads(p.read_text())
            elif p.suffix == ".jsonl":
                for line in p.read_text().splitlines():
                    json.loads(line)
            elif p.suffix == ".safetensors":
                b = p.read_bytes()
                (n,) = struct.unpack("<Q", b[:8])
                hdr = json.loads(b[8:8 + n])
                end = max((v["data_offsets"][1] for k, v in hdr.items() if k != "__metadata__"), default=0)
                if len(b) != 8 + n + end:
                    raise ValueError(f"size {len(b)} != {8 + n + end}")
        except Exception as e:  # noqa: BLE001 - any failure means a torn file
            bad.append(f"{p}: {e}")
    return bad


def outputs(out: Path, job: str) -> dict:
    """The files that must equal the reference."""
    if job in ("train", "sdas-train"):
        names = ["model.safetensors"]
    else:
        names = [str(p.relative_to(out)) for p in sorted(out.rglob("*"))
                 if p.is_file() and not p.name.startswith(".") and p.suffix in (".png", ".jsonl")]
    return {n: (out / n).read_bytes() for n in names if (out / n).exists()}


def command(args, job, data, out, sdas_model):
    b = [args.bin, "--device", "cpu", "--threads", "1"]
    resume = (out / "checkpoints/last.safetensors").exists()
    if job == "train":
        c = b + ["train", "--data", str(data), "--out", str(out), "--weights", str(WEIGHTS), "--source", "procedural"]
        for s in ("model.image_size=128", "train.steps=12", "train.batch_size=2", "train.afs_batches=1",
                  "train.checkpoint_every=1", "train.val_anomalies_per_image=1"):
            c += ["--set", s]
        return c + (["--resume"] if resume else [])
    if job == "sdas-train":
        c = b + ["sdas", "train", "--data", str(data), "--out", str(out)]
        for s in ("model.image_size=32", "model.channel_mult=[1,2]", "train.steps=16", "train.batch_size=2",
                  "train.checkpoint_every=1"):
            c += ["--set", s]
        return c + (["--resume"] if resume else [])
    if job == "sdas-sample":
        return b + ["sdas", "sample", "--model", str(sdas_model), "--category", "bottle", "--count", "24",
                    "--batch", "2", "--steps", "ddim5", "--seed", "1", "--out", str(out)]
    if job == "synth":
        return b + ["synth", "--data", str(data), "--out", str(out), "--count", "300", "--seed", "1"]
    raise ValueError(job)


def run(cmd):
    t = time.time()
    r = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    if r.returncode != 0:
        sys.exit(f"reference run failed ({r.returncode}): {' '.join(cmd)}\n{r.stderr[-2000:]}")
    return time.time() - t


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default=str(ROOT / "target/release/realnet"))
    ap.add_argument("--kills", type=int, default=20)
    ap.add_argument("--jobs", default="train,sdas-train,sdas-sample,synth")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json")
    args = ap.parse_args()
    rng = random.Random(args.seed)
    tmp = Path(tempfile.mkdtemp(prefix="realnet-crash-"))
    data = small_category(tmp / "data")
    sdas_model = tmp / "sdas-model"
    results = []
    for job in args.jobs.split(","):
        ref = tmp / f"{job}-ref"
        if job == "sdas-sample" and not (sdas_model / "model.safetensors").exists():
            run(command(args, "sdas-train", data, sdas_model, None))
        dur = run(command(args, job, data, ref, sdas_model))
        if job == "sdas-train" and not sdas_model.exists():
            shutil.copytree(ref, sdas_model)
        want = outputs(ref, job)
        kills = starts = finished = mismatches = torn = 0
        problems = []
        seq = 0
        while kills < args.kills:
            out = tmp / f"{job}-run{seq}"
            shutil.rmtree(out, ignore_errors=True)
            while True:  # one interrupted run, to its end
                p = subprocess.Popen(command(args, job, data, out, sdas_model),
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
                starts += 1
                delay = rng.uniform(0.2, max(0.5, dur))
                try:
                    p.wait(timeout=delay)
                except subprocess.TimeoutExpired:
                    p.send_signal(signal.SIGKILL)
                    p.wait()
                    kills += 1
                    bad = check_whole(out)
                    torn += len(bad)
                    problems += bad[:3]
                    continue
                err = p.stderr.read() if p.stderr else ""
                if p.returncode != 0:
                    problems.append(f"{job}: exit {p.returncode} after a kill: {err[-500:]}")
                    break
                finished += 1
                got = outputs(out, job)
                if got != want:
                    mismatches += 1
                    diff = sorted(set(got) ^ set(want)) or [k for k in want if got.get(k) != want[k]]
                    problems.append(f"{job}: finished output differs from the reference: {diff[:5]}")
                break
            shutil.rmtree(out, ignore_errors=True)
            seq += 1
        row = dict(job=job, reference_s=round(dur, 1), kills=kills, starts=starts, finished_runs=finished,
                   mismatches=mismatches, torn_files=torn, problems=problems,
                   passed=mismatches == 0 and torn == 0 and not problems and finished == seq)
        results.append(row)
        print(json.dumps(row), flush=True)
    shutil.rmtree(tmp, ignore_errors=True)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    sys.exit(0 if all(r["passed"] for r in results) else 1)


if __name__ == "__main__":
    main()
