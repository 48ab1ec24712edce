"""CutPaste (Li et al., CVPR 2021): a patch of the image itself, colour-jittered, pasted elsewhere."""
from __future__ import annotations

import math

import cv2
import numpy as np

from sard.baselines.common import color_jitter, finish, start
from sard.imaging import mask_bbox, prepare_mask
from sard.masks import rotate
from sard.results import SynthesisResult


class CutPaste:
    """CutPaste and its scar variant, as the paper (and the common PyTorch reimplementation):
    - normal: a rectangle of `area` (fraction of the image) with aspect ratio log-uniform in
      `aspect`, cut at a random place, jittered, pasted at another random place;
    - scar: a thin patch, width U(2, 16) and height U(10, 25) pixels, rotated by U(-45, 45)
      degrees, pasted through its rotated outline;
    - with a mask: a patch the size of the mask's bounding box, cut elsewhere in the image,
      jittered and pasted through the mask.
    Colour jitter: brightness and contrast `jitter` (0.1 as the paper), plus saturation and hue for
    colour images."""

    def __init__(self, scar: bool = False, area=(0.02, 0.15), aspect=(0.3, 3.3), jitter: float = 0.1):
        self.scar = scar
        self.area = tuple(area)
        self.aspect = tuple(aspect)
        self.jitter = jitter

    def __call__(self, image, mask=None, seed: int = 0, defect=None, **kwargs) -> SynthesisResult:
        """`kwargs` (pipeline-only options such as steps) are accepted and ignored."""
        t0, pixels, alpha, x = start(image)
        H, W = x.shape[:2]
        rng = np.random.default_rng(seed)
        synth = x.copy()
        if mask is not None:
            m = prepare_mask(mask, pixels.shape)
            top, left, bottom, right = mask_bbox(m)
            sy, sx = _elsewhere(rng, (H, W), (bottom - top, right - left), (top, left))
            synth[top:bottom, left:right] = self._jitter(x[sy:sy + bottom - top, sx:sx + right - left], rng)
        elif self.scar:
            m = self._scar(x, synth, rng)
        else:
            m = self._rectangle(x, synth, rng)
        return finish(image, pixels, alpha, synth, m, t0, defect, seed)

    def _jitter(self, patch: np.ndarray, rng) -> np.ndarray:
        v = self.jitter
        colour = v if patch.shape[2] == 3 else 0.0  # saturation and hue mean nothing for gray
        return color_jitter(patch, rng, brightness=v, contrast=v, saturation=colour, hue=colour)

    def _rectangle(self, x, synth, rng) -> np.ndarray:
        """CutPasteNormal: area U(area) of the image, aspect exp(U(log a0, log a1)); writes the
        pasted patch into `synth` and returns its mask."""
        H, W = x.shape[:2]
        target = rng.uniform(*self.area) * H * W
        aspect = math.exp(rng.uniform(math.log(self.aspect[0]), math.log(self.aspect[1])))
        h = int(np.clip(round(math.sqrt(target / aspect)), 1, H))
        w = int(np.clip(round(math.sqrt(target * aspect)), 1, W))
        sy, sx = int(rng.integers(H - h + 1)), int(rng.integers(W - w + 1))
        patch = self._jitter(x[sy:sy + h, sx:sx + w], rng)
        ty, tx = _elsewhere(rng, (H, W), (h, w), (sy, sx))
        synth[ty:ty + h, tx:tx + w] = patch
        m = np.zeros((H, W), bool)
        m[ty:ty + h, tx:tx + w] = True
        return m

    def _scar(self, x, synth, rng) -> np.ndarray:
        """CutPasteScar: a (2-16) x (10-25) pixel patch, jittered, rotated with expansion by
        U(-45, 45) degrees and pasted through its rotated outline."""
        H, W = x.shape[:2]
        w = int(np.clip(round(rng.uniform(2, 16)), 1, W))
        h = int(np.clip(round(rng.uniform(10, 25)), 1, H))
        sy, sx = int(rng.integers(H - h + 1)), int(rng.integers(W - w + 1))
        patch = self._jitter(x[sy:sy + h, sx:sx + w], rng)
        angle = rng.uniform(-45, 45)
        # Rotate inside a square canvas large enough for any angle, then crop to the outline. The
        # patch's edge is replicated outward so that bilinear rotation pulls in no black.
        side = int(math.ceil(math.hypot(h, w))) + 2
        oy, ox = (side - h) // 2, (side - w) // 2
        canvas = cv2.copyMakeBorder(patch, oy, side - h - oy, ox, side - w - ox, cv2.BORDER_REPLICATE)
        inside = np.zeros((side, side), np.uint8)
        inside[oy:oy + h, ox:ox + w] = 1
        rot = rotate(canvas.reshape(side, side, x.shape[2]), angle)
        outline = rotate(inside, angle, cv2.INTER_NEAREST) > 0
        ys, xs = np.flatnonzero(outline.any(axis=1)), np.flatnonzero(outline.any(axis=0))
        rot = rot[ys[0]:ys[-1] + 1, xs[0]:xs[-1] + 1]
        outline = outline[ys[0]:ys[-1] + 1, xs[0]:xs[-1] + 1]
        ph, pw = min(outline.shape[0], H), min(outline.shape[1], W)
        rot, outline = rot[:ph, :pw], outline[:ph, :pw]
        ty, tx = int(rng.integers(H - ph + 1)), int(rng.integers(W - pw + 1))
        region = synth[ty:ty + ph, tx:tx + pw]
        region[outline] = rot[outline]
        m = np.zeros((H, W), bool)
        m[ty:ty + ph, tx:tx + pw] = outline
        return m


def _elsewhere(rng, shape, size, avoid, tries: int = 10) -> tuple[int, int]:
    """(top, left) of a random `size` box inside `shape`, other than `avoid` where there is room."""
    H, W = shape
    h, w = size
    for _ in range(tries):
        y, x = int(rng.integers(H - h + 1)), int(rng.integers(W - w + 1))
        if (y, x) != tuple(avoid):
            return y, x
    return y, x
