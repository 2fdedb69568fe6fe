"""Contact sheet of SDAS samples: one row per strength, the same indices (same start noise) in each row.

Reads folders written by `realnet sdas sample --count N --strength S..S --out DIR/s=<S>` (one per
strength), takes the first N images of each, and writes one PNG with a strength label per row.

    for s in 0 0.1 0.2 0.3; do
      realnet sdas sample --model runs/sdas-bottle --category bottle --count 8 \\
          --strength $s..$s --out sheet/s=$s
    done
    ~/.cache/realnet/venv/bin/python scripts/sdas_sheet.py --category bottle --out docs/sheet.png \\
        sheet/s=0 sheet/s=0.1 sheet/s=0.2 sheet/s=0.3
"""
import argparse
import os

from PIL import Image, ImageDraw


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("rows", nargs="+", help="one sample folder per strength, named …/s=<S>")
    ap.add_argument("--category", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--count", type=int, default=8)
    ap.add_argument("--tile", type=int, default=128, help="pixels per sample on the sheet")
    a = ap.parse_args()
    t, pad, label_w = a.tile, 8, 72
    sheet = Image.new("RGB", (label_w + a.count * (t + pad), len(a.rows) * (t + pad)), "white")
    draw = ImageDraw.Draw(sheet)
    for r, folder in enumerate(a.rows):
        d = os.path.join(folder, a.category)
        files = sorted((f for f in os.listdir(d) if f.endswith(".png")), key=lambda f: int(f.split(".")[0]))
        if len(files) < a.count:
            raise SystemExit(f"{d}: {len(files)} samples, need {a.count} (run sdas sample with --count {a.count})")
        y = r * (t + pad)
        draw.text((8, y + t // 2 - 6), os.path.basename(folder.rstrip("/")), fill="black")
        for c, f in enumerate(files[: a.count]):
            img = Image.open(os.path.join(d, f)).convert("RGB").resize((t, t), Image.NEAREST)
            sheet.paste(img, (label_w + c * (t + pad), y))
    sheet.save(a.out)
    print(f"wrote {a.out}: {len(a.rows)} strengths × {a.count} samples")


if __name__ == "__main__":
    main()
