"""Pictures for the screen: display copies, mask layers and tints, heat maps, reverse-step views.

Plain numpy in and out (uint8 RGB for the screen); no Gradio, no session.
"""
from __future__ import annotations

import cv2
import numpy as np

from sard.results import FrameImages, x0_change_per_step
from sard.imaging import overlay

DISPLAY_SIDE = 1024     # larger images are shown scaled; synthesis stays at full resolution
MASK_RGB = (255, 48, 48)


def display_rgb(a: np.ndarray) -> np.ndarray:
    """Any image array -> uint8 RGB for the screen (16-bit scaled down, an alpha channel not shown)."""
    if a.dtype == np.uint16:
        a = (a >> 8).astype(np.uint8)
    if a.ndim == 3:
        a = a[..., 0] if a.shape[2] <= 2 else a[..., :3]     # gray (and alpha), colour (and alpha)
    return np.repeat(a[..., None], 3, 2) if a.ndim == 2 else a


def fit_display(a: np.ndarray, side: int = DISPLAY_SIDE) -> tuple[np.ndarray, float]:
    h, w = a.shape[:2]
    s = min(1.0, side / max(h, w))
    if s == 1.0:
        return a, 1.0
    return cv2.resize(a, (max(1, round(w * s)), max(1, round(h * s))), interpolation=cv2.INTER_AREA), s


def screen(a: np.ndarray, side: int = DISPLAY_SIDE) -> np.ndarray:
    """The display copy of any image array: uint8 RGB, at most `side` pixels a side."""
    return fit_display(display_rgb(a), side)[0]


def to_display_mask(mask: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """bool mask resized to `shape`: full resolution <-> the editor's display size. Shrunk, a display
    pixel is set if any of its pixels is (a thin scratch stays visible); enlarged, nearest."""
    if mask.shape[:2] == tuple(shape):
        return mask > 0
    m = (mask > 0).astype(np.float32)
    interp = cv2.INTER_AREA if shape[0] < mask.shape[0] else cv2.INTER_NEAREST
    return cv2.resize(m, (shape[1], shape[0]), interpolation=interp) > 0


def mask_layer(mask: np.ndarray) -> np.ndarray:
    """RGBA editor layer: the brush's colour where the mask is set, transparent elsewhere."""
    layer = np.zeros((*mask.shape, 4), np.uint8)
    layer[mask > 0] = (*MASK_RGB, 255)
    return layer


def editor_mask(value) -> np.ndarray | None:
    """The painted mask at display resolution: any layer's alpha > 0 (GRADIO-NOTES)."""
    if not value or not value.get("layers"):
        return None
    layers = [np.asarray(lay) for lay in value["layers"] if lay is not None]
    if not layers:
        return None
    alpha = np.zeros(layers[0].shape[:2], bool)
    for lay in layers:
        if lay.ndim == 3 and lay.shape[2] == 4:
            alpha |= lay[..., 3] > 0
        else:
            alpha |= (lay if lay.ndim == 2 else lay.max(axis=2)) > 0
    return alpha


def tint(rgb: np.ndarray, weight: np.ndarray, alpha: float = 0.45) -> np.ndarray:
    """uint8 RGB with the brush colour mixed in by weight (bool or float in [0, 1]) times alpha."""
    return overlay(rgb, weight, MASK_RGB, alpha)


def heat(d: np.ndarray, gain: float) -> np.ndarray:
    """uint8 RGB inferno colour map of a non-negative [h, w] array times gain (255 = full scale)."""
    return cv2.applyColorMap(np.clip(d * gain, 0, 255).astype(np.uint8), cv2.COLORMAP_INFERNO)[..., ::-1].copy()


def heat_map(result: np.ndarray, source: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """|output - input| (max over channels, x4), inferno colour map, the mask's outline in green:
    black everywhere outside the mask shows that RCD changed nothing there."""
    d = np.abs(result.astype(np.int32) - source.astype(np.int32))
    if d.ndim == 3:
        d = d.max(axis=2)
    if source.dtype == np.uint16:
        d = d >> 8
    out = heat(d, 4)
    contours, _ = cv2.findContours((mask > 0).astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    cv2.drawContours(out, contours, -1, (0, 255, 0), 1)
    return fit_display(out)[0]


def zoom(a: np.ndarray, target: int = 256) -> np.ndarray:
    """Small ROI frames upscaled (nearest) so single pixels stay visible."""
    k = max(1, target // max(a.shape[:2]))
    return np.kron(a, np.ones((k, k, 1) if a.ndim == 3 else (k, k), a.dtype)) if k > 1 else a


def x0_changes(frames: list[FrameImages], mask: np.ndarray) -> list[float | None]:
    """Per reverse step, the card's x0 change (sard.pipeline.x0_change_per_step) as a fraction of the
    full range; None for the first step, which has no previous one. mask: bool, the frames' size."""
    return [None] + [v / 255 for v in x0_change_per_step(frames, mask)]


def x0_change_map(frames: list[FrameImages], k: int) -> np.ndarray | None:
    """Heat map of |predicted x0 at step k - at step k-1| (x4, as the output heat map); None at step 0."""
    if k == 0:
        return None
    d = np.abs(frames[k].x0_hat.astype(np.int32) - frames[k - 1].x0_hat.astype(np.int32))
    return heat(d.max(axis=2) if d.ndim == 3 else d, 4)


def example_crop(image: np.ndarray, mask: np.ndarray, side: int = 160, context: float = 1.0,
                 tinted: float = 0.0) -> np.ndarray:
    """A defect for the eye: the mask's bounding box plus `context` times its size around it (at least
    48 px a side), inside the image, as a display copy of at most `side` pixels; tinted > 0: the mask
    tinted in with that strength (a curated result's thumbnail)."""
    ys, xs = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    H, W = mask.shape
    if len(ys) == 0:
        return screen(image, side)

    def span(lo: int, hi: int, n: int) -> tuple[int, int]:
        half = max((hi - lo) * (1 + 2 * context), 48) / 2
        c = (lo + hi) / 2
        a, b = int(max(0, c - half)), int(min(n, c + half))
        return a, b

    t, b = span(ys[0], ys[-1] + 1, H)
    l, r = span(xs[0], xs[-1] + 1, W)
    crop = display_rgb(image[t:b, l:r])
    if tinted:
        crop = tint(crop, mask[t:b, l:r] > 0, alpha=tinted)
    h, w = crop.shape[:2]
    s = side / max(h, w)
    interp = cv2.INTER_AREA if s < 1 else cv2.INTER_NEAREST
    return cv2.resize(crop, (max(1, round(w * s)), max(1, round(h * s))), interpolation=interp)
