"""Two methods' pairs of one benchmark or export side by side: the same normal image and mask in each row.
    python -m tools.pair_sheet PAIRS_A LABEL_A PAIRS_B LABEL_B OUT.png [--types uneven,fray] [--rows 4]
PAIRS_A / PAIRS_B: folders under which a manifest.jsonl lies (sard.export's, or the segmentation
benchmark's --work/pairs/<method>), made with one pair seed so their lines share normals and masks.
"""
import argparse
import json
from pathlib import Path

import numpy as np
from PIL import Image

from sard.evaluation.sheets import columns, rgb, save_grid
from sard.imaging import overlay
from sard.io import read_image, read_mask

SIZE = 180   # px: each zoomed picture


def manifest(folder: Path) -> tuple[Path, list[dict]]:
    path = next(folder.rglob("manifest.jsonl"))
    return path.parent, [json.loads(x) for x in path.read_text().splitlines() if x.strip()]


def zoom(image: np.ndarray, mask: np.ndarray, pad: int = 16):
    ys, xs = np.nonzero(mask)
    top, left = max(0, ys.min() - pad), max(0, xs.min() - pad)
    crop = rgb(image)[top:ys.max() + 1 + pad, left:xs.max() + 1 + pad]
    im = Image.fromarray(np.ascontiguousarray(crop))
    im = im.resize((round(im.width * SIZE / max(im.size)), round(im.height * SIZE / max(im.size))), Image.BILINEAR)
    box = Image.new("RGB", (SIZE, SIZE), "white")   # the aspect kept, centred
    box.paste(im, ((SIZE - im.width) // 2, (SIZE - im.height) // 2))
    return box


def main() -> None:
    p = argparse.ArgumentParser(prog="python -m tools.pair_sheet", description=__doc__.split("\n")[0])
    p.add_argument("a", type=Path); p.add_argument("label_a")
    p.add_argument("b", type=Path); p.add_argument("label_b")
    p.add_argument("out", type=Path)
    p.add_argument("--types", default="", help="comma list of defect types (default: every type)")
    p.add_argument("--rows", type=int, default=4, help="pairs per type")
    a = p.parse_args()
    (root_a, lines_a), (root_b, lines_b) = manifest(a.a), manifest(a.b)
    types = a.types.split(",") if a.types else sorted({x["defect"] for x in lines_a})
    rows = []
    for t in types:
        for x, y in [(x, y) for x, y in zip(lines_a, lines_b) if x["defect"] == t][:a.rows]:
            if (x["normal"], x["mask_sha256"]) != (y["normal"], y["mask_sha256"]):
                raise SystemExit(f"{root_a} and {root_b}: line {x['index']} differs in its normal or mask; "
                                 "expected pairs made with one pair seed")
            pa, pb = read_image(root_a / x["image"]), read_image(root_b / y["image"])
            m = read_mask(root_a / x["mask"], size=pa.shape[:2])
            rows.append([zoom(read_image(x["normal"]), m), zoom(overlay(pa, m), m), zoom(pa, m), zoom(pb, m)])
    sheet = columns(rows, ["normal image", "mask", a.label_a, a.label_b], SIZE, 4,
                    f"{', '.join(types)} ({a.rows} rows each): the same normal and mask in each row, zoomed on the mask")
    save_grid(sheet, a.out)
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
