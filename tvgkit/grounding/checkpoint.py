"""Lose nothing: atomic checkpoint files, random-number states that reload safely, and a Ctrl-C that waits for a step.

Three failure modes cost the seeds' author whole runs, and each has one remedy here:

- a crash or a full disk while ``torch.save`` writes leaves a torn file where the last good checkpoint was:
  :func:`atomic_save` writes a temporary file in the same folder and renames it over the old one (``os.replace`` is
  atomic on one file system), so the checkpoint on disk is always either the old one or the new one;
- a resumed run that draws different random numbers (dropout masks, shuffles, prompt choices) is a different run:
  :func:`rng_state` captures python's, numpy's and torch's (CPU and CUDA) global states as tensors and plain
  Python values (the trainer adds its loader's generator, already a tensor), so that :func:`load` reads the file
  with ``torch.load(weights_only=True)``: no arbitrary pickle from a checkpoint is ever executed;
- Ctrl-C in the middle of an optimiser step leaves half-updated weights: inside :func:`deferred_interrupt` the first
  Ctrl-C (or SIGTERM, what schedulers and ``torchrun`` send) only raises a flag that the trainer polls between
  steps; it then saves and raises :class:`Interrupted`. A second Ctrl-C interrupts at once, without saving.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import random
import signal
import tempfile
import threading
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from tvgkit.errors import InputError


class Interrupted(KeyboardInterrupt):
    """Training stopped on request after saving ``last.pt``; ``tvgkit train --resume RUN_DIR`` continues it.

    A ``KeyboardInterrupt`` subclass, so code that already stops on Ctrl-C keeps doing so.
    """

    def __init__(self, run_dir: str | Path, step: int) -> None:
        self.run_dir = Path(run_dir)
        self.step = step
        super().__init__(
            f"interrupted at step {step}; checkpoint saved in {self.run_dir / 'last.pt'}\n"
            f"resume with: tvgkit train --resume {self.run_dir}"
        )


def atomic_save(obj: Any, path: str | Path) -> Path:
    """``torch.save(obj)`` to a temporary file beside ``path``, flushed to disk, then renamed over ``path``.

    If anything fails (disk full, Ctrl-C, a crash) before the rename, ``path`` keeps its previous content and the
    temporary file is removed (a hard kill may leave a ``.*.tmp`` file behind; it is never read).
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    return path


class CheckpointError(InputError):
    """A checkpoint file that cannot be used (truncated, not a torch file, or from another model); the message
    names the file and the way out."""


def load(path: str | Path, way_out: str = "") -> dict[str, Any]:
    """A checkpoint read with ``weights_only=True`` onto the CPU (RNG states must stay CPU tensors).

    A damaged file (truncated by a full disk or a copy cut short, or not a checkpoint at all) is a
    :class:`CheckpointError` naming it, followed by ``way_out`` (what the user can do instead), rather than
    torch's ``PytorchStreamReader`` traceback.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such checkpoint")
    try:
        state = torch.load(path, weights_only=True, map_location="cpu")
    except (RuntimeError, EOFError, OSError, ValueError, pickle.UnpicklingError, zipfile.BadZipFile) as err:
        text = str(err).strip()
        if isinstance(err, pickle.UnpicklingError) and "Unsupported global" in text:
            message = (
                f"{path}: refused: it holds pickled Python objects, which torch.load(weights_only=True) does not run "
                f"(not a tvgkit checkpoint, or not a trusted one){way_out}"
            )
        else:  # torch's first line for bytes that are no pickle at all is about its weights_only default: not useful
            reason = "not a torch file" if isinstance(err, pickle.UnpicklingError) else text.split("\n")[0] or "empty"
            message = f"{path}: damaged or not a checkpoint (truncated? torch says: {reason}){way_out}"
        raise CheckpointError(message) from None
    if not isinstance(state, dict):
        raise CheckpointError(f"{path}: holds a {type(state).__name__}, not a checkpoint dictionary{way_out}")
    return state


def rng_state() -> dict[str, Any]:
    """Every random state a training step reads, as tensors and plain values (``weights_only``-loadable)."""
    version, mt, gauss = random.getstate()
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state: dict[str, Any] = {
        "python": {"version": version, "mt": torch.tensor(mt, dtype=torch.int64), "gauss": gauss},
        "numpy": {
            "kind": kind,
            "keys": torch.from_numpy(keys.astype(np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached": float(cached),
        },
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what :func:`rng_state` captured (CUDA states only where CUDA is present).

    A checkpoint may hold more CUDA states than this machine has devices (written where more GPUs were visible):
    each visible device gets its own state, the rest are ignored (``set_rng_state_all`` would fail on them).
    """
    py = state["python"]
    random.setstate((py["version"], tuple(py["mt"].tolist()), py["gauss"]))
    npy = state["numpy"]
    keys = npy["keys"].numpy().astype(np.uint32)
    np.random.set_state((npy["kind"], keys, npy["pos"], npy["has_gauss"], npy["cached"]))
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(list(state["cuda"])[: torch.cuda.device_count()])


@contextlib.contextmanager
def deferred_interrupt() -> Iterator[Callable[[], bool]]:
    """Within the block, Ctrl-C (SIGINT) or SIGTERM only sets a flag; yields the function that reads it.

    The trainer polls the flag between optimiser steps, where model, optimiser and random states agree, so the
    checkpoint it then writes resumes exactly. The first signal puts the previous handler back, so a second one
    acts as usual (Ctrl-C raises ``KeyboardInterrupt`` at once, nothing saved). Signal handlers can only be set
    in the main thread; elsewhere the block changes nothing and the flag stays down.
    """
    requested = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        yield requested.is_set
        return
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}

    def handler(signum: int, frame: object) -> None:
        requested.set()
        signal.signal(signum, previous[signum] if previous[signum] is not None else signal.SIG_DFL)

    for sig in previous:
        signal.signal(sig, handler)
    try:
        yield requested.is_set
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old if old is not None else signal.SIG_DFL)
