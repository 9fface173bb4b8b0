"""Evaluation and prediction: spans from a model, metrics from spans, and the same for a finished run's folder.

The trainer validates and tests through :func:`predict_split`; ``tvgkit eval``, ``tvgkit predict`` and the notebooks
go through :func:`load_run` / :func:`evaluate_run`, so a re-evaluation scores exactly what the run scored.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from tvgkit import config as configs
from tvgkit.data.records import Record
from tvgkit.errors import InputError
from tvgkit.grounding import checkpoint, distributed
from tvgkit.grounding.build import Run, build_model
from tvgkit.grounding.dataset import GroundingDataset, loader
from tvgkit.grounding.model import GroundingModel, decode
from tvgkit.grounding.objective import forward
from tvgkit.grounding.presets import RunConfig
from tvgkit.grounding.splits import Splits, load_splits


@torch.no_grad()
def predict(model: GroundingModel, data_loader, device: torch.device, ensemble: bool, autocast=None) -> np.ndarray:
    """Normalised top-1 spans [N, 2] in loader order; with ``ensemble`` the templates' outputs are averaged."""
    model.eval()
    out_spans = []
    for batch in data_loader:
        batch = {k: v.to(device) for k, v in batch.items()}
        templates = range(batch["input_ids"].shape[1]) if ensemble else [0]
        with autocast() if autocast else torch.autocast("cpu", enabled=False):
            outs = [forward(model, batch, t) for t in templates]
        spans = decode(outs, batch["video_mask"])[0][:, 0]
        out_spans.append(spans.float().cpu())
    # A rank's shard of a set smaller than the number of processes can be empty.
    return torch.cat(out_spans).numpy() if out_spans else np.zeros((0, 2), np.float32)


def predict_split(run: Run, split: str) -> np.ndarray:
    """Normalised spans of every query of ``split`` in dataset order (each rank predicts its piece)."""
    spans = predict(
        run.model, run.eval_loaders[split], run.device, run.cfg.model.prompt_ensemble, run.session.autocast
    )
    return distributed.gather_rows(spans, len(run.splits.records[split]))


def evaluate_records(spans: np.ndarray, records: list[Record]) -> dict[str, float]:
    """Metrics of normalised spans against the records' windows (in seconds)."""
    from tvgkit.metrics import evaluate

    durations = np.array([r.duration for r in records])
    return evaluate(spans * durations[:, None], [list(r.windows) for r in records])


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


def predict_run(
    run_dir: str | Path, split: str = "test", ensemble: bool | None = None, splits: Splits | None = None
) -> tuple[list[Record], np.ndarray]:
    """A run's best checkpoint on ``split``: its records and predicted windows in seconds [N, 2].

    ``ensemble=None`` keeps the run's own prompt-ensemble setting.
    """
    from tvgkit.data.features import FeatureError

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
    spans = predict(model, loader(ds, 256, train=False, pad_id=tokenizer.pad_token_id), torch.device("cpu"), use)
    return records, spans * np.array([r.duration for r in records])[:, None]


def evaluate_run(
    run_dir: str | Path, split: str = "test", ensemble: bool | None = None, splits: Splits | None = None
) -> dict[str, float]:
    """Re-evaluate a run's best checkpoint on ``split`` (same data; ``ensemble=None`` keeps the run's setting)."""
    from tvgkit.metrics import evaluate

    records, spans = predict_run(run_dir, split, ensemble, splits)
    return evaluate(spans, [list(r.windows) for r in records])
