#!/usr/bin/env bash
# realnet's inference with libtorch's direct 3×3 convolutions (REALNET_CONV=direct) against the
# default (Winograd F(4,3) for the wide layers), alternating, ONE thread, one build: the A/B behind
# docs/performance.md's Winograd section. Prints one JSON line per measurement (with "conv" and
# "round") and a summary of the medians.
#   scripts/conv_ab.sh [CONFIG=paper] [ROUNDS=2] [-- extra bench flags, e.g. --infer-batches 1]
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(dirname "$here")"
cd "$root"
CONFIG="${1:-paper}"
ROUNDS="${2:-2}"
shift $(($# < 2 ? $# : 2))
[ "${1:-}" = "--" ] && shift
# shellcheck source=/dev/null
source "$here/env.sh"
cargo build --release -q --bin realnet
BIN="${CARGO_TARGET_DIR:-$root/target}/release/realnet"
OUT="$(mktemp)"
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
for r in $(seq 1 "$ROUNDS"); do
  for conv in direct winograd; do
    REALNET_CONV=$conv "$BIN" --threads 1 --device cpu bench --config "$CONFIG" --what infer --json "$@" \
      | sed "s/^{/{\"conv\": \"$conv\", \"round\": $r, /" | tee -a "$OUT"
  done
done
PY="${PY:-$HOME/.cache/realnet/venv/bin/python}"
"$PY" - "$OUT" <<'PYEOF'
import json, statistics, sys
recs = [json.loads(l) for l in open(sys.argv[1]) if l.startswith("{")]
for batch in sorted({r["batch"] for r in recs}):
    med = {c: statistics.median(r["median_s"] for r in recs if r["conv"] == c and r["batch"] == batch)
           for c in ("direct", "winograd")}
    rss = {c: max(r["peak_rss_mib"] for r in recs if r["conv"] == c and r["batch"] == batch)
           for c in ("direct", "winograd")}
    print(f"batch {batch}: direct {med['direct']:.4g} s, winograd {med['winograd']:.4g} s, "
          f"ratio {med['winograd'] / med['direct']:.3f}; peak RSS {rss['direct']:.0f} / {rss['winograd']:.0f} MiB")
PYEOF
rm -f "$OUT"
