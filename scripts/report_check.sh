#!/usr/bin/env bash
# Browser check of the HTML report (`realnet test --report`): makes a report, opens it in headless
# Chromium with every network request refused, fails on console errors, on a missing plot or picture,
# or on any non-`data:` image, and takes a screenshot.
#
#   scripts/report_check.sh [OUT]                  # a synthetic sample page (no model, no libtorch)
#   REPORT_RUN=runs/bottle [REPORT_DATA=path/to/bottle] scripts/report_check.sh [OUT]
#                                                  # a trained model's report (realnet test --report)
#   REPORT_HTML=path/to/report.html scripts/report_check.sh [OUT]   # an existing page
#
# Writes OUT/report.html (unless REPORT_HTML), OUT/dom.html (the DOM after loading), OUT/chromium.log,
# OUT/screenshot.png (1280×2000 window).
# Installs Debian's chromium when it is missing (needs root and the Debian archive).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(dirname "$here")"
out="${1:-$(mktemp -d)}"
mkdir -p "$out"
out="$(cd "$out" && pwd)"

if ! command -v chromium >/dev/null 2>&1; then
    echo "report_check: installing chromium" >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
fi

if [[ -n "${REPORT_HTML:-}" ]]; then
    html="$(realpath "$REPORT_HTML")"
elif [[ -n "${REPORT_RUN:-}" ]]; then
    source "$here/env.sh"
    bin="${REALNET_BIN:-$root/target/release/realnet}"
    data_args=()
    [[ -n "${REPORT_DATA:-}" ]] && data_args=(--data "$REPORT_DATA")
    "$bin" test --run "$REPORT_RUN" "${data_args[@]}" --report "$out" --json >"$out/metrics.json"
    html="$out/report.html"
else
    source "$here/env.sh"
    (cd "$root" && cargo run -q -p realnet-report --example sample_report -- "$out/report.html" >/dev/null)
    html="$out/report.html"
fi
[[ -s "$html" ]] || { echo "report_check: $html missing or empty" >&2; exit 1; }

profile="$(mktemp -d)"
trap 'rm -rf "$profile"' EXIT
flags=(--headless --no-sandbox --disable-gpu --disable-quic --no-first-run
    --disable-background-networking --disable-component-update --disable-sync
    --user-data-dir="$profile"
    # the page must need no network: every host name fails to resolve
    --host-resolver-rules="MAP * ~NOTFOUND")
url="file://$html"

# 1. Load the page, log the console, dump the DOM.
chromium "${flags[@]}" --enable-logging=stderr --v=0 --dump-dom "$url" \
    >"$out/dom.html" 2>"$out/chromium.log"

fail=0
if grep -E "CONSOLE|Uncaught|net::ERR_|Failed to load|Not allowed to load" "$out/chromium.log" >&2; then
    echo "report_check: console errors or failed loads (above; full log $out/chromium.log)" >&2
    fail=1
fi
n_svg=$(grep -o "<svg" "$out/dom.html" | wc -l)
n_plot=$(grep -o '<figure class="plot"' "$out/dom.html" | wc -l)
n_img=$(grep -o "<img " "$out/dom.html" | wc -l)
n_data=$(grep -o '<img src="data:image/png;base64,' "$out/dom.html" | wc -l)
echo "report_check: $n_plot plots, $n_svg svg elements, $n_img images ($n_data data: URIs), $(wc -c <"$html") bytes"
if ((n_plot != 3 || n_svg < 1)); then
    echo "report_check: expected 3 plot figures" >&2
    fail=1
fi
if ((n_img == 0 || n_img != n_data)); then
    echo "report_check: every <img> must be a data:image/png URI (and there must be some)" >&2
    fail=1
fi
if grep -Eq "(src|href)=\"(https?:|//)" "$out/dom.html"; then
    echo "report_check: the page references the network" >&2
    fail=1
fi

# 2. The screenshot.
chromium "${flags[@]}" --hide-scrollbars --window-size=1280,2000 \
    --screenshot="$out/screenshot.png" "$url" 2>>"$out/chromium.log"
[[ -s "$out/screenshot.png" ]] || { echo "report_check: no screenshot" >&2; fail=1; }
echo "report_check: screenshot $out/screenshot.png"
if ((fail)); then
    echo "report_check: FAILED" >&2
    exit 1
fi
echo "report_check: ok"
