"""GLASS's image-level anomaly synthesis (Chen et al., "A Unified Anomaly Synthesis Strategy with
Gradient Ascent for Industrial Anomaly Detection and Localization", ECCV 2024): two Perlin masks
combined, kept on the part's foreground, filled with an augmented texture."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from sard.baselines.common import GLASS_OPS, TextureSource, augment, finish, nonempty_perlin, start
from sard.imaging import prepare_mask
from sard.io import SardInputError
from sard.masks import is_texture, object_foreground
from sard.results import SynthesisResult


class GlassSynthesis:
    """Inside the mask out = beta * image + (1 - beta) * texture, beta ~ N(mean, std) clipped to
    [0.2, 0.8] (GLASS: N(0.5, 0.1)). Without a mask: two DRAEM Perlin masks joined by union,
    intersection or the first alone (odds 1/3 each; an empty intersection becomes the union),
    restricted to the foreground and drawn again until non-empty. A given mask is restricted
    to the foreground too, unless that would empty it.
    foreground: True = the part by Otsu (object_foreground), False = the whole image, "auto" =
    the whole image for textures (is_texture), the part otherwise. GLASS reads per-class
    foreground masks; Otsu stands in for them.
    The texture comes as DRAEM's (TextureSource), changed by 3 of GLASS's 9 torchvision ops."""

    def __init__(self, texture_dir: str | Path | None = None, sources: list | None = None,
                 foreground: bool | str = "auto", mean: float = 0.5, std: float = 0.1):
        if foreground not in (True, False, "auto"):
            raise SardInputError(f"foreground: expected True, False or 'auto', got {foreground!r}")
        self.source = TextureSource(texture_dir, sources)
        self.foreground = foreground
        self.mean, self.std = mean, std

    def _foreground(self, pixels: np.ndarray) -> np.ndarray | None:
        if self.foreground is False or (self.foreground == "auto" and is_texture(pixels)):
            return None
        return object_foreground(pixels)

    def __call__(self, image, mask=None, seed: int = 0, defect=None, **kwargs) -> SynthesisResult:
        """`kwargs` (pipeline-only options such as steps) are accepted and ignored."""
        t0, pixels, alpha, x = start(image)
        H, W, C = x.shape
        rng = np.random.default_rng(seed)
        fg = self._foreground(pixels)
        if mask is not None:
            m = prepare_mask(mask, pixels.shape)
            if fg is not None and (m & fg).any():
                m = m & fg
        else:
            m = nonempty_perlin((H, W), rng, seed, foreground=fg, combine=True)
        texture = augment(self.source.pick(rng, (H, W), C), rng, GLASS_OPS)
        beta = float(np.clip(rng.normal(self.mean, self.std), 0.2, 0.8))
        return finish(image, pixels, alpha, beta * x + (1 - beta) * texture, m, t0, defect, seed)
