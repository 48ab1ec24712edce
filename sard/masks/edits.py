"""Mask edits: grow or shrink by whole pixels, and feather the edge so a synthesized defect fades
into the image."""
from __future__ import annotations

import cv2
import numpy as np


def _disk(radius: int) -> np.ndarray:
    return cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))


def grow_mask(mask: np.ndarray, px: int) -> np.ndarray:
    """bool [H, W]: the mask dilated by `px` pixels (a disk), or eroded by -px when px < 0."""
    m = np.asarray(mask) > 0
    if px == 0:
        return m.copy()
    op = cv2.dilate if px > 0 else cv2.erode
    return op(m.astype(np.uint8), _disk(abs(int(px))), borderType=cv2.BORDER_CONSTANT, borderValue=0) > 0


def feather_weights(mask: np.ndarray, px: float) -> np.ndarray:
    """float32 [H, W] in [0, 1]: 0 outside the mask, rising across the `px` pixels inside its edge
    to 1 (smoothstep of the distance to the background); the binary mask itself for px <= 0. The
    feather stays inside the mask, so every pixel outside it keeps the input's value."""
    m = np.asarray(mask) > 0
    if px <= 0:
        return m.astype(np.float32)
    padded = np.pad(m, 1, mode="edge").astype(np.uint8)     # the image border is no edge of the mask
    d = cv2.distanceTransform(padded, cv2.DIST_L2, 5)[1:-1, 1:-1]
    t = np.clip(d / float(px), 0, 1)
    return (t * t * (3 - 2 * t)).astype(np.float32)


def feather(result: np.ndarray, source: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """source + weights * (result - source), rounded, in the source's dtype and channels: a
    synthesized defect fading into its surroundings (weights from feather_weights)."""
    w = weights[..., None] if np.ndim(source) == 3 else weights
    out = source.astype(np.float64) + w * (result.astype(np.float64) - source.astype(np.float64))
    return np.round(out).astype(source.dtype)
