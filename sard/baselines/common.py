"""What the training-free baselines share: float images, the paste that keeps every pixel outside
the mask, colour jitter, the anomaly-texture source, and the texture augmentations of DRAEM and
GLASS built from one set of image operations.

Images are handled as float32 [H, W, C] in [0, 1], C = 1 (gray) or 3 (colour).
"""
from __future__ import annotations

import os
import time
from pathlib import Path

import cv2
import numpy as np

from sard.imaging import as_input_type, match_channels, max_value, prepare_image
from sard.io import SardInputError, is_image_file, read_image
from sard.masks import perlin_mask, perlin_noise, random_mask, rotate
from sard.results import SynthesisResult

MAX_TRIES = 20  # Perlin draws before falling back to random_mask (only tiny images need it)


# -- float images and the result ----------------------------------------------------------------------

def to_float(pixels: np.ndarray) -> np.ndarray:
    """uint8/uint16 [H, W] or [H, W, 3] -> float32 [H, W, C] in [0, 1]."""
    a = pixels[..., None] if pixels.ndim == 2 else pixels
    return a.astype(np.float32) / np.float32(max_value(pixels.dtype))


def from_float(x: np.ndarray, like: np.ndarray) -> np.ndarray:
    """float [H, W, C] in [0, 1] -> `like`'s dtype and layout, rounded and clipped."""
    m = max_value(like.dtype)
    a = np.clip(np.round(x.astype(np.float64) * m), 0, m).astype(like.dtype)
    return a[..., 0] if like.ndim == 2 else a


def resize(x: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """float [h, w, C] -> [H, W, C], bilinear (cv2 drops a single channel; it is put back)."""
    H, W = shape
    out = cv2.resize(x, (W, H), interpolation=cv2.INTER_LINEAR) if x.shape[:2] != (H, W) else x
    return out.reshape(H, W, x.shape[2])


def start(image) -> tuple[float, np.ndarray, np.ndarray | None, np.ndarray]:
    """(start time, pixels, alpha, float image [H, W, C]) for a baseline call."""
    t0 = time.perf_counter()
    pixels, alpha = prepare_image(image)
    return t0, pixels, alpha, to_float(pixels)


def finish(image, pixels: np.ndarray, alpha, synth: np.ndarray, m: np.ndarray, t0: float, defect,
           seed: int) -> SynthesisResult:
    """The SynthesisResult: `synth` (float [H, W, C]) taken inside the mask only, so every pixel
    outside it is the input's own, bit for bit; the image comes back as the input's type."""
    out = pixels.copy()
    out[m] = from_float(synth, pixels)[m]
    H, W = m.shape
    return SynthesisResult(image=as_input_type(image, out, alpha), mask=m.astype(np.uint8) * 255, frames=[],
                           roi=(0, 0, H, W), timings={"total_s": time.perf_counter() - t0}, defect=defect,
                           seed=int(seed), colour="rgb" if pixels.ndim == 3 else "gray")


def nonempty_perlin(shape, rng: np.random.Generator, seed: int, foreground: np.ndarray | None = None,
                    combine: bool = False) -> np.ndarray:
    """bool [H, W]: a DRAEM Perlin mask drawn again until it is non-empty on the foreground (as
    GLASS's loop; DRAEM keeps empty draws as normal samples, which a synthesizer must not). combine=True joins two, as GLASS: union, intersection or the
    first alone with odds 1/3 each; an empty intersection falls back to the union. After
    MAX_TRIES empty draws (tiny images) a random_mask('perlin') of any area stands in: never empty."""
    for _ in range(MAX_TRIES):
        m = perlin_mask(shape, rng)
        if combine:
            m2 = perlin_mask(shape, rng)
            u = rng.random()
            if u < 1 / 3 or (u < 2 / 3 and not (m & m2).any()):
                m = m | m2
            elif u < 2 / 3:
                m = m & m2
        if foreground is not None:
            m = m & foreground
        if m.any():
            return m
    return random_mask("perlin", shape, seed, (0.0, 1.0), foreground=foreground)[0] > 0


# -- colour operations (torchvision's definitions) ---------------------------------------------------

def luma(x: np.ndarray) -> np.ndarray:
    """[H, W, C] -> [H, W, 1], ITU-R 601 as torchvision's rgb_to_grayscale."""
    if x.shape[2] == 1:
        return x
    return (0.299 * x[..., 0] + 0.587 * x[..., 1] + 0.114 * x[..., 2])[..., None].astype(x.dtype)


def blend(a: np.ndarray, b, ratio: float) -> np.ndarray:
    """ratio * a + (1 - ratio) * b, clipped to [0, 1] (torchvision's _blend)."""
    return np.clip(ratio * a + (1 - ratio) * b, 0, 1).astype(np.float32)


def adjust_brightness(x, f):
    return blend(x, 0.0, f)


def adjust_contrast(x, f):
    return blend(x, float(luma(x).mean()), f)


def adjust_saturation(x, f):
    return x if x.shape[2] == 1 else blend(x, luma(x), f)


def adjust_hue(x, shift: float) -> np.ndarray:
    """Rotate the hue by `shift` turns (-0.5..0.5); gray images have none."""
    if x.shape[2] == 1 or shift == 0:
        return x
    hsv = cv2.cvtColor(np.ascontiguousarray(x, dtype=np.float32), cv2.COLOR_RGB2HSV)  # H in degrees
    hsv[..., 0] = (hsv[..., 0] + 360.0 * shift) % 360.0
    return np.clip(cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB), 0, 1)


