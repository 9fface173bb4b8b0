"""The trainer runs the non-finite guard and the audits by default: each fires on a bad run, stays quiet on a good one,
and can be switched off by config."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from tvgkit import config
from tvgkit.grounding.dataset import Collate, loader
from tvgkit.grounding.presets import PRESETS, RunConfig
from tvgkit.grounding.splits import Splits, load_splits
from tvgkit.grounding.train import train
from tvgkit.lessons.diagnostics import LoaderAuditError, NonFiniteError


class FeatureDict(dict):
    """Clip features held in memory (``vid -> [clips, dim]``), with the ``dim`` the trainer reads."""

    @property
    def dim(self) -> int:
        return next(iter(self.values())).shape[1]


@pytest.fixture(scope="module")
def setting(tmp_path_factory):
    """(base overrides, runs folder, splits) of a one-epoch tiny run; the data is rendered once."""
    root = tmp_path_factory.mktemp("train_diagnostics")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TVGKIT_CACHE", str(root / "cache"))
        base = [*PRESETS["tiny"], "train.device=cpu", f"runs_dir={root / 'runs'}", "train.epochs=1"]
        yield base, root / "runs", load_splits(config.load(RunConfig, None, base).data, progress=False)


def _cfg(setting, *overrides: str) -> RunConfig:
    return config.load(RunConfig, None, [*setting[0], *overrides])


def test_guard_and_audits_are_on_by_default():
    assert RunConfig().train.guard and RunConfig().train.audit


def test_a_clean_run_passes_the_guard_and_the_audits(setting):
    splits = setting[2]
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message="optimiser audit")
        result = train(_cfg(setting, "name=clean"), progress=False, splits=splits)
    log = [json.loads(line) for line in (result.run_dir / "log.jsonl").read_text().splitlines()]
    assert not any(e.get("split") == "stopped" for e in log) and not (result.run_dir / "last_good.pt").exists()
    assert all(np.isfinite(e["loss"]) for e in log if "loss" in e)


def test_the_guard_stops_a_run_with_nan_features_and_keeps_the_last_good_weights(setting):
    splits = setting[2]
    features = FeatureDict(
        {vid: np.asarray(splits.features[vid]) for r in sum(splits.records.values(), []) for vid in [r.vid]}
    )
    first = splits.records["train"][0].vid
    features[first] = np.full_like(features[first], np.nan)  # a corrupt extraction
    with pytest.raises(NonFiniteError) as info:
        train(_cfg(setting, "name=nan-features"), progress=False, splits=Splits(splits.records, features))
    err = info.value
    assert (err.step, err.where, err.module_name) == (0, "loss", "input of video_proj (Conv1d)")
    run_dir = setting[1] / "nan-features"
    state = torch.load(run_dir / "last_good.pt", weights_only=True)
    non_finite = {k for k, t in state.items() if t.is_floating_point() and not torch.isfinite(t).all()}
    assert non_finite == {"feat_mean", "feat_std"}  # the weights are good; the NaN came in with the feature statistics
    last = json.loads((run_dir / "log.jsonl").read_text().splitlines()[-1])
    assert last["split"] == "stopped" and "video_proj" in last["error"] and "last_good.pt" in last["error"]


def test_the_audit_refuses_a_shuffling_evaluation_loader_unless_switched_off(setting, monkeypatch):
    splits = setting[2]

    def shuffled_like_training(dataset, batch_size, train, pad_id, seed=0, rank=0, replicas=1):  # the seeds' bug
        if train:
            return loader(dataset, batch_size, train, pad_id, seed, rank, replicas)
        return DataLoader(dataset, batch_size=batch_size, shuffle=True, collate_fn=Collate(pad_id, train))

    monkeypatch.setattr("tvgkit.grounding.build.loader", shuffled_like_training)
    with pytest.raises(LoaderAuditError, match="shuffles"):
        train(_cfg(setting, "name=shuffled"), progress=False, splits=splits)
    result = train(_cfg(setting, "name=shuffled-unaudited", "train.audit=false"), progress=False, splits=splits)
    assert set(result.metrics["test"]) == {"R1@0.1", "R1@0.3", "R1@0.5", "R1@0.7", "mIoU"}
