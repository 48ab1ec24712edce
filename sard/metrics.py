"""Segmentation metrics of the paper's evaluation (DESIGN.md section 2), from pixel counts.

Two classes, defect (positive) and background. Per defect type the counts of all its test images
are pooled (as mmsegmentation's IoUMetric does over a test set), then:
    IoU_defect = TP / (TP + FP + FN)          mmseg per-class IoU of the defect class
    Acc_defect = TP / (TP + FN)               mmseg per-class Acc = recall of the defect class
    IoU_bg     = TN / (TN + FN + FP)
    mIoU_2cls  = mean(IoU_defect, IoU_bg)     mmseg's mIoU over {background, defect}
    aAcc       = (TP + TN) / (TP + FP + FN + TN)
    F1_defect  = 2 TP / (2 TP + FP + FN)      Dice of the defect class
The paper's tables: "mIoU" = mean over defect types of IoU_defect, "Acc" = mean over defect
types of Acc_defect (per_type_table). Values are fractions in [0, 1], not percent.

Scores (defect probabilities in [0, 1]) are counted per bin in ScoreCounts, mergeable like
SegCounts: it gives the threshold-free pixel average precision (average_precision), the counts at
any threshold k / bins (ScoreCounts.at), and the threshold of best F1 (best_threshold), which the
benchmark picks on a validation split and applies, unchanged, to the test set.

Empty cases: a zero denominator gives NaN, never 0 or 1 (Acc_defect of a type with no defect
pixel is undefined, not perfect). Aggregations skip NaN and say so: a RuntimeWarning naming
how many were skipped, and per_type_table lists the skipped types.

Inputs are numpy arrays, anything numpy can convert, or torch tensors (converted; torch is
not imported here). Masks are bool or 0/1 arrays of equal shape ([H, W], or [B, H, W]).
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import cv2
import numpy as np


def as_mask(a, what: str = "mask") -> np.ndarray:
    """bool array from a bool / 0-1 array or tensor; anything else (0/255, probabilities) raises."""
    if hasattr(a, "detach"):                       # torch tensor, without importing torch
        a = a.detach().cpu().numpy()
    a = np.asarray(a)
    if a.dtype == bool:
        return a
    if not np.isin(a, (0, 1)).all():
        raise ValueError(f"{what} must be bool or 0/1; got values {np.unique(a)[:5]}... "
                         f"(threshold predictions, divide 0/255 masks by 255)")
    return a.astype(bool)


def ratio(num: int, den: int) -> float:
    """num / den, NaN when den is 0."""
    return num / den if den else math.nan


def nanmean(values, what: str = "values") -> float:
    """Mean of the non-NaN values, warning how many NaN were skipped; NaN if none is left."""
    v = np.asarray(list(values), dtype=float)
    keep = ~np.isnan(v)
    if not keep.all():
        warnings.warn(f"skipped {int((~keep).sum())} of {v.size} NaN {what}", RuntimeWarning, stacklevel=2)
    return float(v[keep].mean()) if keep.any() else math.nan


@dataclass
class SegCounts:
    """Pixel counts for the defect class, pooled over images: update per image, merge with +."""
    tp: int = 0
    fp: int = 0
    fn: int = 0
    tn: int = 0

    def update(self, pred, gt) -> SegCounts:
        """Add one image (or a batch): pred, gt bool / 0-1 of equal shape, True = defect."""
        p, g = as_mask(pred, "pred"), as_mask(gt, "gt")
        if p.shape != g.shape:
            raise ValueError(f"pred {p.shape} and gt {g.shape} differ in shape")
        tp = int(np.count_nonzero(p & g))
        fp = int(np.count_nonzero(p)) - tp
        fn = int(np.count_nonzero(g)) - tp
        self.tp += tp
        self.fp += fp
        self.fn += fn
        self.tn += p.size - tp - fp - fn
        return self

    def __add__(self, other: SegCounts) -> SegCounts:
        return SegCounts(self.tp + other.tp, self.fp + other.fp, self.fn + other.fn, self.tn + other.tn)

    @property
    def total(self) -> int:
        return self.tp + self.fp + self.fn + self.tn

    @property
    def iou_defect(self) -> float:
        """TP / (TP + FP + FN)."""
        return ratio(self.tp, self.tp + self.fp + self.fn)

    @property
    def acc_defect(self) -> float:
        """TP / (TP + FN): the paper's "Acc", recall of the defect class."""
        return ratio(self.tp, self.tp + self.fn)

    @property
    def f1_defect(self) -> float:
        """2 TP / (2 TP + FP + FN): Dice of the defect class."""
        return ratio(2 * self.tp, 2 * self.tp + self.fp + self.fn)

    @property
    def iou_background(self) -> float:
        """TN / (TN + FN + FP)."""
        return ratio(self.tn, self.tn + self.fn + self.fp)

    @property
    def miou_2class(self) -> float:
        """Mean of IoU_defect and IoU_background (a NaN one skipped, as mmseg's nanmean)."""
        ious = [x for x in (self.iou_defect, self.iou_background) if not math.isnan(x)]
        return sum(ious) / len(ious) if ious else math.nan

    @property
    def aacc(self) -> float:
        """(TP + TN) / all pixels."""
        return ratio(self.tp + self.tn, self.total)


