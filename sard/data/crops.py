"""Training examples: real defect images with masks, and defect-centred crops at the training size:
at native scale, or scaled so the whole mask fits (`fit`), as synthesis does in masks that large.

Bad samples (unreadable, truncated, mask of another size, empty mask) are skipped and counted;
training goes on without them. Non-binary masks are thresholded at 127 (said once per file).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import torch

from sard.data.readers import Sample
from sard.imaging import fit_scale, mask_bbox, rescale, rescale_mask, to_unit
from sard.io import SardInputError, read_image, read_mask


@dataclass
class DefectExample:
    image: torch.Tensor      # [C, H, W] in [-1, 1]
    mask: torch.Tensor       # [1, H, W] in {0, 1}
    label: int               # index into the defect list
    source: Path


FEW_DEFECTS = 10     # training defects of a type below which the type cannot be learnt apart


@dataclass
class LoadReport:
    loaded: int = 0
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (file, reason)
    per_type: dict[str, int] = field(default_factory=dict)        # loaded defects of each type

    def summary(self) -> str:
        s = f"{self.loaded} defect images loaded, {len(self.skipped)} skipped; per type: " + \
            ", ".join(f"{d} {n}" for d, n in self.per_type.items())
        s += "".join(f"\n  skipped {f}: {why}" for f, why in self.skipped)
        few = [d for d, n in self.per_type.items() if n < FEW_DEFECTS]
        if few:
            s += (f"\n  warning: {', '.join(few)}: fewer than {FEW_DEFECTS} training defects, too few to learn a "
                  f"type's own look from; expect its syntheses to resemble the other types' (the card's type "
                  f"separability measures it)")
        return s


def load_example(sample: Sample, label: int, channels: int) -> DefectExample:
    """One defect image and its mask, checked; SardInputError names the file and the problem."""
    image = read_image(sample.image)
    mask = read_mask(sample.mask, size=image.shape[:2])
    if not mask.any():
        raise SardInputError(f"{sample.mask}: mask is empty (no defect pixels); expected at least one pixel >= 128")
    return DefectExample(to_unit(image, channels), torch.from_numpy(mask)[None].float(), label, sample.image)


def load_examples(samples: list[Sample], defects: list[str], channels: int) -> tuple[list[DefectExample], LoadReport]:
    report, examples = LoadReport(per_type=dict.fromkeys(defects, 0)), []
    for s in samples:
        if s.defect not in defects:
            continue
        try:
            examples.append(load_example(s, defects.index(s.defect), channels))
            report.loaded += 1
            report.per_type[s.defect] += 1
        except SardInputError as e:
            report.skipped.append((str(s.image), str(e)))
    return examples, report


def infer_channels(samples: list[Sample], look: int = 16) -> int:
    """1 if the first images are all gray, else 3 (a colour image anywhere makes the model RGB)."""
    for s in samples[:look]:
        try:
            if read_image(s.image).ndim == 3:
                return 3
        except SardInputError:
            continue
    return 1


def _crop_box(mask: torch.Tensor, res: int, rng: np.random.Generator) -> tuple[int, int]:
    """Top-left corner of a res x res window around a random defect pixel, jittered by res / 4."""
    ys, xs = torch.nonzero(mask[0], as_tuple=True)
    k = int(rng.integers(len(ys)))
    jitter = rng.integers(-(res // 4), res // 4 + 1, size=2)
    H, W = mask.shape[-2:]
    top = int(np.clip(int(ys[k]) - res // 2 + jitter[0], 0, max(0, H - res)))
    left = int(np.clip(int(xs[k]) - res // 2 + jitter[1], 0, max(0, W - res)))
    return top, left


def _fit(x: torch.Tensor, res: int) -> torch.Tensor:
    """Reflect-pad (replicate where too small to reflect) up to res x res."""
    ph, pw = max(0, res - x.shape[-2]), max(0, res - x.shape[-1])
    if ph == 0 and pw == 0:
        return x
    mode = "reflect" if ph < x.shape[-2] and pw < x.shape[-1] else "replicate"
    return torch.nn.functional.pad(x[None], (0, pw, 0, ph), mode=mode)[0]


def _fit_window(mask: torch.Tensor, res: int, rng: np.random.Generator,
                min_width: float = 0.0) -> tuple[int, int, int]:
    """(top, left, side): a square window of res / fit_scale pixels, centred on the mask's box and
    jittered by up to a quarter of the slack (clipped to the image): the whole mask with context,
    unless min_width holds a thin mask at a larger scale."""
    m = mask[0].numpy() > 0
    top, left, bottom, right = mask_bbox(m)
    side = int(round(res / fit_scale(m, res, min_width)))

    def start(lo: int, hi: int, size: int) -> int:
        if side >= size:
            return 0
        slack = (side - (hi - lo)) // 4
        if slack < 0:   # a mask held above the fit scale: a window anywhere along it
            return int(np.clip(lo + int(rng.integers(0, hi - lo - side + 1)), 0, size - side))
        centred = (lo + hi - side) // 2 + int(rng.integers(-slack, slack + 1))
        return int(np.clip(centred, 0, size - side))

    H, W = mask.shape[-2:]
    return start(top, bottom, H), start(left, right, W), side


def defect_crop(ex: DefectExample, res: int, rng: np.random.Generator, whole_image: bool = False,
                fit: bool = False, fit_min_width: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
    """A defect-centred res x res crop at native scale, or scaled so the whole mask fits with
    context (fit, at fit_scale; a mask that fits already stays at native scale), or the whole image
    resized; random flips."""
    if fit:
        top, left, side = _fit_window(ex.mask, res, rng, fit_min_width)
        x, m = ex.image[:, top:top + side, left:left + side], ex.mask[:, top:top + side, left:left + side]
        if side > res:
            size = (min(res, round(x.shape[-2] * res / side)), min(res, round(x.shape[-1] * res / side)))
            x, m = rescale(x, size), rescale_mask(m, size)
        x, m = _fit(x, res), _fit(m, res)
    elif whole_image:
        img = cv2.resize(ex.image.permute(1, 2, 0).numpy(), (res, res), interpolation=cv2.INTER_AREA)
        msk = cv2.resize(ex.mask[0].numpy(), (res, res), interpolation=cv2.INTER_NEAREST)
        x = torch.from_numpy(img.reshape(res, res, -1)).permute(2, 0, 1)
        m = torch.from_numpy(msk)[None]
        if not m.any():  # a defect too small to survive the resize
            return defect_crop(ex, res, rng, whole_image=False)
    else:
        top, left = _crop_box(ex.mask, res, rng)
        x = _fit(ex.image[:, top:top + res, left:left + res], res)
        m = _fit(ex.mask[:, top:top + res, left:left + res], res)
    if rng.random() < 0.5:
        x, m = x.flip(-1), m.flip(-1)
    if rng.random() < 0.5:
        x, m = x.flip(-2), m.flip(-2)
    return x.contiguous(), m.contiguous()


class CropSampler:
    """Batches of defect crops, balanced over defect types; all randomness from one numpy Generator."""

    def __init__(self, examples: list[DefectExample], res: int, seed: int, whole_images: bool = False,
                 fit_crops: float = 0.0, fit_min_width: float = 0.0):
        if not examples:
            raise SardInputError("no usable defect images to train on (all were skipped or none matched --defects)")
        self.examples, self.res, self.whole_images, self.fit_crops = examples, res, whole_images, fit_crops
        self.fit_min_width = fit_min_width
        self.by_label: dict[int, list[int]] = {}
        for k, ex in enumerate(examples):
            self.by_label.setdefault(ex.label, []).append(k)
        self.labels = sorted(self.by_label)
        self.rng = np.random.default_rng(seed)

    def batch(self, size: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """x0 [B, C, res, res], mask [B, 1, res, res], label [B]."""
        xs, ms, ys = [], [], []
        for _ in range(size):
            label = self.labels[int(self.rng.integers(len(self.labels)))]
            pool = self.by_label[label]
            ex = self.examples[pool[int(self.rng.integers(len(pool)))]]
            fit = self.fit_crops > 0 and self.rng.random() < self.fit_crops
            x, m = defect_crop(ex, self.res, self.rng, self.whole_images, fit, self.fit_min_width)
            xs.append(x), ms.append(m), ys.append(label)
        return torch.stack(xs), torch.stack(ms), torch.tensor(ys, dtype=torch.long)

    def state(self) -> dict:
        return self.rng.bit_generator.state

    def set_state(self, state: dict) -> None:
        self.rng.bit_generator.state = state
