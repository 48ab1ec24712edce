"""DRAEM's anomaly synthesis (Zavrtanik et al., ICCV 2021): a Perlin-noise mask filled with an
augmented texture image blended over the normal image."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from sard.baselines.common import DRAEM_OPS, TextureSource, augment, finish, nonempty_perlin, start
from sard.imaging import prepare_mask
from sard.results import SynthesisResult


class DraemBlend:
    """Inside the mask out = (1 - beta) * image + beta * texture, beta ~ U(beta): beta is the
    texture's opacity. (DRAEM's code draws the image's weight U(0, 0.8), i.e. a texture opacity
    U(0.2, 1.0); beta=(0.2, 1.0) reproduces it.) The texture is a random image of `texture_dir`,
    else of `sources`, else Perlin noise (see TextureSource), resized to the image and changed by
    3 of DRAEM's 10 imgaug operations. Without a mask, DRAEM's Perlin mask is drawn (again until
    it is non-empty)."""

    def __init__(self, texture_dir: str | Path | None = None, sources: list | None = None, beta=(0.1, 1.0)):
        self.source = TextureSource(texture_dir, sources)
        self.beta = tuple(beta)

    def __call__(self, image, mask=None, seed: int = 0, defect=None, **kwargs) -> SynthesisResult:
        """`kwargs` (pipeline-only options such as steps) are accepted and ignored."""
        t0, pixels, alpha, x = start(image)
        H, W, C = x.shape
        rng = np.random.default_rng(seed)
        m = prepare_mask(mask, pixels.shape) if mask is not None else nonempty_perlin((H, W), rng, seed)
        texture = augment(self.source.pick(rng, (H, W), C), rng, DRAEM_OPS)
        beta = rng.uniform(*self.beta)
        return finish(image, pixels, alpha, (1 - beta) * x + beta * texture, m, t0, defect, seed)
