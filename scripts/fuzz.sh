#!/usr/bin/env bash
# Runs the cargo-fuzz targets one after another, SECONDS each (default 600), and prints one line per
# target: runs, coverage, and whether libFuzzer found a crash (its input then lies in
# fuzz/artifacts/<target>/). Needs `cargo install cargo-fuzz` and the nightly toolchain.
#   scripts/fuzz.sh [SECONDS] [TARGET...]      (default: every target in fuzz/Cargo.toml)
set -uo pipefail
cd "$(dirname "$0")/../fuzz"
source ../scripts/env.sh
secs="${1:-600}"; shift || true
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  mapfile -t targets < <(sed -n 's/^name = "\(.*\)"/\1/p' Cargo.toml | grep -v realnet-fuzz)
fi
# The config, http and safetensors targets link libtorch from the virtualenv.
torch_lib=$(echo "$REALNET_VENV"/lib/python3*/site-packages/torch/lib)
export LD_LIBRARY_PATH="$torch_lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
status=0
for t in "${targets[@]}"; do
  mkdir -p "corpus/$t"
  log="$(mktemp -t "fuzz-$t.XXXX.log")"
  cargo +nightly fuzz run -O "$t" "corpus/$t" "seeds/$t" -- \
    -max_total_time="$secs" -rss_limit_mb=2048 -max_len=65536 >"$log" 2>&1
  rc=$?
  done_line=$(grep -E '^Done [0-9]+ runs' "$log" | tail -1)
  cov=$(grep -oE 'cov: [0-9]+' "$log" | tail -1)
  if [ $rc -eq 0 ]; then
    echo "$t: ${done_line:-no summary}, $cov, no crash"
  else
    echo "$t: FAILED (exit $rc), $cov; log $log; inputs in fuzz/artifacts/$t/"
    status=1
  fi
done
exit $status
