#!/usr/bin/env python3
"""Probe: the patch memory's map on a finer grid by test-time shifts, on the peer's protocol (its
backbone, features, σ 4 blur; a 10 % coreset chunked as `patchcore_chunked.py`) — test set, so for
understanding only.

The peer's map is a 32×32 grid of nearest-neighbour distances (stride 8) upsampled to 256². Embedding
the test image shifted by ±2 px in each direction gives four grids whose cells sit at the centres of a
64×64 grid's cells (stride 4); interleaved they make that grid from the same bank.

    ~/.cache/realnet/venv/bin/python scripts/subgrid_probe.py ../shared/data/magnetic_tile OUT [--ratio 0.1]

OUT caches features, the bank and the distance grids. Measured 2026-12-02 (docs/results.md, "A finer
grid for the memory's map"): test grids 2073 s at one thread; 32×32 σ 4 0.9743 / 0.8339 / 0.7195 / AP
0.3307, 64×64 σ 4 0.9754 / 0.8356 / 0.7291 / 0.3335, 64×64 σ 2 0.9724 / 0.8325 / 0.7266 / 0.3299; bottle: 32×32 σ 4 1.000 / 0.9823 / 0.9339 / 0.7348, 64×64
σ 4 1.000 / 0.9822 / 0.9339 / 0.7370, σ 2 1.000 / 0.9824 / 0.9363 / 0.7416.
"""
import argparse, json, math, os, sys, time
import numpy as np, torch, torch.nn.functional as F
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "shared", "bench"))
import patchcore_baseline as P, ad_metrics as M
sys.path.insert(0, HERE)
from patchcore_chunked import chunked

ap = argparse.ArgumentParser()
ap.add_argument("data")
ap.add_argument("out")
ap.add_argument("--ratio", type=float, default=0.1)
ap.add_argument("--chunk", type=int, default=71000)
A = ap.parse_args()
os.makedirs(A.out, exist_ok=True)
torch.set_num_threads(int(os.environ.get("TH", "2")))
model = P.load_backbone("lite2", os.path.join(HERE, "..", "..", "shared", "weights"))
train, test = P.list_dataset(A.data)
FINE = [(-2, -2), (-2, 2), (2, -2), (2, 2)]  # (dy, dx) in pixels
SHIFTS = [(0, 0)] + FINE


def shifted(x, dy, dx):
    """x[u + dy, v + dx], edges replicated: the centre of cell (i, j) of its grid, 8i + 4 + dy, is
    the centre 4k + 2 of fine cell k = 2i + (dy + 2) / 4."""
    if dy == dx == 0:
        return x
    p = 2
    h, w = x.shape[-2:]
    return F.pad(x, (p, p, p, p), mode="replicate")[..., p + dy:p + dy + h, p + dx:p + dx + w]


def cached(name, make):
    f = os.path.join(A.out, name)
    if os.path.exists(f):
        return torch.load(f)
    v = make()
    torch.save(v, f)
    return v


def rows(e):
    return e.permute(0, 2, 3, 1).reshape(-1, e.shape[1]).contiguous()


@torch.no_grad()
def train_rows():
    out = []
    for i in range(0, len(train), 8):
        out.append(rows(P.embed(model, P.to_tensor([P.load_image(p) for p in train[i:i + 8]]))))
    return torch.cat(out)


@torch.no_grad()
def make_bank():
    x = cached("train.pt", train_rows)
    n = int(math.ceil(A.ratio * x.shape[0]))
    z = P.random_projection(x, 128, 0)
    start = int(torch.randint(x.shape[0], (1,), generator=torch.Generator().manual_seed(1)))
    t = time.time()
    nth = torch.get_num_threads(); torch.set_num_threads(1)
    idx, _ = chunked(A.chunk)(z, n, start)
    torch.set_num_threads(nth)
    print("bank", n, "of", x.shape[0], round(time.time() - t), "s", flush=True)
    return x[torch.from_numpy(idx)].contiguous()


def nn(q, b):
    bb = (b * b).sum(1)
    out = []
    for i in range(0, q.shape[0], 4096):
        qq = q[i:i + 4096]
        d = torch.addmm(bb[None], qq, b.t(), alpha=-2).min(1).values + (qq * qq).sum(1)
        out.append(d.clamp_min(0).sqrt())
    return torch.cat(out)


bank = cached("bank-%g.pt" % A.ratio, make_bank)


@torch.no_grad()
def test_grids():
    g = {s: [] for s in SHIFTS}
    t = time.time()
    for i in range(0, len(test), 8):
        x = P.to_tensor([P.load_image(t_["path"]) for t_ in test[i:i + 8]])
        for s in SHIFTS:
            e = P.embed(model, shifted(x, *s))
            g[s].append(nn(rows(e), bank).view(e.shape[0], 32, 32))
    print("test grids", round(time.time() - t), "s", flush=True)
    return {s: torch.cat(v) for s, v in g.items()}


grids = cached("grids-%g.pt" % A.ratio, test_grids)
masks = [P.load_mask(t["mask"]) for t in test]
labels = [t["label"] for t in test]
fine = torch.zeros(len(test), 64, 64)
for dy, dx in FINE:
    fine[:, (dy + 2) // 4::2, (dx + 2) // 4::2] = grids[(dy, dx)]


def evaluate(grid, sigma, tag):
    m = F.interpolate(grid[:, None], size=(256, 256), mode="bilinear", align_corners=False)
    m = P.gaussian_blur(m, sigma)[:, 0].numpy()
    maps = list(m)
    r = dict(image_auroc=M.image_auroc([float(x.max()) for x in maps], labels),
             pixel_auroc=M.pixel_auroc(maps, masks), aupro=M.aupro(maps, masks, 0.3),
             pixel_ap=M.pixel_ap(maps, masks))
    print(tag, json.dumps({k: round(v, 4) for k, v in r.items()}), flush=True)
    return r


res = {"32x32 sigma 4 (the peer's)": evaluate(grids[(0, 0)], 4.0, "32x32 sigma 4")}
for s in [2.0, 4.0]:
    res["64x64 sigma %g" % s] = evaluate(fine, s, "64x64 sigma %g" % s)
json.dump(res, open(os.path.join(A.out, "res.json"), "w"), indent=1)