def color_jitter(x: np.ndarray, rng: np.random.Generator, brightness=0.0, contrast=0.0, saturation=0.0,
                 hue=0.0) -> np.ndarray:
    """torchvision's ColorJitter: factors U(1 - v, 1 + v) (hue U(-v, v) turns), in random order."""
    ops = [(adjust_brightness, brightness, 1.0), (adjust_contrast, contrast, 1.0),
           (adjust_saturation, saturation, 1.0), (adjust_hue, hue, 0.0)]
    for i in rng.permutation(len(ops)):
        fn, v, centre = ops[i]
        if v:
            x = fn(x, float(rng.uniform(centre - v, centre + v)))
    return x


# -- the texture augmentations of DRAEM (imgaug) and GLASS (torchvision) ------------------------------

def autocontrast(x: np.ndarray, cutoff: float) -> np.ndarray:
    """PIL's autocontrast per channel: stretch so that `cutoff` % of each end saturates."""
    lo = np.percentile(x, cutoff, axis=(0, 1), keepdims=True)
    hi = np.percentile(x, 100 - cutoff, axis=(0, 1), keepdims=True)
    return np.where(hi > lo, np.clip((x - lo) / np.maximum(hi - lo, 1e-12), 0, 1), x).astype(np.float32)


def equalize(x: np.ndarray) -> np.ndarray:
    """Histogram equalization per channel on 256 levels (PIL's equalize)."""
    q = np.round(x * 255).astype(np.uint8)
    return np.stack([cv2.equalizeHist(np.ascontiguousarray(q[..., c])) for c in range(x.shape[2])],
                    axis=-1).astype(np.float32) / 255


def sharpness(x: np.ndarray, f: float) -> np.ndarray:
    """PIL's ImageEnhance.Sharpness: blend with the SMOOTH-filtered image, border pixels kept."""
    kernel = np.array([[1, 1, 1], [1, 5, 1], [1, 1, 1]], np.float32) / 13
    smooth = cv2.filter2D(x, -1, kernel, borderType=cv2.BORDER_REPLICATE).reshape(x.shape)
    smooth[0], smooth[-1], smooth[:, 0], smooth[:, -1] = x[0], x[-1], x[:, 0], x[:, -1]
    return blend(x, smooth, f)


def hue_saturation_add(x: np.ndarray, rng) -> np.ndarray:
    """imgaug's AddToHueAndSaturation((-50, 50), per_channel=True): independent hue and
    saturation offsets on imgaug's 0..255 scale (255 -> 180 degrees of hue)."""
    dh, ds = rng.uniform(-50, 50, 2)
    hsv = cv2.cvtColor(np.ascontiguousarray(x, dtype=np.float32), cv2.COLOR_RGB2HSV)
    hsv[..., 0] = (hsv[..., 0] + dh / 255 * 180) % 360
    hsv[..., 1] = np.clip(hsv[..., 1] + ds / 255, 0, 1)
    return np.clip(cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB), 0, 1)


def posterize(x: np.ndarray, bits: int) -> np.ndarray:
    q = np.round(x * 255).astype(np.uint8) & np.uint8((0xFF << (8 - bits)) & 0xFF)
    return q.astype(np.float32) / 255


