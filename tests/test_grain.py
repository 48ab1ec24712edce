"""Card figure (g): the native grain inside a mask against the part's around it."""
import numpy as np
import pytest

import torch

from sard.evaluation.grain import grain_ratio
from sard.imaging import rescale


def _part(seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(128, 12, (96, 96)).clip(0, 255).astype(np.uint8)


def _mask() -> np.ndarray:
    m = np.zeros((96, 96), bool)
    m[30:70, 25:75] = True
    return m


def test_a_fill_with_the_parts_own_grain_scores_about_one():
    img = _part()
    img[_mask()] = np.clip(_part(1)[_mask()].astype(int) - 40, 0, 255)   # darker, with grain of the same kind
    assert grain_ratio(img, _mask()) == pytest.approx(1.0, abs=0.1)


def test_a_fill_scaled_up_from_a_quarter_of_its_size_is_smooth():
    img, m = _part(), _mask()
    x = torch.from_numpy(img.astype(np.float32))[None, None]
    up = rescale(rescale(x, (24, 24)), (96, 96))[0, 0].numpy()   # what a fit crop at scale 1/4 gives back
    img[m] = up[m].round().astype(np.uint8)
    assert grain_ratio(img, m) < 0.3


def test_colour_is_judged_on_gray_and_tiny_masks_are_not_judged():
    img = np.repeat(_part()[..., None], 3, axis=2)
    assert grain_ratio(img, _mask()) == pytest.approx(1.0, abs=0.1)
    tiny = np.zeros((96, 96), bool)
    tiny[40:43, 40:43] = True
    assert grain_ratio(img, tiny) is None
