"""Realism without downloaded networks: a classifier two-sample test (C2ST).

Real crops: windows around each held-out real defect (never seen by a synthesizer). Fake crops:
the same mask synthesized by a method on a normal image at the same place (on the part for
objects), cropped the same way, in colour for colour categories. A small CNN
trained from scratch on half of the pairs tries to tell real from fake on the other half
(image and mask as input: both classes carry the same masks, so only appearance can give a fake
away). Held-out accuracy near 50 % means the classifier cannot tell them apart.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn
from tqdm import tqdm

from sard.data.crops import load_example
from sard.data.readers import Sample
from sard.evaluation.sheets import columns, fit_h, rgb
from sard.imaging import match_channels, overlay
from sard.io import SardInputError, read_image
from sard.masks.foreground import is_texture, object_foreground
from sard.results import SynthesisResult


@dataclass
class CropSet:
    images: np.ndarray   # uint8 [N, res, res] gray or [N, res, res, 3] colour
    masks: np.ndarray    # bool [N, res, res]
    defects: list[str]


@dataclass
class Place:
    """Where a real crop sits, so its fake twin is drawn at the same place of a normal image: the
    classifier must tell them apart by the defect, not by where the window is."""
    mask: np.ndarray             # bool [res, res]: the real defect's mask in its crop
    defect: str
    centre: tuple[float, float]  # the crop window's centre as a fraction of its image's height and width


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


def _in_channels(image: np.ndarray, channels: int) -> np.ndarray:
    """[H, W] for gray, [H, W, 3] for colour."""
    a = match_channels(image, channels)
    return a[..., 0] if channels == 1 else a


def real_crops(held_out: list[Sample], res: int, channels: int = 1) -> tuple[CropSet, list[Place]]:
    """Windows of res x res around the centre of each held-out defect, and where each sits."""
    imgs, masks, defects, places = [], [], [], []
    for s in held_out:
        try:
            ex = load_example(s, 0, channels)
        except SardInputError:
            continue  # empty or unreadable: not a defect we can compare against
        image = _in_channels(read_image(s.image), channels)
        m = ex.mask[0].numpy() > 0.5
        ys, xs = np.nonzero(m)
        k = int(np.argmin((ys - ys.mean()) ** 2 + (xs - xs.mean()) ** 2))  # a defect pixel near the centre
        top, left = _window((int(ys[k]), int(xs[k])), res, m.shape)
        imgs.append(_pad(image[top:top + res, left:left + res], res))
        masks.append(_pad(m[top:top + res, left:left + res], res))
        defects.append(s.defect)
        centre = ((top + res / 2) / m.shape[0], (left + res / 2) / m.shape[1])
        places.append(Place(masks[-1], s.defect, centre))
    return CropSet(np.stack(imgs), np.stack(masks), defects), places


NOTHING = "Nothing painted"


def nothing_painted(image, mask, seed: int = 0, defect: str | None = None) -> SynthesisResult:
    """The reference synthesizer: the normal window returned as it is. Its C2ST is the floor a
    method must get below (the classifier then sees only the missing defect)."""
    return SynthesisResult(image=image, mask=np.asarray(mask).astype(np.uint8) * 255, frames=[], roi=(0, 0, 0, 0),
                           defect=defect, seed=seed)


class Normals:
    """Normal images in the crops' channels, with the part each shows (objects; all True for textures)."""

    def __init__(self, paths: list, channels: int, context: int):
        self.paths, self.channels, self.context = paths, channels, context
        self.texture = is_texture(read_image(paths[0]))
        self._part: dict[int, np.ndarray] = {}

    def __len__(self) -> int:
        return len(self.paths)

    def image(self, k: int) -> np.ndarray:
        return _pad(_in_channels(read_image(self.paths[k]), self.channels), self.context)

    def part(self, k: int, image: np.ndarray) -> np.ndarray:
        if k not in self._part:
            self._part[k] = object_foreground(image, texture=self.texture)
        return self._part[k]


def place_on(image: np.ndarray, place: Place, res: int, context: int) -> tuple[tuple[int, int], tuple[int, int]]:
    """((top, left) of the res crop, (top, left) of the context window holding it) at the place's
    relative position in `image` (at least context x context)."""
    H, W = image.shape[:2]
    cy, cx = int(round(place.centre[0] * H)), int(round(place.centre[1] * W))
    crop, window = _window((cy, cx), res, (H, W)), _window((cy, cx), context, (H, W))
    return crop, window


