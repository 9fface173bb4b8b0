"""Atomic checkpoint writes, random states that survive a weights_only round trip, and the deferred Ctrl-C."""

from __future__ import annotations

import argparse
import os
import random
import signal

import numpy as np
import pytest
import torch

from tvgkit.errors import InputError
from tvgkit.grounding import checkpoint


def _draws() -> tuple[float, float, list[float]]:
    return random.random(), float(np.random.standard_normal()), torch.rand(3).tolist()


@pytest.mark.parametrize("failure", [OSError, KeyboardInterrupt])
def test_a_failed_write_never_replaces_a_good_checkpoint(tmp_path, monkeypatch, failure) -> None:
    path = tmp_path / "last.pt"
    checkpoint.atomic_save({"step": 7, "w": torch.arange(4.0)}, path)
    good = path.read_bytes()

    def fail(obj, f) -> None:  # what a full disk or a Ctrl-C in the middle of torch.save leaves behind
        f.write(b"PK\x03\x04 half a checkpoint")
        raise failure("interrupted while writing")

    monkeypatch.setattr(torch, "save", fail)
    with pytest.raises(failure):
        checkpoint.atomic_save({"step": 8, "w": torch.zeros(4)}, path)
    assert path.read_bytes() == good and os.listdir(tmp_path) == ["last.pt"]  # the temporary file is gone too
    monkeypatch.undo()
    state = checkpoint.load(path)
    assert state["step"] == 7 and torch.equal(state["w"], torch.arange(4.0))


def test_a_leftover_temporary_file_is_never_read(tmp_path) -> None:
    path = checkpoint.atomic_save({"step": 1}, tmp_path / "last.pt")
    (tmp_path / ".last.pt.abc123.tmp").write_bytes(b"torn")  # a hard kill in the middle of a write
    assert checkpoint.load(path) == {"step": 1}
    checkpoint.atomic_save({"step": 2}, path)
    assert checkpoint.load(path) == {"step": 2}


def test_random_states_round_trip_through_a_weights_only_file(tmp_path) -> None:
    random.seed(1)
    np.random.seed(2)
    torch.manual_seed(3)
    np.random.standard_normal()  # numpy now holds a cached Gaussian: part of its state
    checkpoint.atomic_save({"rng": checkpoint.rng_state()}, tmp_path / "rng.pt")
    expected = _draws()
    random.seed(99)
    np.random.seed(99)
    torch.manual_seed(99)
    checkpoint.set_rng_state(checkpoint.load(tmp_path / "rng.pt")["rng"])  # torch.load(weights_only=True)
    assert _draws() == expected


def test_loading_refuses_arbitrary_pickles(tmp_path) -> None:
    torch.save({"config": argparse.Namespace(a=1)}, tmp_path / "pickled.pt")  # any class is code on load
    with pytest.raises(checkpoint.CheckpointError, match=r"pickled Python objects.*weights_only=True"):
        checkpoint.load(tmp_path / "pickled.pt")


@pytest.mark.parametrize("damage", ["truncated", "empty", "text"])
def test_a_damaged_checkpoint_is_an_input_error_naming_the_file(tmp_path, damage) -> None:
    path = checkpoint.atomic_save({"w": torch.ones(64, 64)}, tmp_path / "best.pt")
    data = path.read_bytes()
    path.write_bytes({"truncated": data[: len(data) // 2], "empty": b"", "text": b"not a checkpoint\n"}[damage])
    with pytest.raises(checkpoint.CheckpointError, match=rf"{path}: damaged or not a checkpoint.*; re-run") as caught:
        checkpoint.load(path, way_out="; re-run")
    assert isinstance(caught.value, InputError)  # the CLI prints it as one line


def test_the_first_ctrl_c_only_raises_the_flag_and_the_second_interrupts() -> None:
    # Python's own handler, whatever the test process inherited (a background job starts with SIGINT ignored).
    inherited = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with checkpoint.deferred_interrupt() as requested:
            assert not requested()
            os.kill(os.getpid(), signal.SIGINT)
            assert requested()  # no KeyboardInterrupt: the trainer finishes its step first
            with pytest.raises(KeyboardInterrupt):
                os.kill(os.getpid(), signal.SIGINT)
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    finally:
        signal.signal(signal.SIGINT, inherited)


def test_interrupted_tells_how_to_resume(tmp_path) -> None:
    err = checkpoint.Interrupted(tmp_path / "run", 12)
    assert isinstance(err, KeyboardInterrupt) and err.step == 12
    assert f"tvgkit train --resume {tmp_path / 'run'}" in str(err)
