"""The run's data: the records of train/val/test and the feature store, checked before a run folder exists."""

from __future__ import annotations

import warnings
from dataclasses import dataclass

from tvgkit import config as configs
from tvgkit.data.records import Record
from tvgkit.grounding import distributed
from tvgkit.grounding.dataset import split_by_video
from tvgkit.grounding.presets import DataConfig


class SplitWarning(UserWarning):
    """An evaluation split that holds exactly the training split's queries (the same file given twice, say)."""


@dataclass
class Splits:
    records: dict[str, list[Record]]
    features: object  # a FeatureStore (vid -> float32 [clips, dim])


def load_splits(cfg: DataConfig, progress: bool = True) -> Splits:
    """Records of train/val/test and the feature store; a missing validation split is cut from train by video.

    Every check of the data happens here, before a run folder exists (see :func:`tvgkit.data.features.check_coverage`).
    """
    from tvgkit.data.features import check_coverage, open_features
    from tvgkit.data.formats import read_annotations

    if cfg.dataset == "synthetic":
        from tvgkit.data.synthetic import build

        data = build(cfg.synth, progress=progress)
        paths = {s: data.jsonl(s) for s in ("train", "val", "test")}
        features = data.features
    elif cfg.dataset == "files":
        if not (cfg.train and cfg.test and cfg.features):
            raise configs.ConfigError(
                "data.dataset=files needs data.train, data.test and data.features (data.val optional)"
            )
        paths = {"train": cfg.train, "val": cfg.val, "test": cfg.test}
        features = cfg.features
    else:
        raise configs.ConfigError(f"data.dataset must be 'synthetic' or 'files', got {cfg.dataset!r}")
    say = distributed.current().main  # under torchrun, rank 0 speaks for all
    records = {}
    for split, path in ((s, p) for s, p in paths.items() if p):
        records[split], report = read_annotations(path, cfg.durations)
        if cfg.dataset == "files" and say:  # one's own annotations: show what the clean-up repaired or dropped
            print(report.summary())
    if say:
        _warn_if_same_as_train(records, paths)
    store = open_features(features)
    if cfg.clip_seconds is not None:
        store.clip_seconds = cfg.clip_seconds
    records, coverage = check_coverage(store, records, cfg.feature_dim, cfg.skip_missing_features)
    if coverage.n_skipped and say:
        print(coverage)
    if "val" not in records:
        records["train"], records["val"] = split_by_video(records["train"], [0.9, 0.1])
        if not (records["train"] and records["val"]):
            raise configs.ConfigError("data.val: too few training videos to cut a validation split; give data.val")
    return Splits(records, store)


def _warn_if_same_as_train(records: dict[str, list[Record]], paths: dict) -> None:
    """Warn when val or test holds exactly the training queries: their metrics would measure memorisation (a model
    chosen on, or scored on, what it trained on), which looks like success and is not."""

    def queries(split: str) -> set[tuple]:
        return {(r.vid, r.query, r.windows) for r in records[split]}

    for split in ("val", "test"):
        if split in records and queries(split) == queries("train"):
            warnings.warn(
                f"the {split} split ({paths[split]}) holds exactly the training split's {len(records[split])} queries "
                f"({paths['train']}): its metrics measure memorisation, not grounding",
                SplitWarning,
                stacklevel=3,
            )


def feature_backbone(cfg: DataConfig, store) -> str | None:
    """The backbone of the run's features (None: the files do not say); refuses one that contradicts
    ``data.backbone``."""
    found = cfg.synth.backbone if cfg.dataset == "synthetic" else store.backbone
    if cfg.backbone is not None and found is not None and found != cfg.backbone:
        raise configs.ConfigError(f"data.backbone is {cfg.backbone!r} but {store.path} was extracted with {found!r}")
    return found or cfg.backbone

