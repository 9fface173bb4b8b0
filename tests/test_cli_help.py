"""What a newcomer meets first: ``--help`` explains every option (default and choices), a long command says its
cost before paying it, warnings come before results, and the runs table shows only keys a run uses."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tvgkit import config
from tvgkit.cli import build_parser, main
from tvgkit.grounding.presets import PRESETS, preset

ROOT = Path(__file__).resolve().parent.parent


def _options() -> list[tuple[str, argparse.Action, str]]:
    """(sub-command, action, its help as ``--help`` prints it) for every argument of every sub-command."""
    parser = build_parser()
    (commands,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    found = []
    for name, sub in commands.choices.items():
        formatter = sub._get_formatter()
        for action in sub._actions:
            if not isinstance(action, argparse._HelpAction):
                found.append((name, action, formatter._expand_help(action) if action.help else ""))
    return found


def test_every_option_of_every_sub_command_is_explained() -> None:
    options = _options()
    assert {name for name, _, _ in options} >= {"train", "eval", "baselines", "synth", "extract", "predict", "runs"}
    for name, action, text in options:
        label = f"tvgkit {name} {action.dest}"
        assert text.strip(), f"{label} has no help"
        if action.default not in (None, False, argparse.SUPPRESS):
            assert "default" in text and str(action.default) in text, f"{label}: help does not say its default"
        for choice in action.choices or ():
            assert str(choice) in text, f"{label}: help does not name the choice {choice!r}"


def test_the_options_the_issue_named_say_what_they_are() -> None:
    text = {(name, action.dest): help_text for name, action, help_text in _options()}
    assert text[("eval", "split")] == "split to score on: train, val, test (default: test)"
    assert text[("predict", "top")] == "how many ranked spans to print (default: 5)"
    assert "(default: runs)" in text[("runs", "runs_dir")]
    assert "(default: 4.0)" in text[("extract", "fps")] and "(default: 1.0)" in text[("extract", "clip_seconds")]
    assert "runs/baselines-query-blind/" in text[("baselines", "no_model")]


@pytest.fixture(scope="module")
def tiny_cache(tmp_path_factory):
    root = tmp_path_factory.mktemp("newcomer")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TVGKIT_CACHE", str(root / "cache"))
        yield root


def _fake_training(calls: list[str], capsys):
    """A stand-in for the query-blind training that records what had been printed when it started."""
    from tvgkit.grounding.baselines import run_blind_baselines

    def blind_baselines(cfg, splits, progress):
        calls.append(capsys.readouterr().out)
        results = run_blind_baselines(splits.records["train"], splits.records["test"], seed=cfg.seed)
        return results | {"query_blind_model": {k: 0.0 for k in results["whole_video"]}}

    return blind_baselines


def test_synthetic_baselines_state_the_training_first_and_can_skip_it(tiny_cache, monkeypatch, capsys) -> None:
    from tvgkit.grounding import baselines, splits

    tiny, load = preset("tiny"), splits.load_splits
    monkeypatch.setattr(splits, "load_splits", lambda data, progress: load(tiny.data, progress=False))
    calls: list[str] = []
    monkeypatch.setattr(baselines, "blind_baselines", _fake_training(calls, capsys))
    capsys.readouterr()
    assert main(["baselines", "--dataset", "synthetic", "--json"]) == 0
    (before,) = calls  # the model trained once, after the line that says so
    assert "trains the query-blind model" in before and "runs/baselines-query-blind/" in before
    assert "--no-model skips it" in before
    assert "query_blind_model" in json.loads(capsys.readouterr().out.splitlines()[-1])

    assert main(["baselines", "--dataset", "synthetic", "--no-model", "--json"]) == 0
    out = capsys.readouterr().out
    assert len(calls) == 1 and "trains" not in out
    rows = json.loads(out.splitlines()[-1])
    assert sorted(rows) == ["best_fixed_span", "best_span_per_metric", "kde_prior", "whole_video"]


def test_predict_prints_its_warning_before_the_table_when_redirected(tiny_cache, tmp_path) -> None:
    """Both streams into one file (``> out.txt 2>&1``): the unknown-word warning comes first."""
    sets = [a for s in [*PRESETS["tiny"], "train.device=cpu"] for a in ("--set", s)]
    assert main(["train", *sets, "--set", f"runs_dir={tmp_path}", "--set", "name=run", "--quiet"]) == 0
    synth = [a for s in PRESETS["tiny"] if s.startswith("data.synth.") for a in ("--set", s[len("data.synth.") :])]
    assert main(["synth", *synth, "--video", str(tmp_path / "demo.mp4"), "--quiet"]) == 0
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "tvgkit", "predict", str(tmp_path / "run"), "--video", str(tmp_path / "demo.mp4")]
    with open(tmp_path / "out.txt", "w") as out:
        subprocess.run(
            [*cmd, "--query", "a person rides a bike", "--top", "2"], stdout=out, stderr=out, env=env, check=True
        )
    lines = (tmp_path / "out.txt").read_text().splitlines()
    assert lines[0].startswith("tvgkit predict: warning: 3 word(s)") and "person, rides, bike" in lines[0]
    assert "demo.mp4 (" in lines[1] and lines[3].split() == ["rank", "start", "end", "score"]
    assert len(lines) == 6  # warning, video, checkpoint, header, two spans


def _fake_run(root: Path, name: str, overrides: list[str], miou: float) -> None:
    run = root / name
    run.mkdir(parents=True)
    config.save(preset("tiny", overrides), run / "config.yaml")
    test = {"R1@0.5": miou, "R1@0.7": miou, "mIoU": miou}
    (run / "metrics.json").write_text(json.dumps({"test": test, "val_best": test, "train_seconds": 1.0}))


def test_runs_table_leaves_out_what_a_runs_encoder_ignores(tmp_path) -> None:
    from tvgkit.grounding.commands import runs_table

    _fake_run(tmp_path, "bert1", [], 10.0)
    _fake_run(tmp_path, "minilm", ["text.encoder=minilm", "text.hidden=999", "text.dropout=0.3"], 20.0)
    table = runs_table(tmp_path)
    # text.hidden and text.dropout differ only where MiniLM ignores them: no column
    assert list(table.columns) == ["run", "text.encoder", "R1@0.5", "R1@0.7", "mIoU", "val mIoU", "train s"]
    _fake_run(tmp_path, "bert2", ["text.layers=2"], 30.0)
    table = runs_table(tmp_path)
    assert list(table.columns)[:3] == ["run", "text.encoder", "text.layers"]
    assert table[["run", "text.layers"]].values.tolist() == [["bert1", 1], ["bert2", 2], ["minilm", "-"]]
