"""Picture sheets for the reports: labelled columns of pictures, written atomically as PNG."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from sard.imaging import mask_bbox
from sard.io import atomic_save_png


def fit_h(a: np.ndarray, h: int) -> Image.Image:
    im = Image.fromarray(a)
    return im.resize((max(1, round(im.width * h / im.height)), h), Image.BILINEAR)


def rgb(a: np.ndarray) -> np.ndarray:
    return np.repeat(a[..., None], 3, 2) if a.ndim == 2 else a


def zoom_on_mask(a: np.ndarray, mask: np.ndarray, size: int) -> np.ndarray:
    """A square of at least size px around the mask (all of it, with an 8 px margin), kept inside the image."""
    top, left, bottom, right = mask_bbox(mask)
    z = max(size, bottom - top + 16, right - left + 16)
    t0 = int(np.clip((top + bottom) // 2 - z // 2, 0, max(0, mask.shape[0] - z)))
    l0 = int(np.clip((left + right) // 2 - z // 2, 0, max(0, mask.shape[1] - z)))
    return a[t0:t0 + z, l0:l0 + z]


def columns(rows: list[list[Image.Image]], labels: list[str], height: int, gap: int, caption: str) -> Image.Image:
    """Rows of pictures under one label per column, a caption below: the card's grids."""
    col_w = [max(r[c].width for r in rows) for c in range(len(labels))]
    canvas = Image.new("RGB", (sum(col_w) + 6 * len(col_w), 16 + len(rows) * (height + gap) + 16), "white")
    draw = ImageDraw.Draw(canvas)
    x = 0
    for c, (w, lab) in enumerate(zip(col_w, labels)):
        draw.text((x + 3, 2), lab, fill="black")
        for j, r in enumerate(rows):
            canvas.paste(r[c], (x, 16 + j * (height + gap)))
        x += w + 6
    draw.text((3, canvas.height - 14), caption, fill="black")
    return canvas


def save_grid(img: Image.Image, path: Path) -> Path:
    return atomic_save_png(path, np.asarray(img))
