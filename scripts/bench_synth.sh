#!/usr/bin/env bash
# Side-by-side synthesis figures (docs/synthesis.md): Perlin coverage statistics of ours and of the
# Python generator in ../shared/bench/torch_reference.py, and single-thread throughput of both.
#   scripts/bench_synth.sh [N_MASKS=10000] [BENCH_SECONDS=5]
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(dirname "$here")"
n="${1:-10000}"
secs="${2:-5}"
py="${REALNET_PY:-$HOME/.cache/realnet/venv/bin/python}"
export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 MKL_NUM_THREADS=1 RAYON_NUM_THREADS=1
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$root/target}"
cd "$root"
cargo build --release -q -p realnet-synth --example synth_bench
bench="$CARGO_TARGET_DIR/release/examples/synth_bench"
echo "== Perlin mask coverage, $n masks each"
"$bench" stats "$n" 0
"$py" scripts/fixtures/synth_reference.py stats "$n" 0
echo "== throughput, one thread, ${secs}s per figure (ours, then python)"
"$bench" bench "$secs" "$root/../shared/textures"
"$py" scripts/fixtures/synth_reference.py bench "$secs"
