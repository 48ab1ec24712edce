"""Native grain: the finest detail inside a defect's mask against that of the part around it (card
figure g). A fill painted at a fit crop's scale and scaled up lacks the image's native detail; a
segmenter trained on such pairs learns "smooth = defect", which real defects (as rough as their
surroundings, or rougher) never show (reports/sampler/native_grain.md)."""
from __future__ import annotations

import cv2
import numpy as np

from sard.masks import grow_mask

GRAIN_SIGMA = 1.0   # px: the detail is what a Gaussian blur of this sigma removes
GRAIN_RING = 8      # px: the part around the mask
GRAIN_CORE = 2      # px: the mask's edge left out, so the seam does not count as detail


def grain_ratio(image: np.ndarray, mask: np.ndarray) -> float | None:
    """std of (gray - blur(gray)) over the mask's core / the same over a ring around it; None when
    either holds fewer than 20 pixels."""
    g = image.astype(np.float32)
    g = g.mean(axis=2) if g.ndim == 3 else g
    detail = g - cv2.GaussianBlur(g, (0, 0), GRAIN_SIGMA)
    m = mask > 0
    ring = grow_mask(m, GRAIN_RING) & ~m
    core = grow_mask(m, -GRAIN_CORE)
    if core.sum() < 20 or ring.sum() < 20:
        return None
    return float(detail[core].std() / max(float(detail[ring].std()), 1e-6))