SCORE_BINS = 1000     # thresholds k / 1000: finer than any difference a seed spread resolves


def score_bins(score, bins: int = SCORE_BINS) -> np.ndarray:
    """Bin index int [...] of scores in [0, 1] (NaN or outside raises): floor(score * bins), 1.0 in the
    top bin, so "score >= k / bins" is "bin >= k"."""
    if hasattr(score, "detach"):
        score = score.detach().cpu().numpy()
    s = np.asarray(score, dtype=np.float64)
    if s.size and not (np.isfinite(s).all() and s.min() >= 0 and s.max() <= 1):
        raise ValueError("scores must be finite and in [0, 1] (defect probabilities)")
    return np.minimum((s * bins).astype(np.int64), bins - 1)


@dataclass
class ScoreCounts:
    """Defect (pos) and background (neg) pixel counts per score bin, pooled over images; merge with +."""
    pos: np.ndarray       # int64 [bins]
    neg: np.ndarray       # int64 [bins]

    @classmethod
    def empty(cls, bins: int = SCORE_BINS) -> ScoreCounts:
        return cls(np.zeros(bins, np.int64), np.zeros(bins, np.int64))

    @property
    def bins(self) -> int:
        return len(self.pos)

    def update(self, score, gt) -> ScoreCounts:
        """Add one image (or a batch): score in [0, 1], gt bool / 0-1 of the same shape, True = defect."""
        g = as_mask(gt, "gt")
        b = score_bins(score, self.bins)
        if b.shape != g.shape:
            raise ValueError(f"score {b.shape} and gt {g.shape} differ in shape")
        self.pos += np.bincount(b[g], minlength=self.bins)
        self.neg += np.bincount(b[~g], minlength=self.bins)
        return self

    def __add__(self, other: ScoreCounts) -> ScoreCounts:
        return ScoreCounts(self.pos + other.pos, self.neg + other.neg)

    def at(self, k: int) -> SegCounts:
        """Pixel counts when "defect" = score >= k / bins (k = 0: every pixel; k = bins: none)."""
        tp, fp = int(self.pos[k:].sum()), int(self.neg[k:].sum())
        return SegCounts(tp=tp, fp=fp, fn=int(self.pos.sum()) - tp, tn=int(self.neg.sum()) - fp)

    def to_dict(self) -> dict:
        return {"pos": self.pos.tolist(), "neg": self.neg.tolist()}

    @classmethod
    def from_dict(cls, d: dict) -> ScoreCounts:
        return cls(np.asarray(d["pos"], np.int64), np.asarray(d["neg"], np.int64))


