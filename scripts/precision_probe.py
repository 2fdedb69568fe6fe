#!/usr/bin/env python3
"""Does bf16, channels-last or fused attention pay on this CPU? Times the PyTorch reference's RealNet inference
(../shared/bench/torch_reference.py, random weights) at one thread in five variants, alternating
rounds, and prints medians and the ratio to f32/NCHW. realnet runs the same libtorch kernels, so
this decides whether a bf16 / channels-last path is worth building for CPU inference.

    ~/.cache/realnet/venv/bin/python scripts/precision_probe.py [small|paper] [BATCH] [ROUNDS]
"""
import os
import statistics
import sys
import time

import torch

here = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.environ.get("REF_DIR", os.path.join(here, "..", "..", "shared", "bench")))
import torch_reference as R  # noqa: E402

torch.set_num_threads(1)
cfg = sys.argv[1] if len(sys.argv) > 1 else "small"
batch = int(sys.argv[2]) if len(sys.argv) > 2 else 1
rounds = int(sys.argv[3]) if len(sys.argv) > 3 else 3
torch.manual_seed(0)
f32 = R.RealNet(cfg, "builtin", 0).eval()
bf16 = R.RealNet(cfg, "builtin", 0).eval().to(torch.bfloat16)
x = torch.randn(batch, 3, 256, 256)


def timed(fn, iters=4):
    fn()
    ts = []
    for _ in range(iters):
        t = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t)
    return statistics.median(ts)


def autocast(model, inp):
    with torch.autocast("cpu", dtype=torch.bfloat16):
        return model(inp)


def sdpa(model, inp):
    R.ATTN_IMPL = "sdpa"  # F.scaled_dot_product_attention instead of bmm + softmax
    try:
        return model(inp)
    finally:
        R.ATTN_IMPL = "matmul"


variants = {
    "f32 NCHW": lambda: f32.to(memory_format=torch.contiguous_format)(x),
    "f32 channels-last": lambda: f32.to(memory_format=torch.channels_last)(
        x.to(memory_format=torch.channels_last)),
    "f32 sdpa attention": lambda: sdpa(f32.to(memory_format=torch.contiguous_format), x),
    "bf16 autocast": lambda: autocast(f32.to(memory_format=torch.contiguous_format), x),
    "bf16 weights": lambda: bf16.to(memory_format=torch.contiguous_format)(x.to(torch.bfloat16)),
    # With AMX, oneDNN's bf16 kernels want NHWC; NCHW input costs a reorder per convolution.
    "bf16 weights channels-last": lambda: bf16.to(memory_format=torch.channels_last)(
        x.to(torch.bfloat16).to(memory_format=torch.channels_last)),
}
with torch.inference_mode():
    ref = f32(x)[0]
    err = {
        "f32 sdpa attention": (sdpa(f32, x)[0] - ref).abs().max().item(),
        "bf16 autocast": (autocast(f32, x)[0].float() - ref).abs().max().item(),
        "bf16 weights": (bf16(x.to(torch.bfloat16))[0].float() - ref).abs().max().item(),
    }
    err["bf16 weights channels-last"] = err["bf16 weights"]
    res = {k: [] for k in variants}
    for _ in range(rounds):
        for k, fn in variants.items():
            res[k].append(timed(fn))
flags = [f for f in ("avx512_bf16", "amx_bf16") if f in open("/proc/cpuinfo").read()]
print(f"# {cfg} batch {batch}, {rounds} rounds, 1 thread, torch {torch.__version__}, cpu flags: {flags}")
base = statistics.median(res["f32 NCHW"])
print("| variant | median s/batch | ratio to f32 NCHW | max |map − f32 map| |")
print("| --- | --- | --- | --- |")
for k, v in res.items():
    m = statistics.median(v)
    print(f"| {k} | {m:.3f} | {m / base:.2f} | {err.get(k, 0.0):.4f} |")
