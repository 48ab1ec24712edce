"""Perlin noise and masks as DRAEM makes them (Zavrtanik et al., ICCV 2021), and the rotation
they share with the baselines."""
from __future__ import annotations

import math

import cv2
import numpy as np

from sard.io import SardInputError


def perlin_noise(shape: tuple[int, int], res: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """DRAEM's rand_perlin_2d_np: float32 [H, W] gradient noise (about [-1, 1]) with res[0] x res[1]
    lattice cells, generated on the next multiple of res and cropped."""
    H, W = int(shape[0]), int(shape[1])
    ry, rx = int(res[0]), int(res[1])
    dy, dx = -(-H // ry), -(-W // rx)                      # pixels per lattice cell
    gy = ((np.arange(H) % dy) / dy)[:, None]                # position inside the cell, [H, 1]
    gx = ((np.arange(W) % dx) / dx)[None, :]                # [1, W]
    angles = 2 * math.pi * rng.random((ry + 1, rx + 1))
    grad = np.stack((np.cos(angles), np.sin(angles)), axis=-1)   # [ry + 1, rx + 1, 2]
    iy, ix = (np.arange(H) // dy)[:, None], (np.arange(W) // dx)[None, :]

    def ramp(oy: int, ox: int) -> np.ndarray:  # dot(gradient of corner (oy, ox), offset to it), [H, W]
        g = grad[iy + oy, ix + ox]
        return (gy - oy) * g[..., 0] + (gx - ox) * g[..., 1]

    def fade(t):
        return 6 * t ** 5 - 15 * t ** 4 + 10 * t ** 3

    ty, tx = fade(gy), fade(gx)
    n00, n10, n01, n11 = ramp(0, 0), ramp(1, 0), ramp(0, 1), ramp(1, 1)
    left = n00 + ty * (n10 - n00)    # interpolated down the cell's left edge, then its right one
    right = n01 + ty * (n11 - n01)
    return (math.sqrt(2) * (left + tx * (right - left))).astype(np.float32)


def rotate(a: np.ndarray, angle: float, interpolation: int = cv2.INTER_LINEAR) -> np.ndarray:
    """[H, W] or [H, W, C] rotated by `angle` degrees about the image centre, zeros outside
    (imgaug's iaa.Affine(rotate) and torchvision's RandomAffine fill 0)."""
    H, W = a.shape[:2]
    M = cv2.getRotationMatrix2D(((W - 1) / 2, (H - 1) / 2), float(angle), 1.0)
    out = cv2.warpAffine(np.ascontiguousarray(a), M, (W, H), flags=interpolation,
                         borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    return out.reshape(a.shape)


def _draw_perlin_field(shape, rng, min_scale, max_scale, rotate) -> dict:
    """The random choices of one DRAEM Perlin mask: lattice scales 2**randint(min, max) per axis,
    a noise seed and the rotation angle in (-90, 90)."""
    if not 0 <= min_scale < max_scale:
        raise SardInputError(f"min_scale/max_scale: expected 0 <= min_scale < max_scale, got {min_scale}, {max_scale}")
    res = [int(2 ** rng.integers(min_scale, max_scale)) for _ in range(2)]
    return {"res": res, "noise_seed": int(rng.integers(2 ** 63)),
            "angle": float(rng.uniform(-90, 90)) if rotate else 0.0}


def _perlin_field(shape, drawn: dict) -> np.ndarray:
    """float32 [H, W]: the (rotated) noise a drawn Perlin mask thresholds."""
    noise = perlin_noise(shape, drawn["res"], np.random.default_rng(drawn["noise_seed"]))
    return rotate(noise, drawn["angle"]) if drawn["angle"] else noise


def perlin_mask(shape, rng, min_scale=0, max_scale=6, threshold=0.5, rotate=True) -> np.ndarray:
    """bool [H, W] as DRAEM makes it: noise at scales 2**randint(min_scale, max_scale) per axis,
    rotated by U(-90, 90) degrees, thresholded at 0.5. May be empty (DRAEM's can be)."""
    return _perlin_field(shape, _draw_perlin_field(shape, rng, min_scale, max_scale, rotate)) > threshold
