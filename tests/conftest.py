"""Unit tests only: on a machine without CUDA, make every automatic device choice answer CUDA.

A test that means CPU-exact behaviour must pin its device (``train.device=cpu``, ``setup(device="cpu")``, ...):
on a GPU machine an unpinned one silently moves to CUDA and its CPU tolerances fail there (the first GPU run found
nine such failures). With ``$TVGKIT_SIMULATE_CUDA=1`` (see :func:`tvgkit.runtime.cuda_visible`), set here for the
whole session where torch sees no GPU, such a test fails on the CPU too, at its first tensor on the chosen device:
no second suite run is needed. The environment variable also reaches the subprocesses a test starts (``tvgkit``,
``torchrun``). A test whose checks hold on either device, with no CPU-exact number, says so with
``@pytest.mark.any_device`` and is left out. ``TVGKIT_SIMULATE_CUDA=0 pytest tests`` turns the switch off; on a GPU
machine it is off (the real device answers).
"""

from __future__ import annotations

import os

import pytest
import torch

from tvgkit.runtime import SIMULATE_CUDA_ENV

PIN_HINT = (
    f"tvgkit: this test let the kit choose its device; ${SIMULATE_CUDA_ENV}=1 made that choice CUDA, as on a GPU "
    "machine. Pin the device the test means (train.device=cpu, setup(device='cpu'), device='cpu'), or compare with "
    f"a stated cross-device tolerance. (Switch off: {SIMULATE_CUDA_ENV}=0.)"
)


def simulating() -> bool:
    return os.environ.get(SIMULATE_CUDA_ENV) == "1" and not torch.cuda.is_available()


@pytest.fixture(scope="session", autouse=True)
def _cuda_visible_everywhere():
    """Session-wide, so module-scoped fixtures (a run trained once per file) are under the switch too."""
    if torch.cuda.is_available() or os.environ.get(SIMULATE_CUDA_ENV) == "0":
        yield
        return
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(SIMULATE_CUDA_ENV, "1")
        yield


@pytest.fixture(autouse=True)
def _any_device_opt_out(request, monkeypatch):
    """``@pytest.mark.any_device``: the test's checks hold on CPU and CUDA alike (its module says why), so the kit
    may choose the device; the switch is off for it. (A module-scoped fixture sets the variable itself.)"""
    if request.node.get_closest_marker("any_device") is not None:
        monkeypatch.setenv(SIMULATE_CUDA_ENV, "0")


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    """Name the way out on a failure that the switch caused (torch's own message only says CUDA is missing)."""
    report = yield
    if report.failed and simulating() and "CUDA" in str(report.longrepr):
        report.sections.append(("tvgkit device switch", PIN_HINT))
    return report
