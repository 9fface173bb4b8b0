"""Temporal IoU and the grounding metrics R1@m and mIoU, with the hit convention made explicit.

Papers disagree on one character: 2D-TAN counts a hit when IoU > m, almost everyone else when IoU >= m. The
difference only matters at the boundary (e.g. IoU exactly 0.5), but on Charades-STA, whose times carry one decimal,
exact ties happen; ``strict`` picks the convention so a number can be compared with the paper it claims to match.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

THRESHOLDS = (0.1, 0.3, 0.5, 0.7)
METRIC_KEYS = tuple(f"R1@{m}" for m in THRESHOLDS) + ("mIoU",)
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
