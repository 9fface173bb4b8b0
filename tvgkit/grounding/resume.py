"""What a run leaves to continue from: ``last.pt`` (written, read back, found) and the guard's ``last_good.pt``.

``last.pt`` holds everything the loop needs to go on as if it had not stopped: weights, optimiser, scheduler, scaler,
every rank's random states, the loader's generator state and the counters of :class:`tvgkit.grounding.build.Run`.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import TYPE_CHECKING

from tvgkit import config as configs
from tvgkit.errors import InputError
from tvgkit.grounding import checkpoint, distributed
from tvgkit.grounding.presets import RunConfig
from tvgkit.lessons.diagnostics import NonFiniteError

if TYPE_CHECKING:
    from tvgkit.grounding.build import Run


def resume_point(run_dir: Path) -> tuple[RunConfig, dict]:
    """The config and ``last.pt`` of an unfinished run (a finished one has nothing left to do)."""
    if not (run_dir / "config.yaml").exists():
        raise FileNotFoundError(f"{run_dir}: not a run folder (no config.yaml)")
    if (run_dir / "metrics.json").exists():
        raise InputError(f"{run_dir}: the run has finished (metrics.json exists); nothing to resume")
    if not (run_dir / "last.pt").exists():
        raise FileNotFoundError(f"{run_dir}: no last.pt to resume from (it is written at the end of every epoch)")
    return configs.load(RunConfig, run_dir / "config.yaml"), checkpoint.load(run_dir / "last.pt")


def save_last(run: Run) -> None:
    """Rewrite ``last.pt`` atomically (every rank contributes its random states; rank 0 writes)."""
    rngs = distributed.all_gather(checkpoint.rng_state())
    if not run.world.main:
        return
    state = {
        "model": run.model.state_dict(),
        "optimizer": run.optimizer.state_dict(),
        "scheduler": run.scheduler.state_dict(),
        "scaler": run.scaler.state_dict(),
        "rng": rngs,
        "loader_rng": run.loader_rng,
        "step": run.step,
        "epoch": run.epoch,
        "batch": run.batch,
        "best": run.best,
        "seen": run.seen,
        "train_time": run.train_time,
        "history": run.log.history,
        "log_bytes": run.log.size(),
        "world": run.world.size,
    }
    checkpoint.atomic_save(state, run.run_dir / "last.pt")


def restore_last(run: Run, state: dict) -> None:
    """Put a ``last.pt`` back into a freshly built run."""
    if run.cfg.text.peft == "adalora":
        warnings.warn(
            "AdaLoRA keeps its importance scores outside the state_dict: the resumed run starts them afresh "
            "and will not match an uninterrupted one exactly",
            stacklevel=3,
        )
    run.model.load_state_dict(state["model"])
    run.optimizer.load_state_dict(state["optimizer"])
    run.scheduler.load_state_dict(state["scheduler"])
    if state["scaler"]:  # empty when the run was saved without fp16 loss scaling (CPU, bf16)
        run.scaler.load_state_dict(state["scaler"])
    run.step, run.epoch, run.batch, run.best = state["step"], state["epoch"], state["batch"], state["best"]
    run.seen, run.train_time = state["seen"], state["train_time"]
    run.loader_rng, run.rng = state["loader_rng"], state["rng"][run.world.rank]


def keep_last_good(run: Run, error: NonFiniteError) -> None:
    """The guard's reaction to a NaN/Inf: save the weights (still finite: it raises before the optimiser step) and
    log why the run stopped."""
    if run.world.main:
        checkpoint.atomic_save(run.model.state_dict(), run.run_dir / "last_good.pt")
    message = f"{error} Last good weights: {run.run_dir / 'last_good.pt'}"
    run.log.record({"step": run.step, "split": "stopped", "error": message})
