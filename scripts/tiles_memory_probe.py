#!/usr/bin/env python3
"""Probes of the patch memory alone on Magnetic Tile, on the peer's protocol (its backbone, features,
10 % coreset chunked as `patchcore_chunked.py`, σ 4 blur), with the test set — for understanding
only, nothing here is chosen for realnet from these figures (docs/results.md, nineteenth session):

  * banks: `id` = the training images' patches (the peer's), `hv` = also those of their horizontal and
    vertical mirror images (a third of the share each, so the same bank size and coreset cost);
  * test-time: the map of the image alone, the mean or the minimum over the image and its two mirrors,
    3 nearest neighbours instead of 1;
  * on the `id` bank's map: per-image normalisation, other image-score statistics, wider blurs.

    ~/.cache/realnet/venv/bin/python scripts/tiles_memory_probe.py OUT [--banks id,hv]

OUT caches the features (≈ 2.3 GB), banks and distance grids, so a rerun only evaluates. Pixel AUROC
here is on every 4th row and column (`pixel_auroc_sub`); about 45 minutes with both banks on 2 cores.
"""
import argparse
import math, os, sys, time, json
import numpy as np, torch, torch.nn.functional as F
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "shared", "bench"))
import patchcore_baseline as P, ad_metrics as M
sys.path.insert(0, HERE)
from patchcore_chunked import chunked

ap = argparse.ArgumentParser()
ap.add_argument("out")
ap.add_argument("--banks", default="id,hv")
A = ap.parse_args()
OUT = A.out
os.makedirs(OUT, exist_ok=True)
torch.set_num_threads(int(os.environ.get("TH", "2")))
data = os.path.join(HERE, "..", "..", "shared", "data", "magnetic_tile")
model = P.load_backbone("lite2", os.path.join(HERE, "..", "..", "shared", "weights"))
train, test = P.list_dataset(data)
FLIPS = {"id": lambda x: x, "h": lambda x: x.flip(-1), "v": lambda x: x.flip(-2)}

def feats(paths, name):
    f = os.path.join(OUT, name + ".npy")
    if os.path.exists(f):
        return torch.from_numpy(np.load(f))
    out = {k: [] for k in FLIPS}
    for i in range(0, len(paths), 8):
        x = P.to_tensor([P.load_image(p) for p in paths[i:i + 8]])
        for k, fl in FLIPS.items():
            e = P.embed(model, fl(x))
            out[k].append(fl(e))  # back to the image's orientation: patch (i,j) of the flipped image sits there
    a = torch.stack([torch.cat(out[k]) for k in FLIPS])  # (3, N, C, 32, 32)
    np.save(f, a.numpy())
    return a

t0 = time.time()
tr = feats(train, "train")
te = feats([t["path"] for t in test], "test")
print("features", tr.shape, te.shape, round(time.time() - t0), "s", flush=True)
C = tr.shape[2]
def rows(a):  # (N,C,32,32) -> (N*1024, C)
    return a.permute(0, 2, 3, 1).reshape(-1, C).contiguous()

def bank(variants, ratio, name):
    f = os.path.join(OUT, name + ".pt")
    if os.path.exists(f):
        return torch.load(f)
    x = torch.cat([rows(tr[v]) for v in variants])
    n = int(math.ceil(ratio * x.shape[0]))
    z = P.random_projection(x, 128, 0)
    start = int(torch.randint(x.shape[0], (1,), generator=torch.Generator().manual_seed(1)))
    t = time.time()
    nth = torch.get_num_threads(); torch.set_num_threads(1)
    idx, _ = chunked(71000)(z, n, start)
    torch.set_num_threads(nth)
    b = x[torch.from_numpy(idx)].contiguous()
    print(name, "bank", b.shape, round(time.time() - t), "s", flush=True)
    torch.save(b, f)
    return b

