"""Stack the model-card grids of two runs, one picture per defect type, for the README.

    .venv/bin/python -m tools.side_by_side CARD_A LABEL_A CARD_B LABEL_B OUT_PREFIX

CARD_A / CARD_B: folders written by `python -m sard.evaluate card` (grid_<type>.png each, the same
held-out image and mask in both because the card picks them by index). Writes OUT_PREFIX<type>.png.
"""
import sys
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from sard.io import atomic_save_png

WIDTH = 1200


def labelled(path: Path, label: str) -> Image.Image:
    grid = Image.open(path).convert("RGB")
    grid = grid.resize((WIDTH, round(grid.height * WIDTH / grid.width)), Image.LANCZOS)
    out = Image.new("RGB", (WIDTH, grid.height + 22), "white")
    ImageDraw.Draw(out).text((4, 4), label, fill="black")
    out.paste(grid, (0, 22))
    return out


def main(argv: list[str]) -> int:
    if len(argv) != 5:
        print(__doc__, file=sys.stderr)
        return 2
    card_a, label_a, card_b, label_b, prefix = argv
    for grid in sorted(Path(card_a).glob("grid_*.png")):
        other = Path(card_b) / grid.name
        if not other.is_file():
            print(f"{other}: missing; expected the same types in both cards", file=sys.stderr)
            return 2
        a, b = labelled(grid, label_a), labelled(other, label_b)
        both = Image.new("RGB", (WIDTH, a.height + b.height + 8), "white")
        both.paste(a, (0, 0))
        both.paste(b, (0, a.height + 8))
        out = Path(prefix + grid.name[len("grid_"):])
        atomic_save_png(out, np.asarray(both))
        print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
