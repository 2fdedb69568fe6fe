#!/usr/bin/env python3
"""PatchCore-Lite2 (../shared/bench/patchcore_baseline.py, unchanged protocol) with its greedy coreset
replaced by the chunked one of realnet's `model.memory.coreset_chunk`: the patches (in image order) are cut
into equal consecutive chunks of at most CHUNK rows and each keeps the same share of its own rows.

    ~/.cache/realnet/venv/bin/python scripts/patchcore_chunked.py ../shared/data/magnetic_tile OUT \
        [--chunk 71000] [--ratio 0.1] [--threads 1] [--blur 4]

`--blur` replaces the maps' Gaussian σ (the peer's 4), as realnet's `model.memory.blur_sigma`.

Writes the peer's results JSON to OUT and its maps to OUT-maps (docs/results.md: 10 % in 11 chunks gave
0.974 / 0.834 / 0.720 / AP 0.331 on the tiles against the global 10 %'s 0.975 / 0.837 / 0.721 / 0.333,
coreset 463–482 s against about 41 min).
"""
import argparse
import math
import os
import sys

import numpy as np

BENCH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared", "bench")
sys.path.insert(0, BENCH)
import patchcore_baseline as P  # noqa: E402


def chunked(chunk):
    def select(z, n, start, log=None):
        rows = z.shape[0]
        share = n / rows
        k = max(1, math.ceil(rows / chunk))
        bounds = [rows * c // k for c in range(k + 1)]
        sel = []
        for a, b in zip(bounds[:-1], bounds[1:]):
            nc = min(b - a, math.ceil(share * (b - a)))
            first = start - a if a <= start < b else 0
            sel.append(P.greedy_coreset_plain(z[a:b], nc, first) + a)
        return np.concatenate(sel), dict(chunks=k)
    return select


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("data")
    ap.add_argument("out")
    ap.add_argument("--chunk", type=int, default=71000)
    ap.add_argument("--ratio", type=float, default=0.1)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--blur", type=float, default=4.0)
    a = ap.parse_args()
    P.greedy_coreset = chunked(a.chunk)
    blur = P.gaussian_blur
    P.gaussian_blur = lambda x, _sigma: blur(x, a.blur)
    weights = os.path.join(BENCH, "..", "weights")
    sys.argv = ["patchcore_baseline.py", "run", "--data", a.data, "--name", os.path.basename(a.data.rstrip("/")),
                "--backbone", "lite2", "--weights-dir", weights, "--out", a.out, "--threads", str(a.threads),
                "--ratio", str(a.ratio), "--save-maps", a.out + "-maps"]
    P.main()


if __name__ == "__main__":
    main()
