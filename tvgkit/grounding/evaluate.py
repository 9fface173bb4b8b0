"""Evaluation and prediction: spans from a model, metrics from spans, and the same for a finished run's folder.

The trainer validates and tests through :func:`predict_split`; ``tvgkit eval``, ``tvgkit predict`` and the notebooks
go through :func:`load_run` / :func:`evaluate_run`, so a re-evaluation scores exactly what the run scored. Every
query gets its :data:`~tvgkit.metrics.MAP_TOP` best spans with their scores (:class:`Ranked`): the best one gives
R1@m and mIoU, the rest R5@m and mAP (:func:`tvgkit.metrics.evaluate_ranked`); :func:`write_predictions` writes them
in the Moment-DETR / lighthouse submission format. Spans go from the model's clip grid to seconds by the kit's time
convention (:mod:`tvgkit.data.timeline`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from tvgkit import config as configs
from tvgkit.data import timeline
from tvgkit.data.records import Record
from tvgkit.errors import InputError
from tvgkit.grounding import checkpoint, distributed
from tvgkit.grounding.build import Run, build_model
from tvgkit.grounding.dataset import GroundingDataset, loader
from tvgkit.grounding.model import GroundingModel, decode
from tvgkit.grounding.objective import forward
from tvgkit.grounding.presets import RunConfig
from tvgkit.grounding.splits import Splits, load_splits
from tvgkit.metrics import MAP_TOP


@dataclass
class Ranked:
    """Each query's best spans in seconds ``[N, k, 2]``, best first, and their scores ``[N, k]`` (NaN: no span,
    for a query with fewer candidates than k)."""

    spans: np.ndarray
    scores: np.ndarray

    def __len__(self) -> int:
        return len(self.spans)

    @property
    def top1(self) -> np.ndarray:
        """The best span of every query, ``[N, 2]`` seconds."""
        return self.spans[:, 0]

    def rows(self, i: int) -> np.ndarray:
        """Query ``i``'s ``(start, end, score)`` rows ``[k, 3]``, best first."""
        keep = ~np.isnan(self.scores[i])
        return np.concatenate([self.spans[i][keep], self.scores[i][keep, None]], axis=1)


@torch.no_grad()
def predict_ranked(
    model: GroundingModel, data_loader, device: torch.device, ensemble: bool, autocast=None, k: int = 1
) -> np.ndarray:
    """The ``k`` best spans of every query in loader order, as fractions of its clip grid, with their scores:
    ``[N, k, 3]`` rows ``(start, end, score)`` (score NaN where a short video has fewer than ``k`` spans).

    With ``ensemble`` the templates' outputs are averaged.
    """
    model.eval()
    out_rows = []
    for batch in data_loader:
        batch = {key: v.to(device) for key, v in batch.items()}
        templates = range(batch["input_ids"].shape[1]) if ensemble else [0]
        with autocast() if autocast else torch.autocast("cpu", enabled=False):
            outs = [forward(model, batch, t) for t in templates]
        spans, scores = decode(outs, batch["video_mask"], k=k)
        rows = torch.cat([spans.float(), scores.float()[..., None]], -1).cpu()
        out_rows.append(torch.nn.functional.pad(rows, (0, 0, 0, k - rows.shape[1]), value=float("nan")))
    # A rank's shard of a set smaller than the number of processes can be empty.
    return torch.cat(out_rows).numpy() if out_rows else np.zeros((0, k, 3), np.float32)


def predict(model: GroundingModel, data_loader, device: torch.device, ensemble: bool, autocast=None) -> np.ndarray:
    """The best span of every query [N, 2] in loader order, as fractions of its clip grid."""
    return predict_ranked(model, data_loader, device, ensemble, autocast)[:, 0, :2]


def in_seconds(rows: np.ndarray, records: list[Record], features) -> Ranked:
    """Rows of :func:`predict_ranked` (fractions of each video's clip grid) as a :class:`Ranked` in seconds."""
    spans = timeline.to_seconds(rows[..., :2], timeline.clips_of(records, features))
    return Ranked(spans.reshape(rows[..., :2].shape), rows[..., 2].astype(np.float64))


def predict_split(run: Run, split: str) -> Ranked:
    """The ranked spans in seconds of every query of ``split`` in dataset order (each rank predicts its piece)."""
    rows = predict_ranked(
        run.model, run.eval_loaders[split], run.device, run.cfg.model.prompt_ensemble, run.session.autocast, MAP_TOP
    )
    records = run.splits.records[split]
    return in_seconds(distributed.gather_rows(rows, len(records)), records, run.splits.features)


def evaluate_records(ranked: Ranked, records: list[Record]) -> dict[str, float]:
    """All metrics (R1@m, mIoU, R5@m, mAP@m) of ranked spans in seconds against the records' windows."""
    from tvgkit.metrics import evaluate_ranked

    return evaluate_ranked([ranked.rows(i) for i in range(len(ranked))], [list(r.windows) for r in records])


