"""Run-time set-up shared by every notebook, the CLI, the tests and the benchmarks.

One call, :func:`setup`, makes a session reproducible and sized for the machine: it seeds python, numpy and torch,
fixes the CPU thread count (2-core laptops thrash with oversubscribed BLAS threads), picks CUDA with AMP when present
and the CPU otherwise, reads the notebook size (``TVGKIT_SIZE=quick|full``), sets a PNG plot style, and keeps
library warnings out of notebook stderr.
"""

from __future__ import annotations

import contextlib
import os
import platform
import random
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TypeVar

import numpy as np
import torch

SIZES = ("quick", "full")
SIZE_ENV = "TVGKIT_SIZE"
# The test suite sets this to 1 on machines without CUDA (tests/conftest.py): every automatic device choice then
# answers CUDA, as it would on a GPU machine, so a test that meant the CPU but did not pin it fails loudly here.
SIMULATE_CUDA_ENV = "TVGKIT_SIMULATE_CUDA"
T = TypeVar("T")


@dataclass(frozen=True)
class Session:
    """What :func:`setup` decided; notebooks read their sizes and device from it."""

    size: str
    seed: int
    device: torch.device
    amp: bool
    threads: int

    @property
    def quick(self) -> bool:
        return self.size == "quick"

    def pick(self, quick: T, full: T) -> T:
        """Return ``quick`` or ``full`` by the session size: ``n_steps = S.pick(200, 5000)``."""
        return quick if self.quick else full

    def expect(self, holds: bool, claim: str, measured: object = None, expected: object = None) -> bool:
        """Check a notebook's finding: an assertion at quick size (CI guards it), a printed verdict at full size.

        At quick size a failed ``holds`` raises AssertionError with the claim, the measured and the expected value;
        nothing is printed when it holds, so stored outputs do not change. At full size (sized for a GPU, never run
        in CI) the notebook does not stop on its own finding: one line says what was measured, what was expected
        and whether it held, and ``holds`` is returned.
        """
        values = "" if measured is None and expected is None else f": measured {measured}, expected {expected}"
        if self.quick:
            assert holds, f"{claim}{values}"
        else:
            print(f"verdict: {claim}{values} -> {'holds' if holds else 'does NOT hold at this size'}")
        return bool(holds)

    def autocast(self) -> contextlib.AbstractContextManager:
        """Mixed precision on CUDA (bf16 where supported), a no-op on CPU."""
        return autocast(self.device, self.amp)

    def line(self) -> str:
        return environment_line(self)


def resolve_size(size: str | None = None) -> str:
    """The size to run at: the argument if given, else ``$TVGKIT_SIZE``, else ``quick``."""
    chosen = (size or os.environ.get(SIZE_ENV) or "quick").strip().lower()
    if chosen not in SIZES:
        raise ValueError(f"size must be one of {SIZES}, got {chosen!r} (from the argument or ${SIZE_ENV})")
    return chosen


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch (all devices) so a run repeats from its seed."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def cuda_visible() -> bool:
    """Whether an automatic device choice takes CUDA: ``torch.cuda.is_available()``, or ``$TVGKIT_SIMULATE_CUDA=1``
    (the test suite's switch; on a machine without CUDA the chosen device then fails at its first tensor)."""
    return torch.cuda.is_available() or os.environ.get(SIMULATE_CUDA_ENV) == "1"


def pick_device(prefer: str | None = None) -> torch.device:
    """CUDA when available (or when asked for), else CPU. ``prefer='cpu'`` forces the CPU.

    Every automatic device choice of the kit comes through here (see :func:`cuda_visible`).
    """
    if prefer:
        device = torch.device(prefer)
        if device.type == "cuda" and not torch.cuda.is_available():
            raise RuntimeError("CUDA was requested but torch.cuda.is_available() is False")
        return device
    return torch.device("cuda" if cuda_visible() else "cpu")


def amp_dtype() -> torch.dtype:
    """bf16 where the GPU computes it natively (Ampere and later), else fp16, which needs a GradScaler.

    ``is_bf16_supported()`` also counts bf16 emulated in software (T4, V100: Colab's free GPUs), which is slow and
    would leave fp16-class GPUs without loss scaling; only native support counts here.
    """
    try:
        native = torch.cuda.is_bf16_supported(including_emulation=False)
    except TypeError:  # torch < 2.3 has no emulation flag and counts native support only
        native = torch.cuda.is_bf16_supported()
    return torch.bfloat16 if native else torch.float16


