"""IoU, R1@m / mIoU and R5@m / mAP@m on hand-computed cases, including the >= versus > convention at the threshold."""

import numpy as np
import pytest

from tvgkit.metrics import MAP_THRESHOLDS, average_precision, evaluate, evaluate_ranked, iou, iou_array, iou_matrix


@pytest.mark.parametrize(
    ("pred", "gt", "expected"),
    [
        ((1.0, 3.0), (1.0, 3.0), 1.0),  # identical
        ((2.0, 3.0), (0.0, 4.0), 0.25),  # contained: 1 / 4
        ((0.0, 4.0), (2.0, 3.0), 0.25),  # containing (symmetric)
        ((0.0, 2.0), (1.0, 3.0), 1.0 / 3.0),  # partial overlap: 1 / 3
        ((0.0, 1.0), (1.0, 2.0), 0.0),  # touching at one point
        ((0.0, 1.0), (5.0, 6.0), 0.0),  # disjoint
        ((1.0, 1.0), (0.0, 2.0), 0.0),  # zero-length prediction inside the window
        ((1.0, 1.0), (1.0, 1.0), 0.0),  # both zero-length: empty union, guarded
    ],
)
def test_iou_hand_computed(pred, gt, expected):
    assert iou(pred, gt) == pytest.approx(expected, abs=1e-12)
    assert iou_matrix([pred], [gt])[0, 0] == pytest.approx(expected, abs=1e-12)
    assert iou_array([pred], [gt])[0] == pytest.approx(expected, abs=1e-12)


def test_vectorised_forms_agree_with_scalar_iou():
    rng = np.random.default_rng(0)
    a = np.sort(rng.uniform(0, 10, size=(50, 2)), axis=1)
    b = np.sort(rng.uniform(0, 10, size=(7, 2)), axis=1)
    expected = np.array([[iou(p, g) for g in b] for p in a])
    np.testing.assert_allclose(iou_matrix(a, b), expected, atol=1e-12)
    np.testing.assert_allclose(iou_array(a[:7], b), np.diag(expected[:7]), atol=1e-12)


def test_evaluate_percentages_and_miou():
    # IoUs 1.0, 0.25, 1/3, 0.0 -> R1@0.1: 3/4, R1@0.3: 2/4, R1@0.5: 1/4, R1@0.7: 1/4, mIoU: (1 + .25 + 1/3) / 4
    preds = [(1, 3), (2, 3), (0, 2), (0, 1)]
    gts = [(1, 3), (0, 4), (1, 3), (5, 6)]
    out = evaluate(preds, gts)
    assert list(out) == ["R1@0.1", "R1@0.3", "R1@0.5", "R1@0.7", "mIoU"]
    assert out["R1@0.1"] == 75.0
    assert out["R1@0.3"] == 50.0
    assert out["R1@0.5"] == 25.0
    assert out["R1@0.7"] == 25.0
    assert out["mIoU"] == pytest.approx(100 * (1 + 0.25 + 1 / 3) / 4)


def test_strict_differs_only_at_the_boundary():
    # IoU exactly 0.5 (1 / 2) and exactly 0.7 (7 / 10): hits with >=, misses with > (the 2D-TAN convention).
    preds, gts = [(0.0, 1.0), (0.0, 7.0)], [(0.0, 2.0), (0.0, 10.0)]
    loose, strict = evaluate(preds, gts), evaluate(preds, gts, strict=True)
    assert loose["R1@0.5"] == 100.0 and strict["R1@0.5"] == 50.0
    assert loose["R1@0.7"] == 50.0 and strict["R1@0.7"] == 0.0
    assert loose["R1@0.3"] == strict["R1@0.3"] == 100.0
    assert loose["mIoU"] == strict["mIoU"] == pytest.approx(60.0)


def test_float_error_does_not_move_a_query_across_the_threshold():
    # 0.8 s of an 8 s window: IoU 0.1 on paper, 0.09999999999999998 in floating point.
    assert iou((4.0, 4.8), (0.0, 8.0)) < 0.1
    assert evaluate([(4.0, 4.8)], [(0.0, 8.0)])["R1@0.1"] == 100.0
    assert evaluate([(4.0, 4.8)], [(0.0, 8.0)], strict=True)["R1@0.1"] == 0.0


