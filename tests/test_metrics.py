"""Segmentation metrics on masks small enough to count by hand."""
import math

import numpy as np
import pytest
import torch

from sard.metrics import (SegCounts, false_alarm, false_alarm_rate, mean_spread, per_type_table,
                          within_spread)


def hand_case():
    """4x4: GT = top-left 2x2 block + pixel (3, 3); prediction = rows 0-1, columns 1-2."""
    gt = np.zeros((4, 4), bool)
    gt[:2, :2] = True
    gt[3, 3] = True
    pred = np.zeros((4, 4), bool)
    pred[:2, 1:3] = True
    return pred, gt


def test_counts_and_metrics_by_hand():
    pred, gt = hand_case()
    c = SegCounts().update(pred, gt)
    # TP: (0,1), (1,1); FP: (0,2), (1,2); FN: (0,0), (1,0), (3,3); TN: the other 9.
    assert (c.tp, c.fp, c.fn, c.tn) == (2, 2, 3, 9)
    assert c.iou_defect == pytest.approx(2 / 7)
    assert c.acc_defect == pytest.approx(2 / 5)
    assert c.iou_background == pytest.approx(9 / 14)
    assert c.miou_2class == pytest.approx((2 / 7 + 9 / 14) / 2)
    assert c.aacc == pytest.approx(11 / 16)


def test_tensor_and_01_inputs_match_bool():
    pred, gt = hand_case()
    a = SegCounts().update(torch.from_numpy(pred).float(), torch.from_numpy(gt).to(torch.uint8))
    b = SegCounts().update(pred.astype(np.int64), gt)
    assert a == b == SegCounts(2, 2, 3, 9)


def test_bad_inputs_raise():
    pred, gt = hand_case()
    with pytest.raises(ValueError, match="255"):
        SegCounts().update(pred, gt.astype(np.uint8) * 255)
    with pytest.raises(ValueError, match="shape"):
        SegCounts().update(pred, gt[:3])


def test_empty_prediction():
    _, gt = hand_case()
    c = SegCounts().update(np.zeros_like(gt), gt)
    assert c.iou_defect == 0.0
    assert c.acc_defect == 0.0


def test_empty_ground_truth():
    gt = np.zeros((4, 4), bool)
    pred = gt.copy()
    pred[0, 0] = True
    with_fp = SegCounts().update(pred, gt)
    assert math.isnan(with_fp.acc_defect)
    assert with_fp.iou_defect == 0.0
    clean = SegCounts().update(gt, gt)
    assert math.isnan(clean.acc_defect)
    assert math.isnan(clean.iou_defect)
    # Background alone is perfect; the 2-class mIoU skips the undefined defect IoU.
    assert clean.iou_background == 1.0 and clean.miou_2class == 1.0 and clean.aacc == 1.0


def test_merging_equals_counting_the_concatenation():
    rng = np.random.default_rng(0)
    p1, g1 = rng.random((2, 5, 7)) > 0.6
    p2, g2 = rng.random((2, 6, 7)) > 0.3
    merged = SegCounts().update(p1, g1) + SegCounts().update(p2, g2)
    joined = SegCounts().update(np.concatenate([p1, p2]), np.concatenate([g1, g2]))
    assert merged == joined
    assert merged.total == 5 * 7 + 6 * 7
    # update accumulates in place as + does
    acc = SegCounts()
    acc.update(p1, g1).update(p2, g2)
    assert acc == merged


def test_false_alarm_region_size_and_connectivity():
    img = np.zeros((12, 12), bool)
    nine = img.copy()
    nine[1:4, 1:4] = True                     # 3x3 = 9 px
    assert not false_alarm(nine, min_region=10)
    ten = nine.copy()
    ten[4, 1] = True                          # + 1 px touching: 10 px
    assert false_alarm(ten, min_region=10)
    diagonal = img.copy()
    diagonal[np.arange(10), np.arange(10)] = True   # 10 px joined only by corners
    assert false_alarm(diagonal, min_region=10)
    apart = img.copy()
    apart[0, :5] = True
    apart[5, :5] = True                       # two 5-px regions, not touching
    assert not false_alarm(apart, min_region=10)
    assert false_alarm(apart, min_region=5)
    assert not false_alarm(img)
    assert false_alarm_rate([nine, ten, diagonal, img]) == pytest.approx(0.5)
    assert math.isnan(false_alarm_rate([]))


def test_per_type_table_means_skip_nan():
    counts = {
        "crack": SegCounts(tp=2, fp=2, fn=3, tn=9),     # IoU 2/7, Acc 2/5
        "hole": SegCounts(tp=6, fp=0, fn=2, tn=8),      # IoU 6/8, Acc 6/8
        "none": SegCounts(tp=0, fp=4, fn=0, tn=12),     # IoU 0, Acc NaN (no defect pixel)
    }
    t = per_type_table(counts)
    assert t["types"]["hole"]["IoU"] == pytest.approx(0.75)
    assert t["mIoU"] == pytest.approx((2 / 7 + 0.75 + 0.0) / 3)
    assert t["Acc"] == pytest.approx((2 / 5 + 0.75) / 2)
    assert t["skipped"]["Acc"] == ["none"] and t["skipped"]["IoU"] == []
    assert t["aAcc"] == pytest.approx((11 / 16 + 14 / 16 + 12 / 16) / 3)


def test_mean_spread_and_within_spread():
    assert mean_spread([1.0, 2.0, 3.0]) == pytest.approx((2.0, 1.0))   # sample std, ddof 1
    assert mean_spread([5.0]) == (5.0, 0.0)
    with pytest.warns(RuntimeWarning, match="NaN"):
        assert mean_spread([1.0, float("nan"), 3.0]) == pytest.approx((2.0, math.sqrt(2)))
    assert within_spread([1.0, 2.0, 3.0], [2.5, 2.5])        # |2 - 2.5| < 1
    assert not within_spread([1.0, 2.0, 3.0], [4.0, 4.0])    # |2 - 4| >= 1
    assert not within_spread([1.0, 2.0, 3.0], [3.0])         # |2 - 3| = 1 is not < 1
    assert not within_spread([0.5], [0.6])                    # one seed each: no spread
