"""Where a mask may go: the part on a plain background by Otsu threshold, or the whole image for
textures."""
from __future__ import annotations

import numpy as np
from skimage.filters import threshold_otsu
from skimage.measure import label
from skimage.morphology import remove_small_holes

from sard.imaging import match_channels, prepare_image


def _otsu_part(image) -> tuple[np.ndarray | None, float]:
    """(bool [H, W] or None for a flat image, separation): the Otsu class that covers less of the
    image border (the background surrounds a part), and the between-class share of the gray
    variance (near 1 for a part on a plain background, lower for shading and texture)."""
    pixels = prepare_image(image)[0]
    gray = match_channels(pixels, 1)[..., 0].astype(np.float64)
    if gray.min() == gray.max():
        return None, 0.0
    above = gray > threshold_otsu(gray)
    w = above.mean()
    separation = w * (1 - w) * (gray[above].mean() - gray[~above].mean()) ** 2 / gray.var()
    border = np.concatenate([above[0], above[-1], above[:, 0], above[:, -1]])
    return (above if border.mean() < 0.5 else ~above), float(separation)


def is_texture(image) -> bool:
    """True unless the image shows a part on a plain background: the Otsu classes well apart
    (separation >= 0.8), the background holding >= 90 % of the image border, the part < 95 %
    of the image. (Magnetic-tile crops, shaded but plain, score 0.5-0.76.)"""
    part, separation = _otsu_part(image)
    if part is None or separation < 0.8:
        return True
    border = np.concatenate([part[0], part[-1], part[:, 0], part[:, -1]])
    return bool(border.mean() > 0.1 or part.mean() >= 0.95)


def object_foreground(image, texture: bool = False) -> np.ndarray:
    """bool [H, W]: the part, for object categories, by Otsu threshold: the class that covers
    less of the border, small holes (< 2 % of the image) filled, components kept that are at
    least a quarter of the largest one. All True for textures and flat images."""
    pixels = prepare_image(image)[0]
    H, W = pixels.shape[:2]
    part = None if texture else _otsu_part(pixels)[0]
    if part is None or not part.any():
        return np.ones((H, W), bool)
    part = remove_small_holes(part, max_size=max(16, H * W // 50))
    labels = label(part, connectivity=2)
    sizes = np.bincount(labels.ravel())
    sizes[0] = 0
    return np.isin(labels, np.flatnonzero(sizes >= sizes.max() / 4))

