#!/usr/bin/env python3
"""Where do a method's anomaly maps go wrong? Reads `.npy` maps written by `realnet test --maps-out`
(or any method's maps in the same DIR/<defect>/<stem>.npy layout) and the category's masks, and prints:
the threshold at the 99th percentile of normal pixels, how many normal pixels above it lie in good
images vs in defective ones, how far those in defective images are from the defect, and the recall of
defect pixels at that threshold. With --sheet it writes a contact sheet: image | mask | maps (each map
scaled to its own 99.9th percentile) for the chosen defect type.

    ~/.cache/realnet/venv/bin/python scripts/map_diagnosis.py --data ../shared/data/mvtec_ad/bottle \
        --maps runs/bottle-1600-maps [--other patchcore-maps] [--sheet sheet.png --defect contamination]
"""
import argparse
import os

import numpy as np
from PIL import Image
from scipy.ndimage import distance_transform_edt


def load_maps(root):
    out = {}
    for defect in sorted(os.listdir(root)):
        if not os.path.isdir(os.path.join(root, defect)):
            continue
        for f in sorted(os.listdir(os.path.join(root, defect))):
            if f.endswith(".npy"):
                m = np.load(os.path.join(root, defect, f)).astype(np.float32)
                out[(defect, f[:-4])] = m.reshape(m.shape[-2], m.shape[-1])
    return out


def mask_of(data, defect, stem, shape):
    if defect == "good":
        return np.zeros(shape, bool)
    img = Image.open(os.path.join(data, "ground_truth", defect, f"{stem}_mask.png")).convert("L")
    return np.array(img.resize(shape[::-1], Image.NEAREST)) > 0


def diagnose(maps, data):
    keys = sorted(maps)
    masks = {k: mask_of(data, k[0], k[1], maps[k].shape) for k in keys}
    normal = np.concatenate([maps[k][~masks[k]] for k in keys])
    thr = float(np.percentile(normal, 99))
    fp_good = sum(int((maps[k] > thr).sum()) for k in keys if k[0] == "good")
    dist, tp, pos = [], 0, 0
    for k in keys:
        if k[0] == "good":
            continue
        g, m = masks[k], maps[k]
        d = distance_transform_edt(~g)
        dist.append(d[(m > thr) & ~g])
        tp += int((m[g] > thr).sum())
        pos += int(g.sum())
    dist = np.concatenate(dist) if dist else np.zeros(0)
    print(f"threshold (99th percentile of normal pixels): {thr:.4f}")
    print(f"normal pixels above it: {fp_good} in good images, {dist.size} in defective images")
    if dist.size:
        print(f"  distance to the defect: median {np.median(dist):.1f} px, "
              f"< 8 px {np.mean(dist < 8):.0%}, < 16 px {np.mean(dist < 16):.0%}")
    print(f"defect pixels above it (recall): {tp / max(pos, 1):.1%}")
    return masks


def sheet(path, data, defect, maps_list, masks, every=3):
    rows = []
    stems = sorted(s for (d, s) in masks if d == defect)[::every]
    for stem in stems:
        first = maps_list[0][(defect, stem)]
        size = first.shape[::-1]
        img = Image.open(os.path.join(data, "test", defect, f"{stem}.png")).convert("RGB").resize(size)
        cols = [np.array(img), np.repeat(masks[(defect, stem)][..., None] * 255, 3, -1).astype(np.uint8)]
        for maps in maps_list:
            m = maps[(defect, stem)]
            m = np.clip(m / max(np.percentile(m, 99.9), 1e-12), 0, 1)
            cols.append(np.repeat((m * 255).astype(np.uint8)[..., None], 3, -1))
        rows.append(np.concatenate(cols, 1))
    Image.fromarray(np.concatenate(rows, 0)).save(path)
    print(f"wrote {path} ({len(rows)} rows: image | mask | " + " | ".join(["maps"] * len(maps_list)) + ")")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", required=True, help="category folder (test/, ground_truth/)")
    ap.add_argument("--maps", required=True, help="DIR/<defect>/<stem>.npy")
    ap.add_argument("--other", help="a second method's maps, shown next to the first on the sheet")
    ap.add_argument("--sheet", help="write a contact sheet PNG here")
    ap.add_argument("--defect", default=None, help="defect type for the sheet (default: the first)")
    a = ap.parse_args()
    maps = load_maps(a.maps)
    if not maps:
        raise SystemExit(f"error: no .npy maps under {a.maps}")
    masks = diagnose(maps, a.data)
    if a.sheet:
        maps_list = [maps] + ([load_maps(a.other)] if a.other else [])
        defect = a.defect or next(d for (d, _) in sorted(maps) if d != "good")
        sheet(a.sheet, a.data, defect, maps_list, masks)


if __name__ == "__main__":
    main()
