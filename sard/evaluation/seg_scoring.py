"""The segmentation benchmark's scoring: images and targets for the segmenter, the validation and test
sets, and a run's figures.

The threshold is the one of best F1 on the validation split (its defects and normals pooled), never
chosen on the test set. Per type, over its test images plus all test/good images: pixel AP and
IoU / F1 at that threshold; the false-alarm rate on test/good; the paper's IoU / Acc on defect images
alone as secondary columns (sard.metrics). The references "All defect" and "All background" are
constant scores.
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch

from sard.data.readers import Sample
from sard.evaluation.seg_train import SegData, predict
from sard.imaging import match_channels
from sard.io import read_image, read_mask
from sard.metrics import (SCORE_BINS, ScoreCounts, average_precision, best_threshold, false_alarm, nanmean,
                          score_bins)

REFERENCES = {"all_defect": 1.0, "all_background": 0.0}   # constant defect scores, no training
TYPE_KEYS = ("AP", "IoU", "F1", "IoU_paper", "Acc_paper")


def to_res(image: np.ndarray, res: int, channels: int) -> torch.Tensor:
    """uint8 [C, H, W] from a uint8/uint16 image [H, W(, 3)]: native size for res 0, else res x res (INTER_AREA)."""
    a = match_channels(image, channels)
    if a.dtype == np.uint16:
        a = (a >> 8).astype(np.uint8)
    if res:
        a = cv2.resize(a, (res, res), interpolation=cv2.INTER_AREA).reshape(res, res, channels)
    return torch.from_numpy(np.ascontiguousarray(a.transpose(2, 0, 1)))


def cover_at(mask: np.ndarray, res: int) -> torch.Tensor:
    """float16 [1, H, W]: the 0/1 mask at native size (res 0), else each pixel's defect share at res x res."""
    m = mask.astype(np.float32)
    if res:
        m = cv2.resize(m, (res, res), interpolation=cv2.INTER_AREA)
    return torch.from_numpy(m[None].astype(np.float16))


def load_training(items: list[tuple[Path, Path]], res: int, channels: int) -> SegData:
    """Images and targets from (image, mask) files, at native size (res 0) or res x res."""
    xs, cs = [], []
    for img_path, mask_path in items:
        image = read_image(img_path)
        xs.append(to_res(image, res, channels))
        cs.append(cover_at(read_mask(mask_path, size=image.shape[:2]), res))
    return SegData(xs, cs)


@dataclass
class TestSet:
    images: list[torch.Tensor]      # uint8 [C, h, w] (native, or res x res)
    defects: list[str]              # per image: its type, or "good"
    masks: list[np.ndarray]         # per image: bool [H, W] at native size (all False for good)


def load_test(samples: list[Sample], res: int, channels: int) -> TestSet:
    xs, types, masks = [], [], []
    for s in samples:
        image = read_image(s.image)
        xs.append(to_res(image, res, channels))
        types.append(s.defect if s.mask is not None else "good")
        masks.append(read_mask(s.mask, size=image.shape[:2]) if s.mask is not None
                     else np.zeros(image.shape[:2], bool))
    return TestSet(xs, types, masks)


def model_scores(model) -> callable:
    """score(image uint8 [C, h, w], native (H, W)) -> defect probability float32 [H, W] (bilinear back
    to native size when the image was resized)."""
    def score(image: torch.Tensor, size: tuple[int, int]) -> np.ndarray:
        p = predict(model, image)
        return p if p.shape == size else cv2.resize(p, size[::-1], interpolation=cv2.INTER_LINEAR)
    return score


def constant_scores(value: float) -> callable:
    """The reference "segmenters": the same defect score everywhere."""
    return lambda image, size: np.full(size, value, np.float32)


def evaluate(score, val: TestSet, test: TestSet, defects: list[str]) -> dict:
    """Pick the threshold of best F1 on the validation images (their defects and normals pooled), then
    count the test images per type and for test/good at native size, per score bin; false alarms
    (a defect region >= 10 px) on test/good at that threshold. The test set never moves the threshold."""
    val_counts = ScoreCounts.empty()
    for image, gt in zip(val.images, val.masks):
        val_counts.update(score(image, gt.shape), gt)
    k = best_threshold(val_counts)
    counts = {d: ScoreCounts.empty() for d in defects + ["good"]}
    alarms = []
    for image, d, gt in zip(test.images, test.defects, test.masks):
        p = score(image, gt.shape)
        counts[d].update(p, gt)
        if d == "good":
            alarms.append(false_alarm(score_bins(p) >= k, min_region=10))
    return {"threshold_bin": k, "bins": SCORE_BINS, "val": val_counts.to_dict(),
            "counts": {d: c.to_dict() for d, c in counts.items()}, "false_alarms": int(sum(alarms)),
            "good_images": len(alarms)}


def run_metrics(ev: dict) -> dict:
    """The figures of one run from its counts: per type AP, IoU and F1 over the type's test images plus
    all test/good images (at the validation threshold), and the paper's IoU / Acc on the type's defect
    images alone (secondary); their means over types; the false-alarm rate on test/good."""
    k, good = ev["threshold_bin"], ScoreCounts.from_dict(ev["counts"]["good"])
    types = {}
    for d, c in ev["counts"].items():
        if d == "good":
            continue
        own = ScoreCounts.from_dict(c)
        pooled = own + good
        types[d] = {"AP": average_precision(pooled), "IoU": pooled.at(k).iou_defect, "F1": pooled.at(k).f1_defect,
                    "IoU_paper": own.at(k).iou_defect, "Acc_paper": own.at(k).acc_defect}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        means = {key: nanmean(r[key] for r in types.values()) for key in TYPE_KEYS}
    return {"types": types, **means, "threshold": k / ev["bins"],
            "false_alarm_rate": ev["false_alarms"] / ev["good_images"] if ev["good_images"] else math.nan}
