#!/usr/bin/env bash
# Speed of realnet-metrics vs the Python reference (../shared/bench/torch_reference.py --what metrics),
# both at ONE thread, run alternately ROUNDS times so that machine noise hits both alike.
#   scripts/bench_metrics.sh [ROUNDS=3]
# Env: CARGO_TARGET_DIR (default target), PY (default ~/.cache/realnet/venv/bin/python).
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS="${1:-3}"
PY="${PY:-$HOME/.cache/realnet/venv/bin/python}"
TARGET="${CARGO_TARGET_DIR:-target}"
REF="../shared/bench/torch_reference.py"
[ -f "$REF" ] || { echo "error: $REF not found (the shared bench folder sits next to the repo)" >&2; exit 3; }

cargo build --release -q -p realnet-metrics --example metrics_bench
BENCH="$TARGET/release/examples/metrics_bench"

py_s=(); rs_s=()
for r in $(seq 1 "$ROUNDS"); do
  py_json=$("$PY" "$REF" --what metrics --threads 1 --json 2>/dev/null | tail -n 1)
  rs_json=$(RAYON_NUM_THREADS=1 "$BENCH" --maps 83 --size 256 --iters 7 --json)
  p=$(echo "$py_json" | "$PY" -c 'import json,sys; print(json.load(sys.stdin)["median_s"])')
  q=$(echo "$rs_json" | "$PY" -c 'import json,sys; print(json.load(sys.stdin)["median_s"])')
  echo "round $r: python reference ${p} s, realnet-metrics ${q} s"
  echo "  python: $py_json"
  echo "  rust:   $rs_json"
  py_s+=("$p"); rs_s+=("$q")
done
"$PY" - "${py_s[*]}" "${rs_s[*]}" <<'PYEOF'
import statistics, sys
py = [float(x) for x in sys.argv[1].split()]
rs = [float(x) for x in sys.argv[2].split()]
mp, mr = statistics.median(py), statistics.median(rs)
print(f"median over {len(py)} rounds: python reference {mp:.3f} s, realnet-metrics {mr*1e3:.1f} ms "
      f"-> {mp / mr:.0f}x faster (1 thread each)")
PYEOF
