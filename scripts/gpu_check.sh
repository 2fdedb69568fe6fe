#!/usr/bin/env bash
# Issue #7 item 3 on a lent GPU machine, as ONE short run (the device tool gives ≈ 15 minutes a session;
# this takes ≈ 2 minutes of it):
# the paper configuration's inference (batch 1 and 32), training step and denoiser step on CUDA, plus
# what the machine is. Build here first (`cargo build --release`), then from the device tool:
#   mkdir -p .gpu && cp ../shared/bench/torch_reference.py .gpu/   # .gpu/ is git-ignored
#   run(command="scripts/gpu_check.sh $OUT", carry=["target/release/realnet", ".gpu"], timeout_s=420)
# The binary carries an rpath to this machine's venv; there the wheel's torch/lib (same torch 2.11)
# is put on LD_LIBRARY_PATH instead. Results: OUT/gpu.txt, OUT/paper-cuda.jsonl (our bench JSON lines)
# and OUT/reference-cuda.jsonl (the PyTorch peer on the same GPU, scripts/gpu_reference.py: same
# networks, f32 and bf16 autocast); docs/performance.md ("GPU") says how to read them.
set -uo pipefail
OUT="${1:-${OUT:-gpu-out}}"
mkdir -p "$OUT"
BIN="${BIN:-target/release/realnet}"
PY="$(command -v python3 || command -v python)"
TORCH_LIB="$("$PY" -c 'import os, torch; print(os.path.join(os.path.dirname(torch.__file__), "lib"))')" || {
  echo "error: no python with torch on this machine" >&2; exit 3; }
export LD_LIBRARY_PATH="$TORCH_LIB:${LD_LIBRARY_PATH:-}"
{
  date -u
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
  echo "torch lib: $TORCH_LIB"
  ldd "$BIN" | grep -E 'libtorch|libc10'
} >"$OUT/gpu.txt" 2>&1
# libtorch_cuda must really be linked, or "cuda" is refused and nothing below means anything.
if ! "$BIN" --device cuda bench --config small --what infer --iters 1 --warmup 1 --infer-batches 1 --json \
    >>"$OUT/gpu.txt" 2>&1; then
  echo "error: realnet cannot use CUDA here; see $OUT/gpu.txt" >&2
  exit 2
fi
: >"$OUT/paper-cuda.jsonl"
for what in "infer --infer-batches 1,32 --iters 20" "train --iters 10" "diffusion --iters 10"; do
  # shellcheck disable=SC2086
  timeout 100 "$BIN" --device cuda bench --config paper --what $what --json \
    | tee -a "$OUT/paper-cuda.jsonl"
done
# The issue's 1,000 images/s goal is for bf16 (its records carry "precision": "bf16").
timeout 100 "$BIN" --device cuda --precision bf16 bench --config paper --what infer \
  --infer-batches 1,32 --iters 20 --phases --json | tee -a "$OUT/paper-cuda.jsonl"
# The mixed-precision training step (bf16 passes, f32 master weights; records carry "precision").
timeout 100 "$BIN" --device cuda --precision bf16 bench --config paper --what train \
  --iters 10 --json | tee -a "$OUT/paper-cuda.jsonl"
# The denoiser step with bf16 weights (as `sdas sample --precision bf16`).
timeout 100 "$BIN" --device cuda --precision bf16 bench --config paper --what diffusion \
  --iters 10 --json | tee -a "$OUT/paper-cuda.jsonl"
# The PyTorch peer on the same GPU, when its source was carried.
if [ -f .gpu/torch_reference.py ]; then
  REF_DIR=.gpu timeout 180 "$PY" scripts/gpu_reference.py --config paper --what infer,train,diffusion \
    --iters 20 | tee "$OUT/reference-cuda.jsonl"
fi
