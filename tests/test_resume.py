"""Stop a run (Ctrl-C at a step, a crash after a checkpoint) and resume it: the result equals the uninterrupted run's.

On CPU with one thread, "equal" means exactly: the same test metrics, the same history, and every weight tensor of the
final and of the best checkpoint bit for bit. The interrupt is a real SIGINT that the process sends itself from the
``on_step`` hook, so it goes through the same handler as Ctrl-C in a terminal.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from tvgkit import config
from tvgkit.cli import main
from tvgkit.grounding import checkpoint
from tvgkit.grounding.presets import preset
from tvgkit.grounding.train import train

EPOCHS = 3  # 2 steps per epoch on the tiny set: 6 steps


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    root = tmp_path_factory.mktemp("resume")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TVGKIT_CACHE", str(root / "cache"))
        yield root


def _cfg(root, name: str, *overrides: str):
    sets = ["train.device=cpu", f"runs_dir={root / 'runs'}", f"name={name}", f"train.epochs={EPOCHS}"]
    return preset("tiny", [*sets, *overrides])


@pytest.fixture(scope="module")
def reference(root):
    return train(_cfg(root, "whole"), progress=False)


def _ctrl_c_at(step: int):
    def hook(done: int, epoch: int) -> None:
        if done == step:
            os.kill(os.getpid(), signal.SIGINT)

    return hook


def _log(run_dir, notes: bool = False) -> list[dict]:
    """log.jsonl without the timing field; without the interrupted/resumed notes unless asked."""
    entries = [json.loads(line) for line in (run_dir / "log.jsonl").read_text().splitlines()]
    keep = [e for e in entries if notes or e.get("split") not in ("interrupted", "resumed")]
    return [{k: v for k, v in e.items() if k != "seconds"} for e in keep]


def _assert_same_run(run_dir, reference) -> None:
    assert json.loads((run_dir / "metrics.json").read_text())["test"] == reference.metrics["test"]
    for name in ("last.pt", "best.pt"):
        ours, theirs = (
            torch.load(run_dir / name, weights_only=True),
            torch.load(reference.run_dir / name, weights_only=True),
        )
        ours, theirs = ours.get("model", ours), theirs.get("model", theirs)
        assert ours.keys() == theirs.keys()
        assert all(torch.equal(ours[k], theirs[k]) for k in ours), name
    assert _log(run_dir) == _log(reference.run_dir)


@pytest.mark.parametrize(
    ("step", "epoch", "batch"),
    [(2, 0, 2), (3, 1, 1)],  # after the last batch of epoch 0 (validation still to run); in the middle of epoch 1
    ids=["end-of-epoch", "mid-epoch"],
)
def test_ctrl_c_then_resume_equals_the_uninterrupted_run(root, reference, step, epoch, batch) -> None:
    name = f"ctrl-c-{step}"
    with pytest.raises(checkpoint.Interrupted) as info:
        train(_cfg(root, name), progress=False, on_step=_ctrl_c_at(step))
    run_dir = root / "runs" / name
    assert info.value.step == step and info.value.run_dir == run_dir
    state = checkpoint.load(run_dir / "last.pt")
    assert (state["step"], state["epoch"], state["batch"]) == (step, epoch, batch)
    assert not (run_dir / "metrics.json").exists()

    resumed = train(resume=run_dir, progress=False)
    assert resumed.run_dir == run_dir and resumed.metrics["steps"] == reference.metrics["steps"] == 2 * EPOCHS
    _assert_same_run(run_dir, reference)
    notes = [e for e in _log(run_dir, notes=True) if e.get("split") in ("interrupted", "resumed")]
    assert notes == [
        {"step": step, "epoch": epoch, "split": "interrupted"},
        {"step": step, "epoch": epoch, "split": "resumed", "batch": batch},
    ]


def test_a_crash_resumes_from_the_last_checkpoint_and_drops_the_lines_logged_after_it(root, reference) -> None:
    name = "crash"

    def crash(step: int, epoch: int) -> None:
        if step == 6:
            raise RuntimeError("out of memory")  # not a Ctrl-C: nothing is saved here

    with pytest.raises(RuntimeError, match="out of memory"):
        train(_cfg(root, name, "train.checkpoint_every=5"), progress=False, on_step=crash)
    run_dir = root / "runs" / name
    state = checkpoint.load(run_dir / "last.pt")
    assert (state["step"], state["epoch"], state["batch"]) == (5, 2, 1)  # checkpoint_every: mid-epoch 2
    assert any(e.get("step") == 6 for e in _log(run_dir))  # logged after the checkpoint, before the crash
    train(resume=run_dir, progress=False)
    _assert_same_run(run_dir, reference)


def test_resume_refuses_a_finished_run_and_a_second_config(root, reference) -> None:
    with pytest.raises(ValueError, match="finished"):
        train(resume=reference.run_dir, progress=False)
    with pytest.raises(ValueError, match="own config.yaml"):
        train(_cfg(root, "x"), resume=reference.run_dir)
    assert main(["train", "--resume", str(reference.run_dir), "--set", "train.lr=1"]) == 2


def test_ctrl_c_in_the_cli_saves_exits_130_and_the_run_resumes(root, tmp_path, capsys) -> None:
    """A real ``tvgkit train`` process gets SIGINT once its first checkpoint is on disk."""
    config.save(_cfg(root, "cli", "train.epochs=20"), tmp_path / "run.yaml")  # long enough to be interrupted
    run_dir = root / "runs" / "cli"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[1]), "TVGKIT_CACHE": str(root / "cache")}
    cmd = [sys.executable, "-m", "tvgkit", "train", str(tmp_path / "run.yaml"), "--quiet"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not (run_dir / "last.pt").exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130
    assert "Traceback" not in err and f"resume with: tvgkit train --resume {run_dir}" in err
    stopped = checkpoint.load(run_dir / "last.pt")["step"]
    assert 2 <= stopped < 40 and not (run_dir / "metrics.json").exists()

    capsys.readouterr()
    assert main(["train", "--resume", str(run_dir), "--quiet"]) == 0
    assert "trained 40 steps" in capsys.readouterr().out
    assert json.loads((run_dir / "metrics.json").read_text())["steps"] == 40