def average_precision(c: ScoreCounts) -> float:
    """Pixel AP = sum over thresholds (high to low) of precision x recall gained, pixels of one bin
    taken together (as sklearn's average_precision_score treats tied scores). A constant score gives
    the defect prevalence; NaN without defect pixels."""
    tp = np.cumsum(c.pos[::-1])                  # [bins] defect pixels at or above each threshold
    fp = np.cumsum(c.neg[::-1])
    if tp[-1] == 0:
        return math.nan
    gained = np.diff(tp, prepend=0)              # new defect pixels at this threshold
    keep = gained > 0
    return float((gained[keep] / tp[-1] * tp[keep] / (tp[keep] + fp[keep])).sum())


def best_threshold(c: ScoreCounts) -> int:
    """k in 1..bins-1 maximising F1_defect (so IoU_defect too: IoU = F1 / (2 - F1)) of score >= k / bins;
    the lowest such k on a tie. k = 0 (every pixel defect) is never chosen, so a constant-0 score stays
    "all background"."""
    tp = np.cumsum(c.pos[::-1])[::-1][1:]         # [bins - 1] at k = 1..bins-1
    fp = np.cumsum(c.neg[::-1])[::-1][1:]
    fn = int(c.pos.sum()) - tp
    den = 2 * tp + fp + fn
    f1 = np.where(den > 0, 2 * tp / np.maximum(den, 1), 0.0)
    return int(np.argmax(f1)) + 1


def false_alarm(pred, min_region: int = 10) -> bool:
    """True if a prediction on a good image holds a defect region (8-connected) of >= min_region px."""
    p = as_mask(pred, "pred")
    if p.ndim != 2:
        raise ValueError(f"false_alarm takes one [H, W] mask, got shape {p.shape}")
    _, _, stats, _ = cv2.connectedComponentsWithStats(p.astype(np.uint8), connectivity=8)
    return bool((stats[1:, cv2.CC_STAT_AREA] >= min_region).any())  # label 0 is the background


def false_alarm_rate(preds, min_region: int = 10) -> float:
    """Share of good images whose prediction raises a false alarm; NaN for no images."""
    alarms = [false_alarm(p, min_region) for p in preds]
    return ratio(sum(alarms), len(alarms))


def per_type_table(counts_by_type: dict[str, SegCounts]) -> dict:
    """The paper's per-category columns and their means.

    Returns {"types": {name: {"IoU", "Acc", "mIoU_2class", "aAcc"}},
             "mIoU": mean IoU over types, "Acc": mean Acc over types,
             "mIoU_2class": mean over types, "aAcc": mean over types,
             "skipped": {"IoU": [types with NaN IoU], "Acc": [...], ...}}.
    """
    types = {name: {"IoU": c.iou_defect, "Acc": c.acc_defect, "mIoU_2class": c.miou_2class, "aAcc": c.aacc}
             for name, c in counts_by_type.items()}
    table: dict = {"types": types, "skipped": {}}
    for key in ("IoU", "Acc", "mIoU_2class", "aAcc"):
        values = {name: row[key] for name, row in types.items()}
        table["skipped"][key] = [name for name, v in values.items() if math.isnan(v)]
        with warnings.catch_warnings():        # the skipped types are listed in the table instead
            warnings.simplefilter("ignore", RuntimeWarning)
            table["mIoU" if key == "IoU" else key] = nanmean(values.values())
    return table


def mean_spread(values: list[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (ddof 1) over seeds; spread 0 for a single value.
    NaN values are skipped with a warning; none left -> (NaN, NaN)."""
    v = np.asarray(values, dtype=float)
    if np.isnan(v).any():
        warnings.warn(f"skipped {int(np.isnan(v).sum())} of {v.size} NaN values", RuntimeWarning, stacklevel=2)
        v = v[~np.isnan(v)]
    if v.size == 0:
        return math.nan, math.nan
    return float(v.mean()), float(v.std(ddof=1)) if v.size > 1 else 0.0


def within_spread(a: list[float], b: list[float]) -> bool:
    """True when |mean_a - mean_b| < max(spread_a, spread_b): the difference is within seed noise."""
    mean_a, spread_a = mean_spread(a)
    mean_b, spread_b = mean_spread(b)
    return bool(abs(mean_a - mean_b) < max(spread_a, spread_b))
