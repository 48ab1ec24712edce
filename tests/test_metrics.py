"""Segmentation metrics on masks small enough to count by hand."""
import math

import numpy as np
import pytest
import torch

from sard.metrics import (SCORE_BINS, ScoreCounts, SegCounts, average_precision, best_threshold, false_alarm,
                          false_alarm_rate, mean_spread, per_type_table, within_spread)


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


# -- scores: AP, the threshold of best F1, pooling with good images ---------------------------------------

def test_perfect_prediction_scores_one():
    _, gt = hand_case()
    good = np.zeros((4, 4), bool)
    c = ScoreCounts.empty().update(gt.astype(float), gt) + ScoreCounts.empty().update(good.astype(float), good)
    k = best_threshold(c)
    assert average_precision(c) == 1.0
    assert c.at(k).iou_defect == 1.0 and c.at(k).f1_defect == 1.0 and c.at(k).acc_defect == 1.0


def test_ap_by_hand():
    # scores 0.9 defect, 0.8 background, 0.7 defect, 0.1 background: AP = 1 * 1/2 + 2/3 * 1/2
    c = ScoreCounts.empty().update([0.9, 0.8, 0.7, 0.1], [1, 0, 1, 0])
    assert average_precision(c) == pytest.approx(0.5 + 1 / 3)
    # ties count as one threshold: all four at 0.5 -> the prevalence
    assert average_precision(ScoreCounts.empty().update([0.5] * 4, [1, 0, 1, 0])) == pytest.approx(0.5)
    assert math.isnan(average_precision(ScoreCounts.empty().update([0.3, 0.4], [0, 0])))


def test_ap_of_a_random_score_is_the_prevalence():
    rng = np.random.default_rng(0)
    gt = rng.random((400, 500)) < 0.07
    c = ScoreCounts.empty().update(rng.random(gt.shape), gt)
    assert average_precision(c) == pytest.approx(gt.mean(), abs=0.005)
    # a score that ranks defects first is far above it
    assert average_precision(ScoreCounts.empty().update(np.where(gt, 0.9, 0.1), gt)) == 1.0


def test_all_defect_scores_low_pooled_iou_when_good_images_dominate():
    defect = np.zeros((10, 10), bool)
    defect[:2, :5] = True                               # 10 defect pixels on one image
    c_type = ScoreCounts.empty().update(np.ones((10, 10)), defect)
    c_good = ScoreCounts.empty()
    for _ in range(9):                                  # nine good images, all marked defect
        c_good.update(np.ones((10, 10)), np.zeros((10, 10), bool))
    k = best_threshold(c_type + c_good)
    assert c_type.at(k).iou_defect == pytest.approx(0.1)            # on defect images alone
    assert (c_type + c_good).at(k).iou_defect == pytest.approx(0.01)  # pooled with the good images
    assert (c_type + c_good).at(k).f1_defect == pytest.approx(2 * 10 / (2 * 10 + 990))
    assert average_precision(c_type + c_good) == pytest.approx(0.01)
    # "All background" (score 0) predicts nothing at any threshold best_threshold can pick
    zero = ScoreCounts.empty().update(np.zeros((10, 10)), defect)
    assert zero.at(best_threshold(zero)).tp == 0 and zero.at(best_threshold(zero)).fp == 0


def test_threshold_of_best_f1_and_counts_at_it():
    # defects score 0.6-0.7, background 0.2 and one background pixel at 0.65
    score = np.array([0.6, 0.7, 0.2, 0.2, 0.65])
    gt = np.array([1, 1, 0, 0, 0])
    c = ScoreCounts.empty().update(score, gt)
    k = best_threshold(c)
    assert 0.2 < k / SCORE_BINS <= 0.6                  # both defects in, F1 = 4/5, the lowest such k
    assert k == int(0.2 * SCORE_BINS) + 1
    assert c.at(k) == SegCounts(tp=2, fp=1, fn=0, tn=2)
    assert c.at(0).fp == 3 and c.at(SCORE_BINS).tp == 0
    # merging equals counting the concatenation, and the JSON form round-trips
    a, b = ScoreCounts.empty().update(score[:2], gt[:2]), ScoreCounts.empty().update(score[2:], gt[2:])
    assert ((a + b).pos == c.pos).all() and ((a + b).neg == c.neg).all()
    back = ScoreCounts.from_dict(c.to_dict())
    assert (back.pos == c.pos).all() and (back.neg == c.neg).all()


def test_scores_out_of_range_raise():
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        ScoreCounts.empty().update([1.5], [1])
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        ScoreCounts.empty().update([float("nan")], [1])
    with pytest.raises(ValueError, match="shape"):
        ScoreCounts.empty().update([0.5, 0.5], [1])