# name -> (op(x, rng), needs colour)
OPS = {
    # DRAEM's imgaug list (Zavrtanik et al. 2021, data_loader.py)
    "gamma": (lambda x, r: np.power(x, r.uniform(0.5, 2.0, x.shape[2]).astype(np.float32)), False),
    "multiply_add_brightness": (lambda x, r: np.clip(x * r.uniform(0.8, 1.2) + r.uniform(-30, 30) / 255, 0, 1), False),
    "sharpness": (lambda x, r: sharpness(x, r.uniform(0.0, 2.0)), False),
    "hue_saturation_add": (hue_saturation_add, True),
    "solarize": (lambda x, r: np.where((r.random() < 0.5) & (x >= r.uniform(32, 128) / 255), 1 - x, x), False),
    "posterize": (lambda x, r: posterize(x, int(r.integers(1, 9))), False),
    "invert": (lambda x, r: 1 - x, False),
    "autocontrast_cutoff": (lambda x, r: autocontrast(x, int(r.integers(0, 21))), False),
    "equalize": (lambda x, r: equalize(x), False),
    "rotate45": (lambda x, r: rotate(x, r.uniform(-45, 45)), False),
    # GLASS's torchvision list (Chen et al. 2024, datasets/mvtec.py) adds:
    "contrast": (lambda x, r: adjust_contrast(x, r.uniform(0.8, 1.2)), False),
    "brightness": (lambda x, r: adjust_brightness(x, r.uniform(0.8, 1.2)), False),
    "saturation_hue": (lambda x, r: adjust_hue(adjust_saturation(x, r.uniform(0.8, 1.2)), r.uniform(-0.2, 0.2)), True),
    "hflip": (lambda x, r: x[:, ::-1], False),
    "vflip": (lambda x, r: x[::-1], False),
    "grayscale": (lambda x, r: np.repeat(luma(x), x.shape[2], axis=2), True),
    "autocontrast": (lambda x, r: autocontrast(x, 0), False),
}
DRAEM_OPS = ("gamma", "multiply_add_brightness", "sharpness", "hue_saturation_add", "solarize", "posterize",
             "invert", "autocontrast_cutoff", "equalize", "rotate45")
GLASS_OPS = ("contrast", "brightness", "saturation_hue", "hflip", "vflip", "grayscale", "autocontrast",
             "equalize", "rotate45")


def augment(x: np.ndarray, rng: np.random.Generator, ops: tuple[str, ...], n: int = 3) -> np.ndarray:
    """n distinct ops drawn from `ops` and applied in the drawn order (DRAEM's randAugmenter and
    GLASS's rand_augmenter). Colour-only ops are left out for gray images."""
    usable = [o for o in ops if x.shape[2] == 3 or not OPS[o][1]]
    for i in rng.choice(len(usable), size=min(n, len(usable)), replace=False):
        x = np.ascontiguousarray(OPS[usable[i]][0](x, rng), dtype=np.float32)
    return x


# -- the anomaly texture source -----------------------------------------------------------------------

def noise_texture(shape, channels: int, rng: np.random.Generator) -> np.ndarray:
    """float32 [H, W, C] in [0, 1]: four octaves of Perlin noise per channel, each twice as fine
    and half as strong, stretched to [0, 1]. Made at most 256 pixels a side and resized (the
    finest octave has at most 32 cells a side, so nothing is lost) to keep large images fast."""
    H, W = shape
    k = min(1.0, 256 / max(H, W))
    h, w = max(2, round(H * k)), max(2, round(W * k))
    out = np.zeros((h, w, channels), np.float32)
    for c in range(channels):
        base = int(rng.integers(1, 5))
        for octave in range(4):
            out[..., c] += 0.5 ** octave * perlin_noise((h, w), (base * 2 ** octave,) * 2, rng)
        lo, hi = out[..., c].min(), out[..., c].max()
        out[..., c] = (out[..., c] - lo) / (hi - lo) if hi > lo else 0.5
    return resize(out, (H, W))


class TextureSource:
    """Where the anomaly texture comes from, as DRAEM: a random image of `texture_dir` (DRAEM and
    GLASS use DTD), else a random one of `sources` (other normal images of the set: arrays or
    paths), else multi-scale Perlin noise."""

    def __init__(self, texture_dir: str | Path | None = None, sources: list | None = None):
        self.items: list = []
        if texture_dir is not None:
            root = Path(texture_dir)
            if not root.is_dir():
                raise SardInputError(f"texture_dir: {root} is not a folder; expected a folder of images (e.g. DTD)")
            self.items = sorted(p for p in root.rglob("*") if is_image_file(p))
            if not self.items:
                raise SardInputError(f"texture_dir: {root} holds no images")
        elif sources:
            self.items = list(sources)

    def pick(self, rng: np.random.Generator, shape: tuple[int, int], channels: int) -> np.ndarray:
        """float32 [H, W, channels] in [0, 1]: a random source resized to `shape` (as DRAEM's
        cv2.resize), converted to the image's channels."""
        if not self.items:
            return noise_texture(shape, channels, rng)
        item = self.items[int(rng.integers(len(self.items)))]
        a = read_image(item) if isinstance(item, (str, os.PathLike)) else prepare_image(item)[0]
        return resize(to_float(match_channels(a, channels)), shape)