def fake_crops(synth, places: list[Place], normals: Normals, res: int, context: int, seed: int,
               desc: str = "", tries: int = 5) -> tuple[CropSet, list[float]]:
    """For each real crop's place: a normal image (the one of `tries` random picks whose part holds
    most of the mask), its context window synthesized by `synth` with the mask where the real crop
    has it, and the res crop at the real crop's place. Also returns the share of each fake's mask
    that lies on the part."""
    rng = np.random.default_rng(seed)
    imgs, masks, defects, on_part = [], [], [], []
    for k, place in enumerate(tqdm(places, desc=f"fakes {desc}", leave=False)):
        best = None
        for _ in range(tries):
            j = int(rng.integers(len(normals)))
            normal = normals.image(j)
            (top, left), (wt, wl) = place_on(normal, place, res, context)
            held = normals.part(j, normal)[top:top + res, left:left + res][place.mask]
            share = float(held.mean()) if held.size else 1.0
            if best is None or share > best[0]:
                best = (share, normal, (top, left), (wt, wl))
            if share >= 0.9:
                break
        share, normal, (top, left), (wt, wl) = best
        window = np.ascontiguousarray(normal[wt:wt + context, wl:wl + context])
        big = np.zeros(window.shape[:2], bool)
        big[top - wt:top - wt + res, left - wl:left - wl + res] = place.mask
        out = np.asarray(synth(window, big, seed=seed * 100003 + k, defect=place.defect).image)
        imgs.append(out[top - wt:top - wt + res, left - wl:left - wl + res])
        masks.append(place.mask)
        defects.append(place.defect)
        on_part.append(share)
    return CropSet(np.stack(imgs), np.stack(masks), defects), on_part


def crop_sheet(real: CropSet, fakes: dict[str, CropSet], n: int = 8, height: int = 96) -> Image.Image:
    """What the classifier judges, to be looked at: n real crops (spread over the defect types), their
    masks, and each method's fake twin at the same place, one column each."""
    picks = np.linspace(0, len(real.defects) - 1, min(n, len(real.defects))).round().astype(int)
    cols = [real.images, [overlay(rgb(real.images[k]), real.masks[k]) for k in range(len(real.images))],
            *(f.images for f in fakes.values())]
    rows = [[fit_h(rgb(np.asarray(c[k])), height) for c in cols] for k in picks]
    labels = ["real (held out)", "its mask", *fakes]
    types = ", ".join(dict.fromkeys(real.defects[k] for k in picks))
    return columns(rows, labels, height, 4, f"rows: real defect crops of {types}; columns: fakes at the same place")


class C2STNet(nn.Module):
    """A small CNN on (image, mask) crops: four strided conv blocks and a linear head (one logit, or one
    per class)."""

    def __init__(self, in_ch: int = 2, width: int = 16, outputs: int = 1):
        super().__init__()
        chans = [in_ch, width, 2 * width, 4 * width, 4 * width]
        layers = []
        for a, b in zip(chans[:-1], chans[1:]):
            layers += [nn.Conv2d(a, b, 3, stride=2, padding=1), nn.GroupNorm(4, b), nn.LeakyReLU(0.2)]
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(chans[-1], outputs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.head(self.features(x).mean(dim=(2, 3)))
        return out.squeeze(1) if out.shape[1] == 1 else out


def crop_tensor(c: CropSet) -> torch.Tensor:
    """[N, C + 1, res, res]: the crop (gray, or colour so colour is judged) and its mask."""
    img = torch.from_numpy(c.images.astype(np.float32) / 127.5 - 1)
    img = img[:, None] if img.ndim == 3 else img.permute(0, 3, 1, 2)
    return torch.cat([img, torch.from_numpy(c.masks.astype(np.float32))[:, None]], dim=1)


def c2st_accuracy(real: CropSet, fake: CropSet, seed: int, epochs: int = 30, batch: int = 32,
                  min_steps: int = 300, device: torch.device | str = "cpu") -> float:
    """2-fold held-out accuracy of a CNN telling real from fake crops (pairs kept in the same fold).
    Trains for `epochs` or at least `min_steps` optimizer steps, whichever is more."""
    xr, xf = crop_tensor(real).to(device), crop_tensor(fake).to(device)
    n = min(len(xr), len(xf))
    g = torch.Generator().manual_seed(seed)
    perm = torch.randperm(n, generator=g)
    folds = [perm[: n // 2], perm[n // 2:]]
    correct = total = 0
    for k in range(2):
        tr, te = folds[k], folds[1 - k]
        torch.manual_seed(seed * 10 + k)
        net = C2STNet(in_ch=xr.shape[1]).to(device)
        opt = torch.optim.Adam(net.parameters(), lr=1e-3)
        x = torch.cat([xr[tr], xf[tr]])
        y = torch.cat([torch.ones(len(tr)), torch.zeros(len(tr))]).to(device)
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
            yt = torch.cat([torch.ones(len(te)), torch.zeros(len(te))]).to(device)
            correct += int(((net(xt) > 0).float() == yt).sum())
            total += len(yt)
    return correct / total

