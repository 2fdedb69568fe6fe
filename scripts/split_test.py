#!/usr/bin/env python3
"""Split a category's test set into a calibration half and an evaluation half (symlinks, nothing copied).

    scripts/split_test.py DATA CALIB_OUT EVAL_OUT [--fraction 0.5] [--seed 0]

Per test folder (good and each defect type) a seeded share `fraction` of the images goes to CALIB_OUT,
the rest to EVAL_OUT; masks follow their images; train/ is linked into both. Use it to measure
`realnet calibrate` honestly: calibrate on CALIB_OUT, report `realnet test --data EVAL_OUT`.
"""
import argparse, os, random

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("data"); ap.add_argument("calib"); ap.add_argument("eval")
    ap.add_argument("--fraction", type=float, default=0.5); ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    data = os.path.abspath(a.data)
    for out in (a.calib, a.eval):
        if os.path.exists(out):
            raise SystemExit(f"{out} exists; choose a new folder")
        os.makedirs(os.path.join(out, "test"))
        os.symlink(os.path.join(data, "train"), os.path.join(out, "train"))
    rng = random.Random(a.seed)
    for defect in sorted(os.listdir(os.path.join(data, "test"))):
        files = sorted(os.listdir(os.path.join(data, "test", defect)))
        rng.shuffle(files)
        k = round(len(files) * a.fraction)
        for out, part in ((a.calib, files[:k]), (a.eval, files[k:])):
            os.makedirs(os.path.join(out, "test", defect), exist_ok=True)
            for f in part:
                os.symlink(os.path.join(data, "test", defect, f), os.path.join(out, "test", defect, f))
                stem = os.path.splitext(f)[0]
                gt = os.path.join(data, "ground_truth", defect)
                for m in (sorted(os.listdir(gt)) if os.path.isdir(gt) else []):
                    if os.path.splitext(m)[0] in (stem, stem + "_mask"):
                        os.makedirs(os.path.join(out, "ground_truth", defect), exist_ok=True)
                        os.symlink(os.path.join(gt, m), os.path.join(out, "ground_truth", defect, m))
        print(f"{defect}: {k} calibration, {len(files) - k} evaluation")

if __name__ == "__main__":
    main()
