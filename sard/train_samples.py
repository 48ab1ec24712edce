"""The sample grid the trainer writes every K steps: per defect type, a real defect crop and its
mask beside synthesized defects (three seeds) on a normal crop with the same mask."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

from sard.data.crops import defect_crop, load_example
from sard.data.readers import Sample, normals
from sard.data.split import Split
from sard.imaging import from_unit, overlay, to_unit
from sard.io import SardInputError, atomic_save_png, read_image
from sard.rcd import rcd_sample
from sard.schedule import Schedule

SEEDS = 3


def _rgb(x: torch.Tensor) -> np.ndarray:
    a = from_unit(x)
    return np.repeat(a, 3, 2) if a.shape[2] == 1 else a


class SampleGrid:
    def __init__(self, samples: list[Sample], split: Split, defects: list[str], channels: int, res: int, seed: int):
        rng = np.random.default_rng(seed + 12345)
        pool = normals(samples, "train") or normals(samples)
        self.defects, self.res, self.channels = defects, res, channels
        reals, masks, bgs = [], [], []
        for label, defect in enumerate(defects):
            cands = [s for s in split.synth if s.defect == defect]
            for s in (cands[k] for k in rng.permutation(len(cands))):
                try:
                    ex = load_example(s, label, channels)
                except SardInputError:
                    continue
                x, m = defect_crop(ex, res, rng)
                reals.append(x), masks.append(m)
                bgs.append(self._normal_crop(pool, rng, x))
                break
        self.labels = torch.arange(len(reals))
        self.real, self.mask, self.bg = torch.stack(reals), torch.stack(masks), torch.stack(bgs)

    def _normal_crop(self, pool: list[Sample], rng: np.random.Generator, fallback: torch.Tensor) -> torch.Tensor:
        for _ in range(5):
            if not pool:
                break
            try:
                x = to_unit(read_image(pool[int(rng.integers(len(pool)))].image), self.channels)
            except SardInputError:
                continue
            H, W = x.shape[-2:]
            if H >= self.res and W >= self.res:
                t, l = int(rng.integers(H - self.res + 1)), int(rng.integers(W - self.res + 1))
                return x[:, t:t + self.res, l:l + self.res]
        return fallback  # no normal image large enough: show synthesis on the real crop itself

    @torch.no_grad()
    def save(self, path: Path, G, schedule: Schedule, device: torch.device, z_carry: float = 0.0) -> Path:
        n = len(self.labels)
        bg = self.bg.repeat(SEEDS, 1, 1, 1).to(device)
        mask = self.mask.repeat(SEEDS, 1, 1, 1).to(device)
        labels = self.labels.repeat(SEEDS).to(device) if G.config.num_classes else None
        rng = torch.Generator(device=device).manual_seed(0)
        *_, last = rcd_sample(G, schedule, bg, mask, G.config.nz, rng, labels, z_carry=z_carry)
        synth = last.composite.cpu()
        rows = []
        for k in range(n):
            m = self.mask[k, 0].numpy() > 0.5
            tiles = [_rgb(self.real[k]), overlay(_rgb(self.real[k]), m), _rgb(self.bg[k])]
            tiles += [_rgb(synth[k + j * n]) for j in range(SEEDS)]
            rows.append(np.concatenate([np.pad(t, ((2, 2), (2, 2), (0, 0)), constant_values=255) for t in tiles], 1))
        grid = np.concatenate(rows, 0)
        scale = max(1, 192 // self.res)
        img = Image.fromarray(grid).resize((grid.shape[1] * scale, grid.shape[0] * scale), Image.NEAREST)
        label_w = 70
        canvas = Image.new("RGB", (img.width + label_w, img.height + 14), "white")
        canvas.paste(img, (label_w, 14))
        draw = ImageDraw.Draw(canvas)
        tile_w = (self.res + 4) * scale
        for c, name in enumerate(["real", "mask", "normal", "seed 0", "seed 1", "seed 2"]):
            draw.text((label_w + c * tile_w + 4, 1), name, fill="black")
        for k in range(n):
            draw.text((2, 14 + k * tile_w + tile_w // 2 - 5), self.defects[k][:11], fill="black")
        return atomic_save_png(path, np.array(canvas))
