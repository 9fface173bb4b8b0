"""The trainer end to end on a tiny synthetic set: run folder, validation selection, reloadable checkpoint."""

from __future__ import annotations

import json

import pytest
import torch

from tvgkit import config
from tvgkit.grounding.evaluate import evaluate_run, load_run
from tvgkit.grounding.presets import PRESETS, RunConfig
from tvgkit.grounding.train import train


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("train")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TVGKIT_CACHE", str(root / "cache"))
        sets = [*PRESETS["tiny"], "train.device=cpu", f"runs_dir={root / 'runs'}", "name=tiny"]  # CPU-exact reloads
        cfg = config.load(RunConfig, None, sets)
        yield train(cfg, progress=False)


def test_run_folder_holds_everything(run) -> None:
    names = {p.name for p in run.run_dir.iterdir()}
    assert {"config.yaml", "metrics.json", "best.pt", "log.jsonl", "tokenizer"} <= names
    assert any(n.startswith("events.") for n in names)
    metrics = json.loads((run.run_dir / "metrics.json").read_text())
    r1 = {"R1@0.1", "R1@0.3", "R1@0.5", "R1@0.7", "mIoU"}
    ranked = {"R5@0.1", "R5@0.3", "R5@0.5", "R5@0.7", "mAP@0.5", "mAP@0.75", "mAP@avg"}
    assert set(metrics["test"]) == r1 | ranked
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


def test_logged_steps_carry_loss_terms_gradient_norms_and_prediction_spread(run) -> None:
    steps = [e for e in run.history if "loss" in e]
    for e in steps:
        terms = {k: v for k, v in e.items() if k.startswith("loss_")}
        assert set(terms) == {"loss_highlight_bce", "loss_start_ce", "loss_end_ce", "loss_offset_l1"}
        assert sum(terms.values()) == pytest.approx(e["loss"], rel=1e-4)  # the terms add up to the logged loss
        assert {"grad_encoder", "grad_query_gate", "grad_video_proj", "grad_span_head"} <= set(e)
        assert 0 <= e["pred_centre_std"] <= 0.5 and 0 < e["target_centre_std"] <= 0.5 and 0 <= e["batch_mIoU"] <= 100


def test_regression_head_logs_the_mask_slot_gradient(run) -> None:
    cfg = config.load(RunConfig, run.run_dir / "config.yaml", ["train.epochs=1", "model.head=regression-mlp"])
    cfg.name = "mlp"
    result = train(cfg, progress=False)
    steps = [e for e in result.history if "loss" in e]
    assert all(e["grad_mask_slots"] > 0 and "loss_giou" in e and "grad_reg_head" in e for e in steps)


def test_encoder_learning_rate_applies_to_the_encoder_only() -> None:
    from transformers import BertConfig, BertModel

    from tvgkit.grounding.build import param_groups
    from tvgkit.grounding.model import GroundingModel, ModelConfig
    from tvgkit.grounding.presets import OptimConfig

    bert = BertModel(
        BertConfig(vocab_size=30, hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64),
        add_pooling_layer=False,
    )
    model = GroundingModel(ModelConfig(), bert, 7, 4)
    groups = param_groups(model, OptimConfig(lr=1e-3, encoder_lr=5e-5, weight_decay=0.01))
    encoder = {id(p) for p in model.encoder.parameters()}
    for g in groups:
        in_encoder = {id(p) in encoder for p in g["params"]}
        assert len(in_encoder) == 1  # a group never mixes the encoder with the new parts
        assert g["lr"] == (5e-5 if in_encoder.pop() else 1e-3)
        assert g["weight_decay"] == (0.01 if all(p.ndim >= 2 for p in g["params"]) else 0.0)
    assert sum(len(g["params"]) for g in groups) == len(list(model.parameters()))
    same = param_groups(model, OptimConfig(lr=1e-3))
    assert {g["lr"] for g in same} == {1e-3}
