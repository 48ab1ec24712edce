"""Conversions between image arrays (uint8/uint16, [H, W] or [H, W, 3]) and model tensors in [-1, 1]."""
from __future__ import annotations

import numpy as np
import torch


def max_value(dtype: np.dtype) -> float:
    return 65535.0 if np.dtype(dtype) == np.uint16 else 255.0


def match_channels(a: np.ndarray, channels: int) -> np.ndarray:
    """[H, W] or [H, W, 3] -> [H, W, channels]; colour to gray by ITU-R 601 luma, as PIL does."""
    if a.ndim == 2:
        a = a[..., None]
    if a.shape[2] == channels:
        return a
    if channels == 3:
        return np.repeat(a, 3, axis=2)
    luma = a[..., 0] * 0.299 + a[..., 1] * 0.587 + a[..., 2] * 0.114
    return np.round(luma).astype(a.dtype)[..., None]


def to_unit(a: np.ndarray, channels: int) -> torch.Tensor:
    """uint image [H, W(, 3)] -> float tensor [channels, H, W] in [-1, 1]."""
    a = match_channels(a, channels)
    x = torch.from_numpy(np.ascontiguousarray(a.transpose(2, 0, 1)).astype(np.float32))
    return x / (max_value(a.dtype) / 2) - 1


def from_unit(x: torch.Tensor, dtype=np.uint8) -> np.ndarray:
    """float tensor [C, H, W] in [-1, 1] -> uint array [H, W, C], rounded and clipped."""
    m = max_value(dtype)
    a = ((x.detach().float().cpu().clamp(-1, 1) + 1) * (m / 2)).round().numpy().transpose(1, 2, 0)
    return a.astype(dtype)


def restore_layout(a: np.ndarray, like: np.ndarray) -> np.ndarray:
    """[H, W, C] -> the channel layout of `like` ([H, W] gray or [H, W, 3] colour)."""
    if like.ndim == 2:
        return a[..., 0] if a.shape[2] == 1 else match_channels(a, 1)[..., 0]
    return match_channels(a, like.shape[2])
