"""Two methods' pairs of one benchmark or export side by side: the same normal image and mask in each row.
    python -m tools.pair_sheet PAIRS_A LABEL_A PAIRS_B LABEL_B OUT.png [--types uneven,fray] [--rows 4]
PAIRS_A / PAIRS_B: folders under which a manifest.jsonl lies (sard.export's, or the segmentation
benchmark's --work/pairs/<method>), made with one pair seed so their lines share normals and masks.
"""
import argparse
from pathlib import Path

import numpy as np
from PIL import Image

from sard.evaluation.sheets import columns, rgb, save_grid, zoom_on_mask
from sard.imaging import overlay
from sard.io import read_image, read_mask
from sard.pairs import manifest_lines

SIZE = 180   # px: each zoomed picture


def zoom(image: np.ndarray, mask: np.ndarray) -> Image.Image:
    """The card's zoom on the mask, fitted into a SIZE px square with its aspect kept."""
    im = Image.fromarray(np.ascontiguousarray(zoom_on_mask(rgb(image), mask, SIZE // 2)))
    im = im.resize((round(im.width * SIZE / max(im.size)), round(im.height * SIZE / max(im.size))), Image.BILINEAR)
    box = Image.new("RGB", (SIZE, SIZE), "white")
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
    lines_a, lines_b = list(manifest_lines(a.a)), list(manifest_lines(a.b))
    types = a.types.split(",") if a.types else sorted({x["defect"] for _, x in lines_a})
    rows = []
    for t in types:
        for (root_a, x), (root_b, y) in [(u, v) for u, v in zip(lines_a, lines_b) if u[1]["defect"] == t][:a.rows]:
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