def test_several_ground_truth_windows_use_the_best_match():
    gts = [[(10.0, 20.0), (0.0, 2.0)], (0.0, 4.0)]
    out = evaluate([(0.0, 1.0), (0.0, 1.0)], gts)  # IoUs: max(0, 0.5) = 0.5 and 0.25
    assert out["R1@0.5"] == 50.0
    assert out["mIoU"] == pytest.approx(37.5)


def test_bad_input_is_a_clear_error():
    with pytest.raises(ValueError, match="2 predictions but 1 ground truths"):
        evaluate([(0, 1), (0, 1)], [(0, 1)])
    with pytest.raises(ValueError, match="no queries"):
        evaluate([], [])


def test_map_thresholds_are_moment_detrs():
    assert MAP_THRESHOLDS == (0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95)


def test_ranked_metrics_rank_by_score_and_keep_the_top1_contract():
    # the best-scored span misses (IoU 0), the second is exact: R1 0, R5 100, AP = 1/2 (precision 1/2 at recall 1)
    out = evaluate_ranked([[(0.0, 10.0, 0.5), (20.0, 30.0, 0.9)]], [(0.0, 10.0)])
    top1 = evaluate([(20.0, 30.0)], [(0.0, 10.0)])
    assert {k: out[k] for k in top1} == top1
    assert out["R1@0.5"] == 0.0 and out["R5@0.1"] == out["R5@0.7"] == 100.0
    assert out["mAP@0.5"] == pytest.approx(50.0) and out["mAP@avg"] == pytest.approx(50.0)


def test_average_precision_two_windows_hand_computed():
    # windows [0,10] and [20,30]; spans in score order: [0,10] (IoU 1 with w1), [1,10] (0.9 with w1, already
    # matched: a false positive), [20,26] (0.6 with w2). Up to m = 0.6: tp fp tp, precision 1, 1/2, 2/3,
    # interpolated 1, 2/3, 2/3 -> AP (1 + 2/3) / 2 = 5/6. Above 0.6 the third misses: AP 1/2.
    gts = [[(0.0, 10.0), (20.0, 30.0)]]
    ranked = [[(0.0, 10.0, 0.9), (1.0, 10.0, 0.8), (20.0, 26.0, 0.7)]]
    ious = iou_matrix(np.array(ranked[0])[:, :2], np.array(gts[0]))
    assert [average_precision(ious, m) for m in (0.5, 0.6, 0.65, 0.95)] == pytest.approx([5 / 6, 5 / 6, 0.5, 0.5])
    assert average_precision(ious, 0.6, strict=True) == pytest.approx(0.5)  # 0.6 > 0.6 fails
    out = evaluate_ranked(ranked, gts)
    assert out["mAP@0.5"] == pytest.approx(100 * 5 / 6)
    assert out["mAP@0.75"] == pytest.approx(50.0)
    assert out["mAP@avg"] == pytest.approx(100 * (3 * 5 / 6 + 7 * 0.5) / 10)  # 60.0
    assert evaluate_ranked(ranked, gts, strict=True)["mAP@avg"] == pytest.approx(100 * (2 * 5 / 6 + 8 * 0.5) / 10)


def test_r5_looks_at_five_spans_and_map_at_ten():
    miss = [(50.0 + i, 51.0 + i, 1.0 - i / 100) for i in range(10)]
    hit_5th = miss[:4] + [(0.0, 10.0, 0.955)]  # scores 1.0 .. 0.97, then the hit
    hit_6th = miss[:5] + [(0.0, 10.0, 0.955)]
    hit_11th = miss + [(0.0, 10.0, 0.5)]
    out = evaluate_ranked([hit_5th, hit_6th, hit_11th], [(0.0, 10.0)] * 3)
    assert out["R5@0.5"] == pytest.approx(100 / 3)  # only the first query
    # AP: hit at rank 5 -> 1/5, at rank 6 -> 1/6, at rank 11 -> not looked at: 0
    assert out["mAP@0.5"] == pytest.approx(100 * (1 / 5 + 1 / 6 + 0) / 3)


def test_ranked_bad_input_is_a_clear_error():
    with pytest.raises(ValueError, match="no predicted span"):
        evaluate_ranked([[]], [(0.0, 1.0)])
    with pytest.raises(ValueError, match="2 predictions but 1"):
        evaluate_ranked([[(0, 1, 1)], [(0, 1, 1)]], [(0.0, 1.0)])