def nn(q, b, k=1):
    bb = (b * b).sum(1)
    out = []
    for i in range(0, q.shape[0], 4096):
        qq = q[i:i + 4096]
        d = torch.addmm(bb[None], qq, b.t(), alpha=-2)  # |b|^2 - 2 q.b
        v = d.topk(k, dim=1, largest=False).values + (qq * qq).sum(1, keepdim=True)
        out.append(v.clamp_min(0).sqrt())
    return torch.cat(out)  # (Q, k)

def grids(b, name, k=3):
    f = os.path.join(OUT, name + "-grid.pt")
    if os.path.exists(f):
        return torch.load(f)
    t = time.time()
    g = torch.stack([nn(rows(te[v]), b, k) for v in range(3)])  # (3, Q, k) in image orientation
    g = g.view(3, te.shape[1], 32, 32, k)
    print(name, "search", round(time.time() - t), "s", flush=True)
    torch.save(g, f)
    return g

masks = [P.load_mask(t["mask"]) for t in test]
labels = [t["label"] for t in test]
def evaluate(grid, tag, full=False):  # grid (N,32,32)
    m = F.interpolate(grid[:, None], size=(256, 256), mode="bilinear", align_corners=False)
    m = P.gaussian_blur(m, 4.0)[:, 0].numpy()
    maps = list(m)
    s = [float(x.max()) for x in maps]
    if full:
        r = dict(image_auroc=M.image_auroc(s, labels), pixel_auroc=M.pixel_auroc(maps, masks),
                 aupro=M.aupro(maps, masks, 0.3), pixel_ap=M.pixel_ap(maps, masks))
    else:
        sub = [x[::4, ::4] for x in maps]; sm = [x[::4, ::4] for x in masks]
        r = dict(image_auroc=M.image_auroc(s, labels), pixel_auroc_sub=M.pixel_auroc(sub, sm))
    print(tag, json.dumps({k: round(v, 4) for k, v in r.items()}), flush=True)
    return r

res = {}
BANKS = {"id": ("b-id", [0], 0.1), "hv": ("b-hv", [0, 1, 2], 0.1 / 3)}
for bname, variants, ratio in [BANKS[b] for b in A.banks.split(",")]:
    b = bank(variants, ratio, bname)
    g = grids(b, bname)
    res[bname + " tta-none k1"] = evaluate(g[0, ..., 0], bname + " tta-none k1")
    res[bname + " tta-none k3"] = evaluate(g[0].mean(-1), bname + " tta-none k3")
    res[bname + " tta-hv k1"] = evaluate(g[..., 0].mean(0), bname + " tta-hv k1")
    res[bname + " tta-hv-min k1"] = evaluate(g[..., 0].min(0).values, bname + " tta-hv-min k1")

# On the `id` bank's plain map: what the image's own level, the image score and the blur do.
g = grids(bank([0], 0.1, "b-id"), "b-id")[0, ..., 0]
up = F.interpolate(g[:, None], size=(256, 256), mode="bilinear", align_corners=False)
m = P.gaussian_blur(up, 4.0)[:, 0]
flat = m.flatten(1)
sm = [x[::4, ::4] for x in masks]
def pix(maps):
    return round(M.pixel_auroc([x[::4, ::4] for x in maps.numpy()], sm), 4)
def img(s):
    return round(M.image_auroc(s.tolist(), labels), 4)
for q in [0.1, 0.5]:
    med = flat.quantile(q, dim=1)[:, None, None]
    print("map minus its quantile", q, "image", img((m - med).flatten(1).max(1).values), "pixel", pix(m - med))
for q in [0.5, 0.9, 0.99]:
    print("image score: quantile", q, img(flat.quantile(q, dim=1)))
print("image score: mean", img(flat.mean(1)))
for k in [16, 32]:
    print("image score: max of the %dx%d mean-pooled map" % (k, k), img(F.avg_pool2d(m[:, None], k, 1).flatten(1).max(1).values))
for s in [8, 16, 32]:
    print("blur sigma", s, "pixel", pix(P.gaussian_blur(up, float(s))[:, 0]))
json.dump(res, open(os.path.join(OUT, "res.json"), "w"), indent=1)
