"""Video-blind baselines: how far a benchmark can be solved without looking at the video (or the sentence).

Yuan et al. 2021 ("A Closer Look at Temporal Sentence Grounding in Videos: Dataset and Metric") showed that moment
priors learnt from the training annotations alone score close to published models on Charades-STA and ActivityNet
Captions. Any model's figure means something only next to these:

* ``whole_video``: predict the whole video (R1@m then equals the share of moments longer than m of their video);
* ``best_fixed_span``: the single normalised span with the best mean IoU on the training moments, for every query;
* ``best_span_per_metric``: for each metric its own fixed span, the one that scores best *on that metric* on the
  training moments (a long span wins R1@0.3, a shorter one R1@0.7): the honest bar for each metric is the strongest
  blind predictor of it, not the span tuned for mIoU;
* ``kde_prior``: spans sampled from a Gaussian KDE of the training moments' normalised (start, end) (Yuan et al.'s
  bias baseline).

:func:`blind_baselines` adds the sentence-blind bar of a grounding run: its model trained with emptied queries.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
from scipy.stats import gaussian_kde

from tvgkit.data.records import Record
from tvgkit.errors import InputError
from tvgkit.metrics import DECIMALS, METRIC_KEYS, evaluate, iou_matrix

if TYPE_CHECKING:
    from tvgkit.grounding.presets import RunConfig
    from tvgkit.grounding.splits import Splits


def _normalised(records: Sequence[Record]) -> np.ndarray:
    """Normalised first windows ``[n, 2]`` in [0, 1] (the training statistics the priors are fitted on)."""
    if not records:
        raise InputError("no training records to fit a prior on")
    return np.array([r.normalised() for r in records], dtype=np.float64)


def _to_seconds(spans: np.ndarray, records: Sequence[Record]) -> list[tuple[float, float]]:
    durations = np.array([r.duration for r in records], dtype=np.float64)
    seconds = np.asarray(spans, dtype=np.float64).reshape(-1, 2) * durations[:, None]
    return [(float(s), float(e)) for s, e in seconds]


def whole_video(records: Sequence[Record]) -> list[tuple[float, float]]:
    """Predict ``(0, duration)`` for every query."""
    return [(0.0, float(r.duration)) for r in records]


def _grid(grid_step: float) -> np.ndarray:
    """Every normalised span ``[n, 2]`` with start < end on a grid of ``grid_step`` (which must divide 1)."""
    steps = round(1.0 / grid_step)
    if steps < 1 or not np.isclose(steps * grid_step, 1.0):
        raise ValueError(f"grid_step must divide 1, got {grid_step}")
    grid = np.arange(steps + 1) / steps
    starts, ends = np.meshgrid(grid, grid, indexing="ij")
    keep = starts < ends
    return np.stack([starts[keep], ends[keep]], axis=1)


def _score(ious: np.ndarray, metric: str, strict: bool) -> np.ndarray:
    """Per-candidate training score (rows of ``ious``) on ``metric``: mean IoU, or the hit rate at R1@m."""
    if metric == "mIoU":
        return ious.mean(axis=1)
    if metric not in METRIC_KEYS:
        raise ValueError(f"unknown metric {metric!r}; choose from {METRIC_KEYS}")
    m, rounded = float(metric.split("@")[1]), np.round(ious, DECIMALS)
    return (rounded > m if strict else rounded >= m).mean(axis=1)


def best_spans_per_metric(
    train_records: Sequence[Record], grid_step: float = 0.05, strict: bool = False, metrics: Sequence[str] = METRIC_KEYS
) -> dict[str, tuple[float, float]]:
    """``{metric: the grid span that scores best on it on the training moments}`` (ties: earliest, shortest span).

    R1@m counts hits as the evaluation does (``strict``: IoU > m); the grid of ``grid_step`` must divide 1.
    """
    candidates = _grid(grid_step)
    ious = iou_matrix(candidates, _normalised(train_records))
    best = {k: candidates[int(np.argmax(_score(ious, k, strict)))] for k in metrics}
    return {k: (float(s), float(e)) for k, (s, e) in best.items()}


def best_fixed_span(
    train_records: Sequence[Record], grid_step: float = 0.05, metric: str = "mIoU", strict: bool = False
) -> tuple[float, float]:
    """The normalised ``(start, end)`` on a grid of ``grid_step`` with the best ``metric`` on the training moments.

    By mean IoU unless told otherwise, so that the one ``best_fixed_span`` baseline is not tuned to one threshold.
    """
    return best_spans_per_metric(train_records, grid_step, strict, (metric,))[metric]


def per_metric_baseline(
    train_records: Sequence[Record], test_records: Sequence[Record], strict: bool = False
) -> dict[str, float]:
    """Test scores of :func:`best_spans_per_metric`: each metric read off the span chosen on train for it."""
    truths = [r.windows for r in test_records]
    out = {}
    for metric, span in best_spans_per_metric(train_records, strict=strict).items():
        spans = _to_seconds(np.tile(span, (len(test_records), 1)), test_records)
        out[metric] = evaluate(spans, truths, strict=strict)[metric]
    return out


def kde_prior(train_records: Sequence[Record], test: Sequence[Record] | int, seed: int = 0):
    """Sample normalised spans from a Gaussian KDE (Scott's bandwidth) of the training moments' (start, end).

    Samples are clipped to [0, 1]; a sample with start >= end after clipping is drawn again, so every prediction
    is a valid span. ``test`` is the test records (returns spans in seconds, one per record) or a count (returns
    normalised spans ``[n, 2]``). Deterministic given ``seed``.
    """
    n = test if isinstance(test, int) else len(test)
    try:
        kde = gaussian_kde(_normalised(train_records).T)
    except np.linalg.LinAlgError:
        raise InputError("KDE prior: the training moments lie on a line (singular covariance)") from None
    rng = np.random.default_rng(seed)
    spans = np.empty((0, 2))
    while len(spans) < n:
        draw = np.clip(kde.resample(n, seed=rng).T, 0.0, 1.0)
        spans = np.concatenate([spans, draw[draw[:, 0] < draw[:, 1]]])
    spans = spans[:n]
    return spans if isinstance(test, int) else _to_seconds(spans, test)


def run_blind_baselines(
    train_records: Sequence[Record],
    test_records: Sequence[Record],
    seed: int = 0,
    strict: bool = False,
    per_metric: bool = False,
) -> dict[str, dict[str, float]]:
    """Every video-blind baseline fitted on ``train_records`` and scored on ``test_records`` (percent).

    Hits count IoU >= m, or IoU > m with ``strict`` (the 2D-TAN evaluator). ``per_metric`` adds the row
    ``best_span_per_metric`` (:func:`per_metric_baseline`).
    """
    truths = [r.windows for r in test_records]
    fixed = np.tile(best_fixed_span(train_records), (len(test_records), 1))
    predictions = {
        "whole_video": whole_video(test_records),
        "best_fixed_span": _to_seconds(fixed, test_records),
        "kde_prior": kde_prior(train_records, test_records, seed=seed),
    }
    results = {name: evaluate(spans, truths, strict=strict) for name, spans in predictions.items()}
    if per_metric:
        results["best_span_per_metric"] = per_metric_baseline(train_records, test_records, strict=strict)
    return results


#: Published top-1 results to read the blind baselines against: (dataset, model, features, metrics, source).
#: 2D-TAN counts a hit with IoU > m; the others with IoU >= m.
PUBLISHED_RESULTS = [
    ("charades-sta", "2D-TAN Conv", "VGG", {"R1@0.5": 42.80, "R1@0.7": 23.25}, "2D-TAN, Zhang et al. 2020 (AAAI)"),
    (
        "charades-sta",
        "VSLNet",
        "I3D",
        {"R1@0.5": 54.19, "R1@0.7": 35.22, "mIoU": 50.02},
        "VSLNet, Zhang et al. 2020 (ACL)",
    ),
    ("charades-sta", "UniVTG (pre-trained)", "SlowFast+CLIP", {"mIoU": 52.17}, "UniVTG, Lin et al. 2023 (ICCV)"),
    (
        "activitynet",
        "2D-TAN Conv",
        "C3D",
        {"R1@0.3": 58.75, "R1@0.5": 44.05, "R1@0.7": 27.38},
        "2D-TAN repository README (test = val_2)",
    ),
    (
        "tacos",
        "2D-TAN Conv",
        "C3D",
        {"R1@0.1": 46.39, "R1@0.3": 35.17, "R1@0.5": 25.17},
        "2D-TAN repository README",
    ),
]


def blind_baselines(cfg: RunConfig, splits: Splits | None = None, progress: bool = False) -> dict[str, dict]:
    """Test metrics of the video-blind priors and of the query-blind model (``cfg`` trained with emptied queries)."""
    from dataclasses import replace

    from tvgkit.grounding.splits import load_splits
    from tvgkit.grounding.train import train

    splits = splits or load_splits(cfg.data, progress=progress)
    results = run_blind_baselines(splits.records["train"], splits.records["test"], seed=cfg.seed)
    blind = replace(cfg, name=f"{cfg.name}-query-blind", train=replace(cfg.train, query_blind=True))
    results["query_blind_model"] = train(blind, progress=progress, splits=splits).metrics["test"]
    return results


def _synthetic_records(split: str, data_dir: str | None):
    """The synthetic dataset's records (the ``tvgkit train`` default set, rendered once and cached)."""
    from tvgkit.data.formats import read_jsonl
    from tvgkit.data.synthetic import SynthConfig, build

    records, report = read_jsonl(build(SynthConfig(), cache_dir=data_dir).jsonl(split))
    print(f"{split}: {report}")
    return records


def load_records(dataset: str, split: str, data_dir: str | None = None) -> list[Record]:
    """Records of one split of ``dataset``, with the clean-up report printed (one loader per dataset)."""
    if dataset == "synthetic":
        return _synthetic_records(split, data_dir)
    from tvgkit.data.formats import load_dataset

    records, report = load_dataset(dataset, split, data_dir)
    print(f"{split}: {report.summary()}")
    return records


def format_table(results: dict[str, dict[str, float]]) -> str:
    """A fixed-width table: one row per baseline, one column per metric (percent, 2 decimals)."""
    width = max(16, *(len(name) + 1 for name in results))
    lines = [f"{'baseline':<{width}}" + "".join(f"{k:>9}" for k in METRIC_KEYS)]
    for name, metrics in results.items():
        lines.append(f"{name:<{width}}" + "".join(f"{metrics[k]:>9.2f}" for k in METRIC_KEYS))
    return "\n".join(lines)


def format_spans(spans: dict[str, tuple[float, float]]) -> str:
    """One line: each metric's fixed span chosen on train (the ``best_span_per_metric`` row's spans)."""
    return "  ".join(f"{k} [{s:.2f}, {e:.2f}]" for k, (s, e) in spans.items())


def main(args: argparse.Namespace) -> int:
    """``tvgkit baselines``: fit the priors on the training split, score them on ``--split``."""
    test = load_records(args.dataset, args.split, args.data_dir)
    train = load_records(args.dataset, "train", args.data_dir)
    results = run_blind_baselines(train, test, seed=args.seed, per_metric=True)
    print(f"\n{args.dataset} {args.split}: {len(test)} queries; best fixed span on train, per metric:")
    print(format_spans(best_spans_per_metric(train)))
    print("R1@m counts IoU >= m; all figures in percent; no video or sentence is looked at.")
    print(format_table(results))
    if args.json:
        print(json.dumps({name: {k: round(v, 4) for k, v in m.items()} for name, m in results.items()}))
    return 0
