"""Inputs and probes the speed benchmark and the studio's timing share: a test image and mask of any
size, and this process's resident memory."""
from __future__ import annotations

from pathlib import Path

import numpy as np


def ellipse_mask(size: int, area_px: int, seed: int = 0) -> np.ndarray:
    """An ellipse of about area_px pixels at a random place (aspect 2:1)."""
    rng = np.random.default_rng(seed)
    b = np.sqrt(area_px / (2 * np.pi))
    a = 2 * b
    cy, cx = rng.uniform(a + 1, size - a - 1, 2) if size > 2 * a + 2 else (size / 2, size / 2)
    yy, xx = np.mgrid[:size, :size]
    return ((yy - cy) / b) ** 2 + ((xx - cx) / a) ** 2 <= 1


def tile_image(size: int, data: Path | None, seed: int = 0) -> np.ndarray:
    """A gray size x size image: real normal tiles mirrored to size when data is there, else noise texture."""
    if data is not None:
        from sard.data import list_dataset
        from sard.io import read_image
        normals = [s.image for s in list_dataset(data) if s.is_normal]
        a = read_image(normals[seed % len(normals)])
        a = a if a.ndim == 2 else a.mean(axis=2).astype(np.uint8)
        reps = (-(-size // a.shape[0]), -(-size // a.shape[1]))
        return np.tile(a, reps)[:size, :size].copy()
    rng = np.random.default_rng(seed)
    return rng.integers(60, 160, (size, size), dtype=np.uint8)


def resident_mib() -> tuple[float, float]:
    """(current, peak since the last reset) resident set of this process in MiB, from /proc/self/status (Linux)."""
    fields = dict(line.split(":", 1) for line in Path("/proc/self/status").read_text().splitlines() if ":" in line)
    return tuple(int(fields[k].split()[0]) / 1024 for k in ("VmRSS", "VmHWM"))
