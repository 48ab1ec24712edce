"""Realism without downloaded networks: a classifier two-sample test (C2ST).

Real crops: windows around each held-out real defect (never seen by a synthesizer). Fake crops:
the same mask window synthesized by a method on a normal image, cropped the same way. A small CNN
trained from scratch on half of the pairs tries to tell real from fake on the other half
(image and mask as input: both classes carry the same masks, so only appearance can give a fake
away). Held-out accuracy near 50 % means the classifier cannot tell them apart.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from sard.data.crops import load_example
from sard.data.readers import Sample
from sard.imaging import match_channels
from sard.io import SardInputError, read_image


@dataclass
class CropSet:
    images: np.ndarray   # uint8 [N, res, res] gray (or [N, res, res, 3])
    masks: np.ndarray    # bool [N, res, res]
    defects: list[str]


def _window(center: tuple[int, int], size: int, shape: tuple[int, int]) -> tuple[int, int]:
    top = int(np.clip(center[0] - size // 2, 0, max(0, shape[0] - size)))
    left = int(np.clip(center[1] - size // 2, 0, max(0, shape[1] - size)))
    return top, left


def _pad(a: np.ndarray, size: int) -> np.ndarray:
    ph, pw = max(0, size - a.shape[0]), max(0, size - a.shape[1])
    if ph or pw:
        pads = ((0, ph), (0, pw)) + ((0, 0),) * (a.ndim - 2)
        a = np.pad(a, pads, mode="edge")
    return a


def real_crops(held_out: list[Sample], res: int, channels: int = 1) -> tuple[CropSet, list[tuple]]:
    """Windows of res x res around the centre of each held-out defect; also returns, per crop, the
    (mask crop, defect) needed to synthesize its fake twin."""
    imgs, masks, defects = [], [], []
    for s in held_out:
        try:
            ex = load_example(s, 0, channels)
        except SardInputError:
            continue  # empty or unreadable: not a defect we can compare against
        image = match_channels(read_image(s.image), channels)[..., 0 if channels == 1 else slice(None)]
        m = ex.mask[0].numpy() > 0.5
        ys, xs = np.nonzero(m)
        k = int(np.argmin((ys - ys.mean()) ** 2 + (xs - xs.mean()) ** 2))  # a defect pixel near the centre
        top, left = _window((int(ys[k]), int(xs[k])), res, m.shape)
        imgs.append(_pad(image[top:top + res, left:left + res], res))
        masks.append(_pad(m[top:top + res, left:left + res], res))
        defects.append(s.defect)
    return CropSet(np.stack(imgs), np.stack(masks), defects), list(zip(masks, defects))


def fake_crops(synth, pairs: list[tuple[np.ndarray, str]], normals: list, res: int, context: int, seed: int,
               desc: str = "") -> CropSet:
    """For each (mask crop, defect): a context x context window of a normal image with the mask in its
    centre, synthesized by `synth`, and the centre res x res crop of the result."""
    rng = np.random.default_rng(seed)
    imgs, masks, defects = [], [], []
    off = (context - res) // 2
    for k, (m, defect) in enumerate(tqdm(pairs, desc=f"fakes {desc}", leave=False)):
        for _ in range(10):
            normal = read_image(normals[int(rng.integers(len(normals)))])
            if normal.ndim == 3:
                normal = match_channels(normal, 1)[..., 0]
            if min(normal.shape[:2]) >= context:
                break
        normal = _pad(normal, context)
        t = int(rng.integers(normal.shape[0] - context + 1))
        l = int(rng.integers(normal.shape[1] - context + 1))
        window = np.ascontiguousarray(normal[t:t + context, l:l + context])
        big = np.zeros((context, context), bool)
        big[off:off + res, off:off + res] = m
        out = np.asarray(synth(window, big, seed=seed * 100003 + k, defect=defect).image)
        imgs.append(out[off:off + res, off:off + res])
        masks.append(m)
        defects.append(defect)
    return CropSet(np.stack(imgs), np.stack(masks), defects)


class C2STNet(nn.Module):
    """A small CNN on (image, mask) crops: four strided conv blocks and a linear head."""

    def __init__(self, in_ch: int = 2, width: int = 16):
        super().__init__()
        chans = [in_ch, width, 2 * width, 4 * width, 4 * width]
        layers = []
        for a, b in zip(chans[:-1], chans[1:]):
            layers += [nn.Conv2d(a, b, 3, stride=2, padding=1), nn.GroupNorm(4, b), nn.LeakyReLU(0.2)]
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(chans[-1], 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x).mean(dim=(2, 3))).squeeze(1)


def _tensor(c: CropSet) -> torch.Tensor:
    img = torch.from_numpy(c.images.astype(np.float32) / 127.5 - 1)
    img = img[:, None] if img.ndim == 3 else img.permute(0, 3, 1, 2).mean(1, keepdim=True)
    return torch.cat([img, torch.from_numpy(c.masks.astype(np.float32))[:, None]], dim=1)


def c2st_accuracy(real: CropSet, fake: CropSet, seed: int, epochs: int = 30, batch: int = 32,
                  min_steps: int = 300) -> float:
    """2-fold held-out accuracy of a CNN telling real from fake crops (pairs kept in the same fold).
    Trains for `epochs` or at least `min_steps` optimizer steps, whichever is more."""
    xr, xf = _tensor(real), _tensor(fake)
    n = min(len(xr), len(xf))
    g = torch.Generator().manual_seed(seed)
    perm = torch.randperm(n, generator=g)
    folds = [perm[: n // 2], perm[n // 2:]]
    correct = total = 0
    for k in range(2):
        tr, te = folds[k], folds[1 - k]
        torch.manual_seed(seed * 10 + k)
        net = C2STNet()
        opt = torch.optim.Adam(net.parameters(), lr=1e-3)
        x = torch.cat([xr[tr], xf[tr]])
        y = torch.cat([torch.ones(len(tr)), torch.zeros(len(tr))])
        steps_per_epoch = -(-2 * len(tr) // batch)
        for _ in range(max(epochs, -(-min_steps // steps_per_epoch))):
            order = torch.randperm(len(x), generator=g)
            for b in range(0, len(x), batch):
                idx = order[b:b + batch]
                xb = x[idx]
                if torch.rand(1, generator=g) < 0.5:
                    xb = xb.flip(-1)
                if torch.rand(1, generator=g) < 0.5:
                    xb = xb.flip(-2)
                loss = F.binary_cross_entropy_with_logits(net(xb), y[idx])
                opt.zero_grad()
                loss.backward()
                opt.step()
        net.eval()
        with torch.no_grad():
            xt = torch.cat([xr[te], xf[te]])
            yt = torch.cat([torch.ones(len(te)), torch.zeros(len(te))])
            correct += int(((net(xt) > 0).float() == yt).sum())
            total += len(yt)
    return correct / total

