import os
import random

import numpy as np
import pytest
import torch

from tvgkit import runtime


def test_size_from_argument_env_and_default(monkeypatch):
    monkeypatch.delenv(runtime.SIZE_ENV, raising=False)
    assert runtime.resolve_size() == "quick"
    monkeypatch.setenv(runtime.SIZE_ENV, "FULL")
    assert runtime.resolve_size() == "full"
    assert runtime.resolve_size("quick") == "quick"  # the argument wins over the environment


def test_unknown_size_is_an_error(monkeypatch):
    monkeypatch.setenv(runtime.SIZE_ENV, "medium")
    with pytest.raises(ValueError, match="TVGKIT_SIZE"):
        runtime.resolve_size()


def test_seed_everything_repeats_all_generators():
    draws = []
    for _ in range(2):
        runtime.seed_everything(7)
        draws.append((random.random(), float(np.random.rand()), float(torch.rand(1))))
    assert draws[0] == draws[1]


def test_temporary_seed_restores_the_outer_stream():
    runtime.seed_everything(1)
    expected = torch.rand(3)
    runtime.seed_everything(1)
    with runtime.temporary_seed(123):
        inner = torch.rand(3)
    assert torch.equal(torch.rand(3), expected)
    with runtime.temporary_seed(123):
        assert torch.equal(torch.rand(3), inner)


def test_setup_returns_a_cpu_session_with_fixed_threads(capsys, monkeypatch):
    monkeypatch.setattr(torch, "set_num_threads", lambda n: monkeypatch.setattr(torch, "get_num_threads", lambda: n))
    session = runtime.setup(size="full", seed=3, threads=1, device="cpu")
    assert (session.size, session.seed, session.threads, session.device.type) == ("full", 3, 1, "cpu")
    assert torch.get_num_threads() == 1
    assert not session.amp  # AMP is for CUDA only
    assert session.pick(quick=10, full=99) == 99
    line = capsys.readouterr().out.strip()
    assert "size full" in line and "seed 3" in line and "device cpu" in line


def test_autocast_is_a_no_op_on_cpu():
    with runtime.autocast(torch.device("cpu")):
        y = torch.ones(2, 2) @ torch.ones(2, 2)
    assert y.dtype == torch.float32


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error raised on machines without CUDA")
def test_asking_for_cuda_without_a_gpu_is_a_clear_error():
    with pytest.raises(RuntimeError, match="CUDA was requested"):
        runtime.pick_device("cuda")


def test_setup_outside_ipython_leaves_the_main_module_alone():
    # Creating an IPython shell (what set_matplotlib_formats does outside IPython) replaces sys.modules["__main__"],
    # and a script's process pool then cannot unpickle its own functions. A fresh interpreter, so no shell exists yet.
    import subprocess
    import sys

    code = (
        "import sys; main = sys.modules['__main__']; from tvgkit.runtime import setup; "
        "setup(seed=0, threads=1, verbose=False); assert sys.modules['__main__'] is main"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_the_simulated_cuda_switch_moves_only_automatic_choices(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setenv(runtime.SIMULATE_CUDA_ENV, "1")
    assert runtime.cuda_visible() and runtime.pick_device() == torch.device("cuda")  # as on a GPU machine
    assert runtime.pick_device("cpu") == torch.device("cpu")  # a pinned device stays
    assert runtime.setup(device="cpu", verbose=False).device.type == "cpu"
    with pytest.raises(RuntimeError, match="CUDA was requested"):
        runtime.pick_device("cuda")  # asking for CUDA explicitly still needs a real one
    monkeypatch.setenv(runtime.SIMULATE_CUDA_ENV, "0")
    assert not runtime.cuda_visible() and runtime.pick_device() == torch.device("cpu")


def test_the_unit_suite_runs_with_the_switch_on_where_there_is_no_gpu():
    # tests/conftest.py sets it for the session: the normal `pytest tests` run is the check, no second run needed
    if not torch.cuda.is_available() and os.environ.get(runtime.SIMULATE_CUDA_ENV) != "0":
        assert os.environ[runtime.SIMULATE_CUDA_ENV] == "1"
        assert runtime.setup(verbose=False).device.type == "cuda"


def test_expect_asserts_at_quick_and_reports_at_full(capsys):
    quick = runtime.Session("quick", 0, torch.device("cpu"), False, 1)
    full = runtime.Session("full", 0, torch.device("cpu"), False, 1)
    assert quick.expect(True, "R-Drop wins", 4, "most of 5") and capsys.readouterr().out == ""  # nothing printed
    with pytest.raises(AssertionError, match=r"^R-Drop wins: measured 2, expected most of 5$"):
        quick.expect(False, "R-Drop wins", 2, "most of 5")
    assert full.expect(False, "R-Drop wins", 2, "most of 5") is False  # no exception at full size
    assert full.expect(True, "trains") is True
    assert capsys.readouterr().out.splitlines() == [
        "verdict: R-Drop wins: measured 2, expected most of 5 -> does NOT hold at this size",
        "verdict: trains -> holds",
    ]


def test_setup_prints_the_notebooks_full_size_budget(capsys):
    from tvgkit.budgets import FULL_SIZES, H200_BUDGET_MAX_S, T4_SLOWDOWN, full_size_line

    runtime.setup(device="cpu", threads=1, notebook="04_r_drop")
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2 and lines[1] == full_size_line("04_r_drop")
    assert lines[1].startswith("full size (TVGKIT_SIZE=full): ") and "budget on one H200 <= 120 s" in lines[1]
    assert f"on a T4 <= {-(-120 * T4_SLOWDOWN // 60)} min" in lines[1]
    assert all(0 < b.h200_s <= H200_BUDGET_MAX_S for b in FULL_SIZES.values())
    with pytest.raises(KeyError, match="known: 00_start_here"):
        full_size_line("99_nope")
