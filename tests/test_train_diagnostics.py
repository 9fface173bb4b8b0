"""The trainer runs the non-finite guard and the audits by default: each fires on a bad run, stays quiet on a good one,
and can be switched off by config."""

from __future__ import annotations

import json
import warnings
from functools import partial

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from tvgkit import config
from tvgkit.grounding.dataset import Batches, loader, whole_batch
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


def _nan_features(splits: Splits) -> Splits:
    features = FeatureDict(
        {vid: np.asarray(splits.features[vid]) for r in sum(splits.records.values(), []) for vid in [r.vid]}
    )
    first = splits.records["train"][0].vid
    features[first] = np.full_like(features[first], np.nan)  # a corrupt extraction
    return Splits(splits.records, features)


def test_the_guard_stops_a_run_with_nan_features_and_keeps_the_last_good_weights(setting):
    with pytest.raises(NonFiniteError) as info:
        train(_cfg(setting, "name=nan-features", "train.device=cpu"), progress=False, splits=_nan_features(setting[2]))
    err = info.value
    assert (err.step, err.where, err.module_name) == (0, "loss", "input of video_proj (Conv1d)")
    run_dir = setting[1] / "nan-features"
    state = torch.load(run_dir / "last_good.pt", weights_only=True)
    non_finite = {k for k, t in state.items() if t.is_floating_point() and not torch.isfinite(t).all()}
    assert non_finite == {"feat_mean", "feat_std"}  # the weights are good; the NaN came in with the feature statistics
    last = json.loads((run_dir / "log.jsonl").read_text().splitlines()[-1])
    assert last["split"] == "stopped" and "video_proj" in last["error"] and "last_good.pt" in last["error"]


def test_the_guard_read_at_logged_steps_skips_the_updates_and_names_the_first_bad_step(setting, monkeypatch):
    """The GPU path on the CPU: fused AdamW with the guard's flag as found_inf, the flag read every 2 steps only."""
    cfg = partial(_cfg, setting, "train.device=cpu", "train.log_every=2")
    with pytest.raises(NonFiniteError):  # the CPU path: read every step, stopped before step 0's update
        train(cfg("name=nan-every-step"), progress=False, splits=_nan_features(setting[2]))
    monkeypatch.setattr("tvgkit.grounding.build._fused", lambda device: True)
    with pytest.raises(NonFiniteError) as info:
        train(cfg("name=nan-deferred"), progress=False, splits=_nan_features(setting[2]))
    err = info.value
    assert (err.step, err.where, err.module_name) == (0, "loss", "input of video_proj (Conv1d)")
    log = [json.loads(line) for line in (setting[1] / "nan-deferred" / "log.jsonl").read_text().splitlines()]
    assert log[-1]["split"] == "stopped" and log[-1]["step"] == 1  # read at the end of step 1, blamed on step 0
    # steps 0 and 1 were skipped on the device: the weights kept are the initial ones, those the per-step guard keeps
    deferred = torch.load(setting[1] / "nan-deferred" / "last_good.pt", weights_only=True)
    every_step = torch.load(setting[1] / "nan-every-step" / "last_good.pt", weights_only=True)
    for key, value in every_step.items():
        torch.testing.assert_close(deferred[key], value, rtol=0, atol=0, equal_nan=True)


def test_the_audit_refuses_a_shuffling_evaluation_loader_unless_switched_off(setting, monkeypatch):
    splits = setting[2]

    def shuffled_like_training(dataset, batch_size, train, pad_id, seed=0, rank=0, replicas=1, device=None):  # seeds
        if train:
            return loader(dataset, batch_size, train, pad_id, seed, rank, replicas, device)
        return DataLoader(Batches(dataset, pad_id, train), batch_size=batch_size, shuffle=True, collate_fn=whole_batch)

    monkeypatch.setattr("tvgkit.grounding.build.loader", shuffled_like_training)
    with pytest.raises(LoaderAuditError, match="shuffles"):
        train(_cfg(setting, "name=shuffled"), progress=False, splits=splits)
    result = train(_cfg(setting, "name=shuffled-unaudited", "train.audit=false"), progress=False, splits=splits)
    assert {"R1@0.1", "R1@0.3", "R1@0.5", "R1@0.7", "mIoU"} <= set(result.metrics["test"])
