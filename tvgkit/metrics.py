"""Temporal IoU and the grounding metrics R1@m, mIoU, R5@m and mAP@m, with the hit convention made explicit.

Papers disagree on one character: 2D-TAN counts a hit when IoU > m, almost everyone else when IoU >= m. The
difference only matters at the boundary (e.g. IoU exactly 0.5), but on Charades-STA, whose times carry one decimal,
exact ties happen; ``strict`` picks the convention so a number can be compared with the paper it claims to match.

R1@m and mIoU score one span per query (:func:`evaluate`). The field also scores ranked, scored spans
(:func:`evaluate_ranked`): R5@m (2D-TAN, MMN: a hit when any of the 5 best spans reaches IoU m) and mAP@m
(Moment-DETR: per-query average precision of the 10 best spans against all ground-truth windows, averaged over
queries; mAP@avg averages mAP over m = 0.5, 0.55, ..., 0.95). The spans are scored as given: 2D-TAN first drops
spans overlapping a better one (non-maximum suppression), so its R5 of near-duplicate spans would be higher.

Checked once against Moment-DETR's standalone evaluator (github.com/jayleicn/moment_detr, ``standalone_eval/eval.py``
and ``utils.py``, commit b7e553ac3b0c) on the ``tvgkit eval --predictions`` file of a 2-epoch quick-default run (884
test queries, 10 spans each): its MR-full-mAP 50.62, mAP@0.5 70.03, mAP@0.75 53.84, R1@0.5 60.07 and R1@0.7 46.49
equal ours to its two printed decimals, and its per-query AP equals :func:`average_precision` at all 10 thresholds
for every query (largest difference 0). Its two-window AP of the hand-computed test case is the same 5/6 and 1/2.
(Its command line stops on a set with no moment longer than 30 s, an empty length bucket; its functions were called
directly.)
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

THRESHOLDS = (0.1, 0.3, 0.5, 0.7)
METRIC_KEYS = tuple(f"R1@{m}" for m in THRESHOLDS) + ("mIoU",)
#: mAP@m thresholds as Moment-DETR's evaluator draws them: 0.5:0.05:0.95, rounded to two decimals.
MAP_THRESHOLDS = tuple(round(0.5 + 0.05 * i, 2) for i in range(10))
RANKED_KEYS = tuple(f"R5@{m}" for m in THRESHOLDS) + ("mAP@0.5", "mAP@0.75", "mAP@avg")
R5_TOP = 5  # spans per query that R5@m looks at
MAP_TOP = 10  # spans per query that mAP looks at (Moment-DETR's max_pred_windows)
#: IoUs are compared with m after rounding to this many decimals, so an IoU that is exactly m on paper (0.8 s of an
#: 8 s window computes as 0.09999999999999998) counts as equal to m. Reference evaluators compare raw floats; on the
#: ActivityNet test split the whole-video baseline's R1@0.5 differs by 6 of 17,031 queries between the two.
DECIMALS = 9


def iou(pred: Sequence[float], gt: Sequence[float]) -> float:
    """Temporal IoU of two ``(start, end)`` spans in seconds; 0.0 when the union is empty (two zero-length spans)."""
    (ps, pe), (gs, ge) = pred, gt
    inter = max(0.0, min(pe, ge) - max(ps, gs))
    union = max(pe, ge) - min(ps, gs)
    return float(inter / union) if union > 0 else 0.0


def iou_matrix(preds: np.ndarray, gts: np.ndarray) -> np.ndarray:
    """IoU of every prediction (rows, ``[n, 2]``) against every window (columns, ``[k, 2]``): shape ``[n, k]``.

    The union is computed as ``len(pred) + len(gt) - inter``, which equals the hull length whenever the spans
    overlap and gives IoU 0 otherwise, so the hull is never needed.
    """
    p = np.asarray(preds, dtype=np.float64).reshape(-1, 2)
    g = np.asarray(gts, dtype=np.float64).reshape(-1, 2)
    inter = np.clip(np.minimum(p[:, None, 1], g[None, :, 1]) - np.maximum(p[:, None, 0], g[None, :, 0]), 0.0, None)
    union = (p[:, None, 1] - p[:, None, 0]) + (g[None, :, 1] - g[None, :, 0]) - inter
    with np.errstate(invalid="ignore", divide="ignore"):
        out = np.where(union > 0, inter / np.where(union > 0, union, 1.0), 0.0)
    return out


def iou_array(preds: np.ndarray, gts: np.ndarray) -> np.ndarray:
    """Element-wise IoU of paired spans ``preds[i]`` and ``gts[i]`` (both ``[n, 2]``): shape ``[n]``."""
    p = np.asarray(preds, dtype=np.float64).reshape(-1, 2)
    g = np.asarray(gts, dtype=np.float64).reshape(-1, 2)
    if len(p) != len(g):
        raise ValueError(f"iou_array: {len(p)} predictions but {len(g)} ground truths")
    inter = np.clip(np.minimum(p[:, 1], g[:, 1]) - np.maximum(p[:, 0], g[:, 0]), 0.0, None)
    union = (p[:, 1] - p[:, 0]) + (g[:, 1] - g[:, 0]) - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1.0), 0.0)


def _windows(gt) -> np.ndarray:
    """One ground truth as ``[k, 2]``: accepts a single ``(start, end)`` or a sequence of them."""
    arr = np.asarray(gt, dtype=np.float64)
    if arr.ndim == 1 and arr.shape == (2,):
        return arr[None, :]
    if arr.ndim == 2 and arr.shape[1] == 2 and len(arr) > 0:
        return arr
    raise ValueError(f"ground truth must be (start, end) or a non-empty list of them, got {gt!r}")


def best_ious(predictions: Sequence, ground_truths: Sequence) -> np.ndarray:
    """Top-1 IoU per query; with several ground-truth windows, the best-matching window counts."""
    if len(predictions) != len(ground_truths):
        raise ValueError(f"evaluate: {len(predictions)} predictions but {len(ground_truths)} ground truths")
    preds = np.asarray(predictions, dtype=np.float64).reshape(-1, 2)
    best = [iou_matrix(p, _windows(g)).max() for p, g in zip(preds, ground_truths, strict=True)]
    return np.array(best, dtype=np.float64)


def summarise(ious: np.ndarray, strict: bool = False) -> dict[str, float]:
    """R1@m (percentage of queries with IoU >= m, or > m when ``strict``) and mIoU (mean IoU, percent).

    The comparison uses IoUs rounded to :data:`DECIMALS` decimals (see there); mIoU uses the raw IoUs.
    """
    ious = np.asarray(ious, dtype=np.float64)
    if ious.size == 0:
        raise ValueError("evaluate: no queries to evaluate")
    hit = np.greater if strict else np.greater_equal
    on_paper = np.round(ious, DECIMALS)
    out = {f"R1@{m}": float(100.0 * hit(on_paper, m).mean()) for m in THRESHOLDS}
    out["mIoU"] = float(100.0 * ious.mean())
    return out


def evaluate(predictions: Sequence, ground_truths: Sequence, strict: bool = False) -> dict[str, float]:
    """R1@0.1/0.3/0.5/0.7 and mIoU in percent for one top-1 prediction ``(start, end)`` per query.

    ``ground_truths[i]`` is one ``(start, end)`` window or a sequence of windows (the best-matching one is used).
    ``strict=True`` counts a hit only when IoU > m (the 2D-TAN evaluator); the default is IoU >= m.
    """
    return summarise(best_ious(predictions, ground_truths), strict=strict)


def _hits(ious: np.ndarray, m: float, strict: bool) -> np.ndarray:
    """IoU reaches m (>= m, or > m when ``strict``) after rounding to :data:`DECIMALS` decimals."""
    on_paper = np.round(ious, DECIMALS)
    return on_paper > m if strict else on_paper >= m


def average_precision(ious: np.ndarray, m: float, strict: bool = False) -> float:
    """Average precision of one query's ranked spans against its windows at IoU threshold ``m``.

    ``ious`` is ``[spans, windows]`` with the spans in decreasing score. Each span, in rank order, is a true
    positive when some window not yet matched reaches IoU m with it (it takes the best such window), else a false
    positive; precision is then made non-increasing from the right (Pascal VOC 2011 interpolation, as Moment-DETR's
    ``interpolated_precision_recall``) and summed over the recall steps of ``1 / windows``: with precision ``p_i``
    after span i, AP = sum over true positives i of max(p_j, j >= i), divided by the number of windows.
    """
    n_spans, n_windows = ious.shape
    hit = _hits(ious, m, strict)
    free = np.ones(n_windows, dtype=bool)
    tp = np.zeros(n_spans)
    for i in range(n_spans):
        candidates = np.flatnonzero(hit[i] & free)
        if len(candidates):
            free[candidates[np.argmax(ious[i, candidates])]] = False
            tp[i] = 1.0
    precision = np.cumsum(tp) / np.arange(1, n_spans + 1)
    best_after = np.maximum.accumulate(precision[::-1])[::-1]
    return float((best_after * tp).sum() / n_windows)


def _ranked(spans) -> np.ndarray:
    """One query's ``(start, end, score)`` rows as ``[k, 3]``, best score first (ties keep their order)."""
    rows = np.asarray(spans, dtype=np.float64).reshape(-1, 3)
    if len(rows) == 0:
        raise ValueError("evaluate_ranked: a query with no predicted span")
    return rows[np.argsort(-rows[:, 2], kind="stable")]