def write_predictions(path: str | Path, records: list[Record], ranked: Ranked, top: int = MAP_TOP) -> Path:
    """One JSON object per query, as Moment-DETR's and lighthouse's evaluators read them: ``qid``, ``query``,
    ``vid`` and ``pred_relevant_windows``, the ``top`` best ``[start s, end s, score]``, best first."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as handle:
        for i, r in enumerate(records):
            windows = [[float(s), float(e), float(c)] for s, e, c in ranked.rows(i)[:top]]  # exactly what is scored
            item = {"qid": r.qid, "query": r.query, "vid": r.vid, "pred_relevant_windows": windows}
            handle.write(json.dumps(item) + "\n")
    return path


def load_run(run_dir: str | Path, device: str | torch.device = "cpu") -> tuple[GroundingModel, object, RunConfig]:
    """(model with its best weights, tokenizer, config) of a finished run.

    A damaged ``best.pt``, or one that does not fit the model its ``config.yaml`` describes (an edited config, a
    file copied from another run), is a :class:`tvgkit.grounding.checkpoint.CheckpointError` naming the file and
    the way out; torch's own messages name neither.
    """
    run_dir = Path(run_dir)
    best, config_path = run_dir / "best.pt", run_dir / "config.yaml"
    if not best.exists():
        raise FileNotFoundError(f"{run_dir}: not a finished run (no best.pt)")
    cfg = configs.load(RunConfig, config_path)
    way_out = f"; re-train with: tvgkit train {config_path} (last.pt holds the last epoch's weights, under 'model')"
    state = checkpoint.load(best, way_out)
    if not isinstance(state.get("feat_mean"), torch.Tensor):
        raise checkpoint.CheckpointError(f"{best}: not the best.pt of a grounding run (no 'feat_mean'){way_out}")
    try:
        model, tokenizer = build_model(cfg, [], state["feat_mean"].numel(), tokenizer_dir=run_dir / "tokenizer")
        model.load_state_dict(state)
    except (RuntimeError, ValueError) as err:
        if isinstance(err, (InputError, configs.ConfigError)):
            raise
        detail = " ".join(str(err).split())[:200]
        raise checkpoint.CheckpointError(
            f"{best} does not fit the model {config_path} describes (was config.yaml edited, or best.pt copied "
            f"from another run?): {detail}"
        ) from None
    return model.to(device).eval(), tokenizer, cfg


def rank_run(
    run_dir: str | Path,
    split: str = "test",
    ensemble: bool | None = None,
    splits: Splits | None = None,
    top: int = MAP_TOP,
) -> tuple[list[Record], Ranked]:
    """A run's best checkpoint on ``split``: its records and each query's ``top`` best spans in seconds.

    ``ensemble=None`` keeps the run's own prompt-ensemble setting.
    """
    from tvgkit.data.features import FeatureError

    if top < 1:
        raise InputError(f"--top must be at least 1, got {top}")
    model, tokenizer, cfg = load_run(run_dir)
    splits = splits or load_splits(cfg.data, progress=False)
    if split not in splits.records:
        raise InputError(f"split {split!r} not in {sorted(splits.records)}")
    if splits.features.dim != model.feat_mean.numel():
        raise FeatureError(
            f"{splits.features.path}: features have {splits.features.dim} dims but the checkpoint of {run_dir} "
            f"was trained on {model.feat_mean.numel()}"
        )
    records = splits.records[split]
    ds = GroundingDataset(
        records, splits.features, tokenizer, cfg.model.templates, cfg.data.max_clips, query_blind=cfg.train.query_blind
    )
    use = cfg.model.prompt_ensemble if ensemble is None else ensemble
    batches = loader(ds, 256, train=False, pad_id=tokenizer.pad_token_id)
    rows = predict_ranked(model, batches, torch.device("cpu"), use, k=top)
    return records, in_seconds(rows, records, splits.features)


def predict_run(
    run_dir: str | Path, split: str = "test", ensemble: bool | None = None, splits: Splits | None = None
) -> tuple[list[Record], np.ndarray]:
    """A run's best checkpoint on ``split``: its records and best windows in seconds [N, 2]."""
    records, ranked = rank_run(run_dir, split, ensemble, splits, top=1)
    return records, ranked.top1


def evaluate_run(
    run_dir: str | Path, split: str = "test", ensemble: bool | None = None, splits: Splits | None = None
) -> dict[str, float]:
    """Re-evaluate a run's best checkpoint on ``split`` (same data; ``ensemble=None`` keeps the run's setting)."""
    records, ranked = rank_run(run_dir, split, ensemble, splits)
    return evaluate_records(ranked, records)
