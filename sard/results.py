"""What a synthesizer returns (SARD's pipeline and the training-free baselines alike), and the
step-through's one figure: how much the predicted x0 still changes per reverse step."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class FrameImages:
    """One reverse step as pictures of the region the network ran on (uint8, [h, w] or [h, w, 3]).
    x_t is shown as the network sees it: its own range x_t_range (it is noisier than [-1, 1]) scaled
    to 0..255, not clipped."""
    step: int
    x_t: np.ndarray
    x0_hat: np.ndarray
    composite: np.ndarray
    x_t_range: tuple[float, float] = (-1.0, 1.0)
    scale: float = 1.0      # < 1: the network ran on the region scaled by this (a mask larger than its crops)


def x0_change_per_step(frames: list[FrameImages], mask: np.ndarray) -> list[float]:
    """Per reverse-step transition, the mean |x0_hat(step k) - x0_hat(step k - 1)| inside `mask` (bool,
    the frames' size) in grey levels, channels averaged: how much the defect still forms (card figure e,
    the studio's step-through); 0.0 for an empty mask."""
    def gray(a: np.ndarray) -> np.ndarray:
        a = a.astype(np.float64)
        return a.mean(axis=2) if a.ndim == 3 else a
    return [float(np.abs(gray(cur.x0_hat) - gray(prev.x0_hat))[mask].mean()) if mask.any() else 0.0
            for prev, cur in zip(frames, frames[1:])]


@dataclass
class SynthesisResult:
    image: object                        # np.ndarray or PIL image: same size, mode and type as the input
    mask: np.ndarray                     # uint8 [H, W], 0/255
    frames: list[FrameImages]
    roi: tuple[int, int, int, int]       # (top, left, bottom, right) where the network ran
    timings: dict = field(default_factory=dict)
    defect: str | None = None
    seed: int = 0
    colour: str = "gray"                 # colour_mode: 'rgb', 'luminance' (gray model, colour image) or 'gray'
