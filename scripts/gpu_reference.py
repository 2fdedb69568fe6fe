#!/usr/bin/env python3
"""The PyTorch reference's networks on CUDA: the GPU peer of `realnet --device cuda bench`.

`torch_reference.py` (../shared/bench) times the CPU only. This imports its networks unchanged and
times the same measurements on a GPU with the same shapes and batch sizes, synchronising the device
after every timed call (CUDA kernels run asynchronously), in f32 and in bf16 autocast (PyTorch's own
mixed precision: the counterpart of `realnet --precision bf16`). One JSON line per measurement, with
the keys of the reference's records plus "impl", "precision" and "peak_cuda_mib".

    REF_DIR=dir/with/torch_reference.py python3 scripts/gpu_reference.py --config paper
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import sys
import time

import torch
import torch.nn.functional as F

sys.path.insert(0, os.environ.get("REF_DIR", os.path.join(os.path.dirname(__file__), "..", ".gpu")))
import torch_reference as R  # noqa: E402


def _timestep_embedding(t, dim, max_period=10000.0):
    # The reference's own builds its frequencies on the CPU (it never runs on a GPU): same math, t's device.
    half = dim // 2
    freqs = torch.exp(-R.math.log(max_period) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
    args = t.float()[:, None] * freqs[None]
    return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)


R.timestep_embedding = _timestep_embedding

# Set once from the command line in main().
DEV = "cuda"
CHANNELS_LAST = False
PROFILE = False


def sync():
    if DEV == "cuda":
        torch.cuda.synchronize()


def timed(fn, warmup: int, iters: int) -> list[float]:
    for _ in range(warmup):
        fn()
    sync()
    ts = []
    for _ in range(iters):
        t0 = time.perf_counter()
        fn()
        sync()
        ts.append(time.perf_counter() - t0)
    return ts


def autocast(precision: str):
    if precision == "bf16":
        return torch.autocast(DEV, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def profile(fn, label: str):
    """Prints the CUDA kernels that take the most time over three calls (stderr)."""
    from torch.profiler import ProfilerActivity, profile as prof
    act = ProfilerActivity.CUDA if DEV == "cuda" else ProfilerActivity.CPU
    with prof(activities=[act]) as p:
        for _ in range(3):
            fn()
        sync()
    print(f"== kernels, {label}, 3 calls", file=sys.stderr)
    print(p.key_averages().table(sort_by=f"{DEV}_time_total", row_limit=25, max_name_column_width=70),
          file=sys.stderr)


def record(config, what, batch, precision, times, per, **extra):
    med = statistics.median(times)
    out = {
        "impl": f"torch-reference-{DEV}", "config": config, "what": what, "batch": batch,
        "precision": precision, "median_s": med / per, "min_s": min(times) / per,
        "max_s": max(times) / per, "batch_median_s": med, "iters": len(times),
        "torch_version": torch.__version__,
    }
    if DEV == "cuda":
        out["device"] = torch.cuda.get_device_name(0)
        out["peak_cuda_mib"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
    if CHANNELS_LAST or torch.backends.cudnn.benchmark:
        out["variant"] = ",".join(v for v, on in (("channels_last", CHANNELS_LAST),
                                                   ("cudnn_benchmark", torch.backends.cudnn.benchmark)) if on)
    out.update(extra)
    if what == "infer":
        out["images_per_s"] = per / med
    return out


def infer(config, batch, precision, iters, warmup):
    model = R.RealNet(config, "auto", 0).eval().to(DEV)
    x = torch.randn(batch, 3, 256, 256, device=DEV)
    if CHANNELS_LAST:
        model = model.to(memory_format=torch.channels_last)
        x = x.to(memory_format=torch.channels_last)
    with torch.inference_mode(), autocast(precision):
        times = timed(lambda: model(x), warmup, iters)
        if PROFILE:
            profile(lambda: model(x), f"infer {precision} batch {batch}")
    return record(config, "infer", batch, precision, times, float(batch))


def train(config, batch, precision, iters, warmup):
    model = R.RealNet(config, "auto", 0).train().to(DEV)
    opt = torch.optim.Adam(model.trainable_parameters(), lr=1e-4, betas=(0.9, 0.999))
    g = torch.Generator(device=DEV).manual_seed(0)
    x_anom = torch.randn(batch, 3, 256, 256, generator=g, device=DEV)
    x_clean = torch.randn(batch, 3, 256, 256, generator=g, device=DEV)
    mask = (torch.rand(batch, 256, 256, generator=g, device=DEV) > 0.5).long()
    losses = []

    def step():  # the reference's measure_train step, on the GPU
        with autocast(precision):
            with torch.no_grad():
                f_anom = model.extract(x_anom)
                f_clean = model.extract(x_clean)
            logits, recons = model.segment(f_anom, (256, 256))
            loss = F.cross_entropy(logits.float(), mask) + sum(
                F.mse_loss(r.float(), c.float()) for r, c in zip(recons, f_clean))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))

    times = timed(step, warmup, iters)
    return record(config, "train", batch, precision, times, 1.0, last_loss=losses[-1])


def diffusion(config, batch, precision, iters, warmup):
    d = R.PRESETS[config]["diffusion"]
    net = R.DiffusionUNet(d["image"], d["base"], d["mult"], d["attn_res"], d["res_blocks"], d["head_ch"],
                          d["classes"], 3, d["out_ch"]).eval().to(DEV)
    x = torch.randn(batch, 3, d["image"], d["image"], device=DEV)
    t = torch.randint(0, 1000, (batch,), device=DEV)
    y = torch.randint(0, d["classes"], (batch,), device=DEV)
    with torch.inference_mode(), autocast(precision):
        times = timed(lambda: net(x, t, y), warmup, iters)
    return record(config, "diffusion", batch, precision, times, 1.0, image=d["image"])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", choices=sorted(R.PRESETS), default="paper")
    ap.add_argument("--what", default="infer,train,diffusion")
    ap.add_argument("--precision", default="f32,bf16")
    ap.add_argument("--infer-batches", default="1,32")
    ap.add_argument("--iters", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--device", choices=("cuda", "cpu"), default="cuda",
                    help="cpu only to try this script where no GPU is")
    ap.add_argument("--channels-last", action="store_true", help="inference: model and input channels-last")
    ap.add_argument("--cudnn-benchmark", action="store_true", help="torch.backends.cudnn.benchmark = True")
    ap.add_argument("--profile", action="store_true", help="inference: print the top CUDA kernels")
    args = ap.parse_args()
    global DEV, CHANNELS_LAST, PROFILE
    DEV, CHANNELS_LAST, PROFILE = args.device, args.channels_last, args.profile
    torch.backends.cudnn.benchmark = args.cudnn_benchmark
    if DEV == "cuda" and not torch.cuda.is_available():
        print("error: this torch sees no CUDA device", file=sys.stderr)
        return 2
    p = R.PRESETS[args.config]
    for what in args.what.split(","):
        for precision in args.precision.split(","):
            if what == "infer":
                runs = [(infer, int(b)) for b in args.infer_batches.split(",")]
            elif what == "train":
                runs = [(train, p["train_batch"])]
            else:
                runs = [(diffusion, p["diffusion"]["batch"])]
            for fn, batch in runs:
                if DEV == "cuda":
                    torch.cuda.reset_peak_memory_stats()
                rec = fn(args.config, batch, precision, args.iters, args.warmup)
                print(json.dumps(rec), flush=True)
                if DEV == "cuda":
                    torch.cuda.empty_cache()
    return 0


if __name__ == "__main__":
    sys.exit(main())