def evaluate_ranked(ranked: Sequence, ground_truths: Sequence, strict: bool = False) -> dict[str, float]:
    """All metrics, in percent, of ranked scored spans: ``ranked[i]`` is query i's ``(start, end, score)`` rows.

    The best-scored span gives R1@m and mIoU (as :func:`evaluate`, same keys); the 5 best give R5@m (any of them
    reaches IoU m with any window); the 10 best give mAP@0.5, mAP@0.75 and mAP@avg (the mean of
    :func:`average_precision` over queries, then over :data:`MAP_THRESHOLDS` for avg). A query with fewer spans is
    scored on those it has (a regression head gives one). ``ground_truths`` as in :func:`evaluate`.
    """
    if len(ranked) != len(ground_truths):
        raise ValueError(f"evaluate_ranked: {len(ranked)} predictions but {len(ground_truths)} ground truths")
    rows = [_ranked(r) for r in ranked]
    out = evaluate([r[0, :2] for r in rows], ground_truths, strict=strict)
    ious = [iou_matrix(r[:MAP_TOP, :2], _windows(g)) for r, g in zip(rows, ground_truths, strict=True)]
    if not ious:
        raise ValueError("evaluate: no queries to evaluate")
    for m in THRESHOLDS:
        out[f"R5@{m}"] = float(100.0 * np.mean([_hits(q[:R5_TOP], m, strict).any() for q in ious]))
    ap = np.array([[average_precision(q, m, strict) for m in MAP_THRESHOLDS] for q in ious]).mean(0)
    out["mAP@0.5"], out["mAP@0.75"] = 100.0 * ap[0], 100.0 * ap[MAP_THRESHOLDS.index(0.75)]
    out["mAP@avg"] = float(100.0 * ap.mean())
    return {k: float(v) for k, v in out.items()}
