"""IoU and R1@m / mIoU on hand-computed cases, including the >= versus > convention at the threshold."""

import numpy as np
import pytest

from tvgkit.metrics import evaluate, iou, iou_array, iou_matrix


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