def autocast(device: torch.device, enabled: bool = True) -> contextlib.AbstractContextManager:
    """Autocast context for ``device``: bf16 (or fp16, see :func:`amp_dtype`) on CUDA, nothing on CPU."""
    if not enabled or device.type != "cuda":
        return contextlib.nullcontext()
    return torch.autocast(device_type="cuda", dtype=amp_dtype())


def quiet_warnings() -> None:
    """Silence known-noisy library warnings (they carry per-run paths and break notebook comparisons)."""
    for category in (FutureWarning, DeprecationWarning, UserWarning):
        warnings.filterwarnings("ignore", category=category, module=r"(peft|transformers|torch|seaborn|h5py)(\.|$)")
    warnings.filterwarnings("ignore", message=r".*is_gradient_checkpointing\W* is deprecated")
    # tqdm.auto falls back to the text bar without ipywidgets; the warning saying so is noise in stored outputs
    warnings.filterwarnings("ignore", message="IProgress not found")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")


def plot_style() -> None:
    """A readable, deterministic plot style; inline figures as PNG (SVG output changes every run)."""
    import matplotlib

    matplotlib.rcParams.update(
        {
            "figure.figsize": (7.0, 3.6),
            "figure.dpi": 100,
            "savefig.dpi": 120,
            "savefig.bbox": "tight",
            "axes.spines.top": False,
            "axes.spines.right": False,
            "axes.grid": True,
            "grid.alpha": 0.3,
            "font.size": 10,
            "svg.hashsalt": "tvgkit",
        }
    )
    with contextlib.suppress(ImportError):
        from IPython import get_ipython

        # Outside IPython there is nothing to set, and set_matplotlib_formats would create an InteractiveShell,
        # which replaces sys.modules["__main__"] (a script's process pool then cannot find its own functions).
        if get_ipython() is not None:
            from matplotlib_inline.backend_inline import set_matplotlib_formats

            set_matplotlib_formats("png")


def environment_line(session: Session | None = None) -> str:
    """One line that says what ran where: versions, device, threads, size and seed."""
    from tvgkit import __version__

    parts = [
        f"tvgkit {__version__}",
        f"python {platform.python_version()}",
        f"torch {torch.__version__}",
    ]
    if session is not None:
        dev = session.device.type
        if dev == "cuda":
            dev += f" ({torch.cuda.get_device_name(session.device)}, amp={'on' if session.amp else 'off'})"
        parts += [f"device {dev}", f"threads {session.threads}", f"size {session.size}", f"seed {session.seed}"]
    return " | ".join(parts)


def setup(
    size: str | None = None,
    seed: int = 0,
    threads: int | None = None,
    device: str | None = None,
    amp: bool = True,
    verbose: bool = True,
    notebook: str | None = None,
) -> Session:
    """Prepare a reproducible session; call once at the top of every notebook.

    ``threads`` defaults to the number of usable cores capped at 8 (more rarely helps small models and hurts
    laptops that share cores). ``device=None`` picks CUDA when present. ``notebook`` (its file name without
    ``.ipynb``) also prints what its full size runs and its time budget on a GPU (:mod:`tvgkit.budgets`).
    """
    resolved = resolve_size(size)
    n_threads = threads or min(8, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count())
    torch.set_num_threads(max(1, n_threads))
    seed_everything(seed)
    dev = pick_device(device)
    quiet_warnings()
    plot_style()
    session = Session(size=resolved, seed=seed, device=dev, amp=amp and dev.type == "cuda", threads=n_threads)
    if verbose:
        print(environment_line(session))
        if notebook is not None:
            from tvgkit.budgets import full_size_line

            print(full_size_line(notebook))
    return session


@contextlib.contextmanager
def temporary_seed(seed: int) -> Iterator[None]:
    """Run a block under ``seed`` and restore the previous global RNG states afterwards."""
    py, np_state, cpu = random.getstate(), np.random.get_state(), torch.get_rng_state()
    cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None
    seed_everything(seed)
    try:
        yield
    finally:
        random.setstate(py)
        np.random.set_state(np_state)
        torch.set_rng_state(cpu)
        if cuda is not None:
            torch.cuda.set_rng_state_all(cuda)
