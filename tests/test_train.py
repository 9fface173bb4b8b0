"""The trainer end to end on a tiny synthetic set: run folder, validation selection, reloadable checkpoint."""

from __future__ import annotations

import json

import pytest
import torch

from tvgkit import config
from tvgkit.train import PRESETS, RunConfig, evaluate_run, load_run, train


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("train")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TVGKIT_CACHE", str(root / "cache"))
        cfg = config.load(RunConfig, None, [*PRESETS["tiny"], f"runs_dir={root / 'runs'}", "name=tiny"])
        yield train(cfg, progress=False)


def test_run_folder_holds_everything(run) -> None:
    names = {p.name for p in run.run_dir.iterdir()}
    assert {"config.yaml", "metrics.json", "best.pt", "log.jsonl", "tokenizer"} <= names
    assert any(n.startswith("events.") for n in names)
    metrics = json.loads((run.run_dir / "metrics.json").read_text())
    assert set(metrics["test"]) == {"R1@0.1", "R1@0.3", "R1@0.5", "R1@0.7", "mIoU"}
    assert metrics["steps"] == 2 * -(-metrics["n_train"] // 20)


def test_best_checkpoint_is_chosen_on_validation(run) -> None:
    log = [json.loads(line) for line in (run.run_dir / "log.jsonl").read_text().splitlines()]
    vals = [e for e in log if e.get("split") == "val"]
    assert len(vals) == 2 and [e for e in log if e.get("split") == "test"] == [run.history[-1]]
    best = max(vals, key=lambda e: e["mIoU"])
    assert run.metrics["val_best"]["mIoU"] == best["mIoU"]
    train_steps = [e for e in log if "loss" in e]
    assert len(train_steps) == run.metrics["steps"] and all(e["lr"] >= 0 for e in train_steps)


def test_checkpoint_reloads_and_reproduces_test_metrics(run) -> None:
    state = torch.load(run.run_dir / "best.pt", weights_only=True)
    assert "feat_mean" in state
    model, tokenizer, cfg = load_run(run.run_dir)
    assert cfg.name == "tiny" and not model.training
    again = evaluate_run(run.run_dir, "test")
    assert again == pytest.approx(run.metrics["test"])


def test_second_run_gets_its_own_folder(run) -> None:
    cfg = config.load(RunConfig, run.run_dir / "config.yaml", ["train.epochs=1", "model.head=regression"])
    cfg.name = "tiny"
    second = train(cfg, progress=False)
    assert second.run_dir.name == "tiny-2" and second.metrics["steps"] == run.metrics["steps"] // 2


def test_rdrop_term_is_logged_when_alpha_is_positive(run) -> None:
    overrides = ["train.epochs=1", "train.rdrop_alpha=1.0"]
    with pytest.raises(config.ConfigError, match="text.dropout"):  # no dropout: R-Drop would silently do nothing
        train(config.load(RunConfig, run.run_dir / "config.yaml", overrides), progress=False)
    cfg = config.load(RunConfig, run.run_dir / "config.yaml", [*overrides, "text.dropout=0.1"])
    cfg.name = "rdrop"
    result = train(cfg, progress=False)
    terms = [e["rdrop_term"] for e in result.history if "rdrop_term" in e]
    assert len(terms) == result.metrics["steps"] and all(t > 0 for t in terms)  # dropout makes the passes differ
