#!/usr/bin/env bash
# realnet vs the PyTorch reference (../shared/bench/torch_reference.py), side by side, ONE thread each,
# run alternately (reference, realnet, reference, realnet, …) so that the noise of a shared machine
# hits both alike. Prints one markdown table: medians over the rounds of each side's median, the
# minima, the peak RSS, and the ratio realnet / reference (< 1: realnet is faster / smaller).
#   scripts/bench.sh [CONFIG=small] [WHAT=all] [ROUNDS=3] [-- extra flags for both, e.g. --iters 2]
# Env: PY (default ~/.cache/realnet/venv/bin/python), REF (the reference script), PRECISION (realnet's
#      precision for infer, train and diffusion, f32 or bf16; default f32 — the reference always runs f32),
#      CARGO_TARGET_DIR (default target), OUT (raw JSON lines; default target/bench/<config>-<what>.jsonl).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(dirname "$here")"
cd "$root"
CONFIG="${1:-small}"
WHAT="${2:-all}"
ROUNDS="${3:-3}"
shift $(($# < 3 ? $# : 3))
[ "${1:-}" = "--" ] && shift
EXTRA=("$@")
PY="${PY:-$HOME/.cache/realnet/venv/bin/python}"
REF="${REF:-$root/../shared/bench/torch_reference.py}"
[ -f "$REF" ] || { echo "error: torch_reference.py not found (set REF)" >&2; exit 3; }
TARGET="${CARGO_TARGET_DIR:-$root/target}"
OUT="${OUT:-$TARGET/bench/$CONFIG-$WHAT.jsonl}"
mkdir -p "$(dirname "$OUT")"
: >"$OUT"

# shellcheck source=/dev/null
source "$here/env.sh"
cargo build --release -q --bin realnet
BIN="$TARGET/release/realnet"
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 RAYON_NUM_THREADS=1

ref_what="$WHAT"
[ "$WHAT" = synth ] && ref_what=perlin
echo "# $(date -u '+%Y-%m-%d %H:%M UTC')  $(getconf _NPROCESSORS_ONLN) CPUs  load average: $(cut -d' ' -f1-3 /proc/loadavg)  realnet precision: ${PRECISION:-f32}" >&2
for r in $(seq 1 "$ROUNDS"); do
  echo "== round $r/$ROUNDS: reference (load $(cut -d' ' -f1 /proc/loadavg))" >&2
  "$PY" "$REF" --config "$CONFIG" --what "$ref_what" --threads 1 --no-probe --json "${EXTRA[@]}" \
    | sed "s/^{/{\"side\": \"reference\", \"round\": $r, /" | tee -a "$OUT" >&2
  echo "== round $r/$ROUNDS: realnet (load $(cut -d' ' -f1 /proc/loadavg))" >&2
  "$BIN" --threads 1 --device cpu --precision "${PRECISION:-f32}" bench --config "$CONFIG" --what "$WHAT" --json "${EXTRA[@]}" \
    | sed "s/^{/{\"side\": \"realnet\", \"round\": $r, /" | tee -a "$OUT" >&2
done
echo "# done $(date -u '+%H:%M UTC'), load average: $(cut -d' ' -f1-3 /proc/loadavg); raw: $OUT" >&2

"$PY" - "$OUT" <<'PYEOF'
import json, statistics, sys
recs = [json.loads(l) for l in open(sys.argv[1]) if l.startswith("{")]
def key(r):
    w = r["what"]
    return (w, r["batch"])
groups = {}
for r in recs:
    groups.setdefault((r["side"],) + key(r), []).append(r)
rows = []
order = []
for r in recs:
    k = key(r)
    if k not in order:
        order.append(k)
def agg(side, k):
    g = groups.get((side,) + k)
    if not g:
        return None
    return (statistics.median(x["median_s"] for x in g), min(x["min_s"] for x in g),
            statistics.median(x.get("peak_rss_mib", 0) for x in g), len(g), g[0]["unit"])
print(f"| measurement | batch | unit | reference median (min) | realnet median (min) | realnet / reference "
      f"| peak RSS ref / ours (MiB) | rounds |")
print("| --- | --- | --- | --- | --- | --- | --- | --- |")
for w, b in order:
    ours = agg("realnet", (w, b))
    ref_k = ("train", b) if w == "train_cached" else (w, b)
    ref = agg("reference", ref_k)
    if ref is None and w == "perlin":
        ref = agg("reference", ("perlin", b))
    def fmt(a):
        return "–" if a is None else f"{a[0]:.4g} ({a[1]:.4g})"
    ratio = f"{ours[0] / ref[0]:.3f}" if ours and ref else "–"
    rss = f"{ref[2]:.0f} / {ours[2]:.0f}" if ours and ref else (f"– / {ours[2]:.0f}" if ours else f"{ref[2]:.0f} / –")
    unit = (ours or ref)[4]
    label = w + (" (vs reference train)" if w == "train_cached" else "")
    n = max((ours or (0, 0, 0, 0))[3], (ref or (0, 0, 0, 0))[3])
    if ref is None and ours is None:
        continue
    print(f"| {label} | {b} | {unit} | {fmt(ref)} | {fmt(ours)} | {ratio} | {rss} | {n} |")
PYEOF
