"""Training diagnostics that catch the failures which silently ruin runs, on any torch model.

Each tool answers one question a loss curve cannot:

- :class:`GradientFlowMonitor`: which modules receive gradient, and how far does each step move their weights?
- :class:`DeadUnitDetector`: which ReLU (or head) outputs are exactly zero, so that no gradient flows through them?
- :class:`NonFiniteGuard`: at the first NaN/Inf loss or gradient, which module produced it? Raises
  :class:`NonFiniteError` *before* the optimiser step, so the weights (and the last checkpoint) stay good.
- :class:`NonFiniteDetector`: the same promise without per-step hooks or host syncs (a flag on the device, read
  now and then; the bad step replayed under :class:`NonFiniteGuard` to name the culprit): what a trainer runs.
- :func:`audit_optimizers`: is a parameter stepped by two optimisers, or by none, or a frozen one by one?
- :func:`audit_eval_loader`: does an evaluation loader shuffle, drop or repeat samples?
- :func:`lr_find`: the learning-rate range test (exponential ramp, smoothed loss, stop on divergence).
"""

from __future__ import annotations

import contextlib
import copy
import math
import os
import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, RandomSampler

# ---------------------------------------------------------------------------------------------------------------
# helpers


def _tensors(value: Any) -> Iterator[torch.Tensor]:
    """Every floating-point tensor inside a module's output (tensors, tuples, lists, dicts, ModelOutput)."""
    if isinstance(value, torch.Tensor):
        if value.is_floating_point() or value.is_complex():
            yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _tensors(item)
    elif isinstance(value, (list, tuple)):
        for item in value:
            yield from _tensors(item)


def _any_non_finite(value: Any) -> torch.Tensor | None:
    """A 0-d bool tensor, True when any floating tensor in ``value`` holds NaN/Inf (no host sync); None if no tensor."""
    flags = [~torch.isfinite(t).all() for t in _tensors(value)]
    if not flags:
        return None
    return torch.stack(flags).any() if len(flags) > 1 else flags[0]


def _module_name(name: str) -> str:
    return name or "(model)"


# ---------------------------------------------------------------------------------------------------------------
# gradient flow


class GradientFlowMonitor:
    """Per-module gradient norm and update-to-weight ratio, recorded step by step.

    Call :meth:`after_backward` after ``loss.backward()`` (records gradient norms and snapshots the weights) and
    :meth:`after_step` after ``optimizer.step()`` (records ``||w_new - w_old|| / ||w_old||``). A healthy ratio is
    around 1e-3 per step (Karpathy's rule of thumb); 1e-6 means the module barely learns, 1e-1 that it is thrashed.
    Parameters are grouped by the module that owns them, or by the first ``depth`` parts of that module's name.
    The weight snapshot costs one copy of the trainable weights.
    """

    def __init__(self, model: nn.Module, depth: int | None = None) -> None:
        self.groups: dict[str, list[nn.Parameter]] = {}
        for name, param in model.named_parameters():
            if not param.requires_grad:
                continue
            owner = name.rsplit(".", 1)[0] if "." in name else ""
            if depth is not None:
                owner = ".".join(owner.split(".")[:depth])
            self.groups.setdefault(_module_name(owner), []).append(param)
        self.grad_norms: dict[str, list[float]] = {k: [] for k in self.groups}
        self.update_ratios: dict[str, list[float]] = {k: [] for k in self.groups}
        self._before: dict[str, list[torch.Tensor]] | None = None

    @torch.no_grad()
    def after_backward(self) -> None:
        for key, params in self.groups.items():
            squares = [p.grad.detach().float().pow(2).sum() for p in params if p.grad is not None]
            self.grad_norms[key].append(float(torch.stack(squares).sum().sqrt()) if squares else 0.0)
        self._before = {k: [p.detach().clone() for p in ps] for k, ps in self.groups.items()}

    @torch.no_grad()
    def after_step(self) -> None:
        if self._before is None:
            raise RuntimeError("call after_backward() before after_step(): the update needs the weights before it")
        for key, params in self.groups.items():
            delta = sum(
                float((p.detach() - b).float().pow(2).sum()) for p, b in zip(params, self._before[key], strict=True)
            )
            weight = sum(float(b.float().pow(2).sum()) for b in self._before[key])
            # undefined for all-zero weights (LoRA's B starts at zero): NaN, left out of medians and plots
            self.update_ratios[key].append(math.sqrt(delta) / math.sqrt(weight) if weight > 0 else float("nan"))
        self._before = None

    def summary(self) -> dict[str, dict[str, float]]:
        """Per group: median gradient norm and median update ratio over the recorded steps."""
        return {
            k: {
                "grad_norm": float(np.median(self.grad_norms[k])) if self.grad_norms[k] else float("nan"),
                "update_ratio": float(np.nanmedian(self.update_ratios[k]))
                if np.isfinite(self.update_ratios[k]).any()
                else float("nan"),
            }
            for k in self.groups
        }

    def plot(self, title: str = "gradient flow"):
        """Two panels over steps, log scale: gradient norm and update/weight ratio per group (zeros left out)."""
        import matplotlib.pyplot as plt

        fig, (ax_g, ax_u) = plt.subplots(1, 2, figsize=(10, 3.6))
        keys = list(self.groups)
        prefix = os.path.commonprefix(keys).rpartition(".")[0] if len(keys) > 1 else ""
        for key in keys:
            label = key[len(prefix) + 1 :] if prefix else key  # drop a shared wrapper prefix (e.g. peft's)
            for ax, values in ((ax_g, self.grad_norms[key]), (ax_u, self.update_ratios[key])):
                values = np.asarray(values, dtype=float)
                ax.plot(np.where(values > 0, values, np.nan), label=label)  # zeros cannot be shown on a log axis
        ax_u.axhline(1e-3, color="grey", ls="--", lw=1, label="1e-3 rule of thumb")
        for ax, label in ((ax_g, "gradient norm"), (ax_u, "update / weight")):
            ax.set_yscale("log")
            ax.set_xlabel("step")
            ax.set_ylabel(label)
        ax_u.legend(fontsize=7, loc="best", ncol=2)
        fig.suptitle(title)
        fig.tight_layout()
        return fig


# ---------------------------------------------------------------------------------------------------------------
# dead units


class DeadUnitDetector:
    """Share of exactly-zero outputs after every ReLU/ReLU6 (and any extra modules, e.g. the heads).

    A ReLU unit whose output is zero for every input passes no gradient and never recovers: a regression head that
    ends in ReLU and starts below zero is dead from step 0. Modules called through ``torch.nn.functional.relu`` are
    invisible to hooks: pass the enclosing module in ``modules`` instead. Use as a context manager or call
    :meth:`remove`.
    """

    def __init__(
        self,
        model: nn.Module,
        kinds: tuple[type[nn.Module], ...] = (nn.ReLU, nn.ReLU6),
        modules: dict[str, nn.Module] | None = None,
    ) -> None:
        watched = {_module_name(n): m for n, m in model.named_modules() if isinstance(m, kinds)}
        watched.update(modules or {})
        self.zeros: dict[str, int] = dict.fromkeys(watched, 0)
        self.total: dict[str, int] = dict.fromkeys(watched, 0)
        self.alive: dict[str, torch.Tensor | None] = dict.fromkeys(watched)
        self._handles = [m.register_forward_hook(self._hook(n)) for n, m in watched.items()]

    def _hook(self, name: str) -> Callable:
        @torch.no_grad()
        def hook(module: nn.Module, args: Any, output: Any) -> None:
            out = next(_tensors(output), None)
            if out is None:
                return
            nonzero = out.detach() != 0
            self.zeros[name] += int(nonzero.numel() - nonzero.sum())
            self.total[name] += nonzero.numel()
            # a unit is a last-dimension channel; it is alive once it was non-zero for some input
            seen = nonzero.reshape(-1, out.shape[-1]).any(0) if out.dim() else nonzero.reshape(1)
            self.alive[name] = seen if self.alive[name] is None else self.alive[name] | seen

        return hook

    def report(self) -> dict[str, dict[str, float]]:
        """Per module: ``zero_share`` (of all outputs seen), ``dead_units`` (never non-zero) and ``units``."""
        out = {}
        for name, total in self.total.items():
            alive = self.alive[name]
            out[name] = {
                "zero_share": self.zeros[name] / total if total else float("nan"),
                "dead_units": int((~alive).sum()) if alive is not None else 0,
                "units": int(alive.numel()) if alive is not None else 0,
            }
        return out

    def reset(self) -> None:
        for name in self.total:
            self.zeros[name], self.total[name], self.alive[name] = 0, 0, None

    def remove(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []

    def __enter__(self) -> DeadUnitDetector:
        return self

    def __exit__(self, *exc: object) -> None:
        self.remove()


# ---------------------------------------------------------------------------------------------------------------
# non-finite guard


class NonFiniteError(RuntimeError):
    """Training produced NaN/Inf. ``where`` is ``"loss"`` or ``"gradient"``; ``module_name`` names the culprit."""

    def __init__(self, step: int, where: str, module_name: str | None, detail: str = "") -> None:
        self.step, self.where, self.module_name = step, where, module_name
        culprit = f"; first non-finite: {module_name}" if module_name else ""
        super().__init__(
            f"step {step}: non-finite {where}{culprit}{' (' + detail + ')' if detail else ''}. "
            "Training stopped before the optimiser step, so the weights and the last checkpoint are still good."
        )


class NonFiniteGuard:
    """Stops training at the first NaN/Inf loss or gradient and names where it came from.

    While :meth:`watch` is active, a forward hook on every module keeps a reference to its inputs and outputs in the
    order the modules finish (autograd keeps these tensors alive anyway, so this costs no copy and no host sync).
    Only when :meth:`check_loss` or :meth:`check_gradients` finds a NaN/Inf are they inspected, and
    :class:`NonFiniteError` names the first module whose output went non-finite from finite inputs (or, when its
    inputs were already non-finite, "input of <module>"), or the first parameter with a non-finite gradient; the
    optional ``on_error(error)`` runs first (save the last good weights, close logs). An in-place operation that
    later overwrites a module's output can shift the blame to a later module::

        with guard.watch(step):
            loss = loss_fn(model(x), y)
            guard.check_loss(loss)
            loss.backward()
            guard.check_gradients()
        optimizer.step()
    """

    def __init__(self, model: nn.Module, on_error: Callable[[NonFiniteError], None] | None = None) -> None:
        self.model = model
        self.on_error = on_error
        self.step = 0
        self._records: list[tuple[str, nn.Module, Any, Any]] = []
        self._handles: list[torch.utils.hooks.RemovableHandle] = []

    def start(self, step: int) -> None:
        """Hook every module for ``step`` (a trainer that cannot wrap its step in :meth:`watch` calls this)."""
        self.stop()
        self.step = step
        self._handles = [m.register_forward_hook(self._hook(_module_name(n))) for n, m in self.model.named_modules()]

    def stop(self) -> None:
        """Remove the hooks and drop the references to the step's tensors."""
        for handle in self._handles:
            handle.remove()
        self._handles, self._records = [], []

    @contextlib.contextmanager
    def watch(self, step: int) -> Iterator[NonFiniteGuard]:
        self.start(step)
        try:
            yield self
        finally:
            self.stop()

    def _hook(self, name: str) -> Callable:
        def hook(module: nn.Module, args: Any, output: Any) -> None:
            self._records.append((name, module, args, output))

        return hook

    def culprit(self) -> str | None:
        """The first module (in execution order) whose output was non-finite, as ``"name (Type)"``."""
        for name, module, args, output in self._records:
            out_flag = _any_non_finite(output)
            if out_flag is not None and bool(out_flag):
                in_flag = _any_non_finite(args)
                prefix = "input of " if in_flag is not None and bool(in_flag) else ""
                return f"{prefix}{name} ({type(module).__name__})"
        return None

    def _fail(self, error: NonFiniteError) -> None:
        self.stop()
        if self.on_error is not None:
            self.on_error(error)  # e.g. the trainer saves the last good weights and closes its logs
        raise error

    def check_loss(self, loss: torch.Tensor) -> None:
        if not bool(torch.isfinite(loss.detach()).all()):
            self._fail(NonFiniteError(self.step, "loss", self.culprit(), f"loss = {loss.detach().flatten()[0].item()}"))

    def check_gradients(self) -> None:
        named = [(n, p.grad) for n, p in self.model.named_parameters() if p.grad is not None]
        if not named:
            return
        flags = torch.stack([~torch.isfinite(g).all() for _, g in named])
        if bool(flags.any()):
            first = named[int(flags.nonzero()[0, 0])][0]
            culprit = self.culprit() or "outputs were finite"
            self._fail(NonFiniteError(self.step, "gradient", f"parameter {first}", culprit))


class NonFiniteDetector:
    """The guard's promise at the cost of one device operation per step: detect cheaply, diagnose on demand.

    :class:`NonFiniteGuard` hooks every module at every step and reads two flags on the host: on a GPU, that Python
    work and those synchronisations cost more than a small model's step. This detector instead folds the loss and the
    gradient norm (which clipping computes anyway) into a finite-flag on the device at each step (:meth:`observe`)
    and reads it only when :meth:`check` is called. Only if a step went non-finite is that step *replayed* with
    :class:`NonFiniteGuard`'s hooks, on its own batch and the weights it started from, to name the module or
    parameter: ``replay(batch, guard)`` runs the step's forward pass, ``guard.check_loss`` and, where gradients are
    checked, the backward pass and ``guard.check_gradients``; ``on_error(error)`` runs, then
    :class:`NonFiniteError` is raised.

    The weights must still be those of the bad step when it is replayed. A trainer that checks every step (on a CPU a
    check costs nothing) calls :meth:`check` before the optimiser step. A trainer that checks every N steps hands
    :attr:`bad` (sticky: it stays 1 from the first bad step on) to an optimiser that skips its update on the device
    when it is set, as PyTorch's fused Adam/AdamW do with ``optimizer.found_inf`` (the mechanism of its
    GradScaler): every step from the bad one on is then skipped, and the weights stay those before it. Replayed
    dropout draws new masks; a NaN that depends on one mask may then not reproduce, and the error says so.
    """

    def __init__(
        self,
        model: nn.Module,
        replay: Callable[[Any, NonFiniteGuard], None],
        on_error: Callable[[NonFiniteError], None] | None = None,
        device: torch.device | str = "cpu",
    ) -> None:
        self.model, self.replay, self.on_error = model, replay, on_error
        self.bad = torch.zeros((), device=device)  # 1.0 from the first non-finite step on (float: as found_inf)
        self._pending: list[tuple[int, Any, torch.Tensor]] = []  # (step, batch, flag) since the last check

    def observe(self, step: int, batch: Any, loss: torch.Tensor, grad_norm: torch.Tensor | None = None) -> None:
        """Fold this step's loss (and gradient norm, unless fp16 loss scaling makes inf gradients on purpose) into
        the flag; keeps a reference to the batch for a replay. No host synchronisation."""
        flag = ~torch.isfinite(loss.detach()).all()
        if grad_norm is not None:
            flag = flag | ~torch.isfinite(grad_norm)
        self._pending.append((step, batch, flag))
        self.bad.copy_(torch.maximum(self.bad, flag.to(self.bad.dtype)))

    def check(self) -> None:
        """Read the flags of the steps observed since the last check (one synchronisation); at the first bad step,
        replay it under :class:`NonFiniteGuard` and raise."""
        if not self._pending:
            return
        flags = torch.stack([flag for _, _, flag in self._pending]).cpu()
        pending, self._pending = self._pending, []
        if not bool(flags.any()):
            return
        step, batch, _ = pending[int(flags.nonzero()[0, 0])]
        with NonFiniteGuard(self.model, self.on_error).watch(step) as guard:
            self.replay(batch, guard)  # runs the step's forward (and backward) and the guard's checks: raises
        error = NonFiniteError(step, "loss or gradient", None, "not reproduced when the step was replayed")
        if self.on_error is not None:
            self.on_error(error)
        raise error


# ---------------------------------------------------------------------------------------------------------------
# audits


@dataclass(frozen=True)
class Finding:
    """One audit finding: its ``kind``, the parameter names (or loader facts) involved, and a readable message."""

    kind: str
    items: tuple[str, ...]
    message: str


def _param_names(model: nn.Module) -> dict[int, str]:
    return {id(p): n for n, p in model.named_parameters(remove_duplicate=False)}


def _short(names: Sequence[str], n: int = 3) -> str:
    return ", ".join(names[:n]) + (f" and {len(names) - n} more" if len(names) > n else "")


def audit_optimizers(model: nn.Module, optimizers: Iterable[torch.optim.Optimizer], warn: bool = True) -> list[Finding]:
    """Find parameters held by two optimisers (``shared``), trainable ones in none (``orphan``) and frozen ones in
    one (``frozen``). Shared parameters get two updates per step (two Adam states stepping the same weight), which
    doubles the effective rate and makes the loss swing. Warns once per finding when ``warn``."""
    optimizers = list(optimizers)
    names = _param_names(model)
    holders: dict[int, list[int]] = {}
    params: dict[int, torch.Tensor] = {}
    for i, opt in enumerate(optimizers):
        for group in opt.param_groups:
            for p in group["params"]:
                holders.setdefault(id(p), []).append(i)
                params[id(p)] = p
    findings = []
    shared = [names.get(k, f"<not in model: {tuple(params[k].shape)}>") for k, v in holders.items() if len(v) > 1]
    if shared:
        findings.append(
            Finding(
                "shared",
                tuple(shared),
                f"{len(shared)} parameter(s) are held by more than one optimiser ({_short(shared)}): each step "
                "updates them twice with separate optimiser states. Give every parameter to exactly one optimiser.",
            )
        )
    orphans = [n for n, p in model.named_parameters() if p.requires_grad and id(p) not in holders]
    if orphans:
        findings.append(
            Finding(
                "orphan",
                tuple(orphans),
                f"{len(orphans)} trainable parameter(s) are in no optimiser ({_short(orphans)}): they get gradients "
                "but never change. Add them to an optimiser or freeze them (requires_grad=False).",
            )
        )
    frozen = [names.get(k, "<not in model>") for k, p in params.items() if not p.requires_grad]
    if frozen:
        findings.append(
            Finding(
                "frozen",
                tuple(frozen),
                f"{len(frozen)} frozen parameter(s) are in an optimiser ({_short(frozen)}): was the freeze meant? "
                "Build the optimiser from [p for p in model.parameters() if p.requires_grad].",
            )
        )
    if warn:
        for finding in findings:
            warnings.warn(f"optimiser audit: {finding.message}", stacklevel=2)
    return findings


class LoaderAuditError(ValueError):
    """An evaluation loader that would change the reported metrics (shuffles, drops or repeats samples)."""


def _loader_indices(loader: DataLoader) -> list[int]:
    """The dataset indices one pass of ``loader`` would visit, in order, without loading any sample.

    The global torch RNG is forked so that inspecting a random sampler does not shift the caller's random stream.
    """
    source = loader.batch_sampler if loader.batch_sampler is not None else loader.sampler
    with torch.random.fork_rng(devices=[]):
        out: list[int] = []
        for item in source:
            if isinstance(item, (list, tuple)):
                out.extend(int(i) for i in item)
            else:
                out.append(int(item))
    return out


def audit_eval_loader(loader: DataLoader, strict: bool = True) -> list[Finding]:
    """Check that an evaluation loader visits every sample exactly once, in order.

    A shuffled loader reorders predictions against ground truths kept elsewhere; ``drop_last=True`` or a subset
    sampler silently evaluates on fewer queries. Raises :class:`LoaderAuditError` when ``strict``, else warns.
    """
    if isinstance(loader.dataset, torch.utils.data.IterableDataset):
        return []
    n = len(loader.dataset)
    indices = _loader_indices(loader)
    findings = []
    if isinstance(loader.sampler, RandomSampler) or indices != sorted(indices):
        findings.append(
            Finding("shuffles", (type(loader.sampler).__name__,), "the evaluation loader shuffles (use shuffle=False)")
        )
    missing = n - len(set(indices))
    if missing:
        why = "drop_last=True drops the last partial batch" if loader.drop_last else "the sampler skips indices"
        findings.append(
            Finding("drops", (str(missing),), f"the evaluation loader drops {missing} of {n} samples ({why})")
        )
    repeats = len(indices) - len(set(indices))
    if repeats:
        findings.append(Finding("repeats", (str(repeats),), f"the evaluation loader repeats {repeats} samples"))
    if findings:
        message = "evaluation-loader audit: " + "; ".join(f.message for f in findings)
        if strict:
            raise LoaderAuditError(message)
        warnings.warn(message, stacklevel=2)
    return findings


# ---------------------------------------------------------------------------------------------------------------
# learning-rate range test


@dataclass
class LRFindResult:
    """Rates tried, raw and smoothed losses, and the suggested rate with the rule that chose it."""

    rates: list[float]
    raw_losses: list[float]
    losses: list[float]
    suggestion: float
    rule: str
    diverged: bool
    candidates: dict[str, float] = field(default_factory=dict)


def _suggest(rates: np.ndarray, smooth: np.ndarray, rule: str) -> tuple[float, dict[str, float]]:
    best = int(np.argmin(smooth))
    candidates = {"min/10": float(rates[best] / 10)}
    skip = max(1, len(rates) // 10)  # the first points are the noisiest (the average has seen few losses)
    if best - skip >= 2:
        # steepest descent of the smoothed loss against log(rate), on the way down to the minimum
        slope = np.gradient(smooth[skip : best + 1], np.log(rates[skip : best + 1]))
        candidates["steepest"] = float(rates[skip + int(np.argmin(slope))])
    return candidates.get(rule, candidates["min/10"]), candidates


def lr_find(
    model: nn.Module,
    loss_fn: Callable[[nn.Module, Any], torch.Tensor],
    loader: Iterable,
    optimizer_factory: Callable[[Iterable[nn.Parameter]], torch.optim.Optimizer],
    start_lr: float = 1e-6,
    end_lr: float = 1.0,
    n_steps: int = 100,
    smoothing: float = 0.9,
    diverge_factor: float = 4.0,
    rule: str = "steepest",
) -> LRFindResult:
    """Learning-rate range test (Smith 2017; fastai's ``lr_find``): train with a rate rising exponentially from
    ``start_lr`` to ``end_lr``, smooth the loss (bias-corrected moving average), stop once it exceeds
    ``diverge_factor`` x its minimum or goes non-finite, then restore the model's weights and the torch RNG.

    ``loss_fn(model, batch)`` returns the scalar loss; ``optimizer_factory(params)`` builds a fresh optimiser.
    ``rule="steepest"`` suggests the rate where the smoothed loss falls fastest (skipping the first tenth of the
    points); ``"min/10"`` a tenth of the rate at the minimum (the fallback when the curve is too short for a
    slope). Both are in ``candidates``.
    """
    if rule not in ("steepest", "min/10"):
        raise ValueError(f"rule must be 'steepest' or 'min/10', got {rule!r}")
    initial = copy.deepcopy(model.state_dict())
    was_training = model.training
    device = next(model.parameters()).device
    optimizer = optimizer_factory([p for p in model.parameters() if p.requires_grad])
    rates, raw, smooth = [], [], []
    avg, best, diverged = 0.0, math.inf, False
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        model.train()
        batches = iter(loader)
        for step in range(n_steps):
            rate = start_lr * (end_lr / start_lr) ** (step / max(1, n_steps - 1))
            for group in optimizer.param_groups:
                group["lr"] = rate
            try:
                batch = next(batches)
            except StopIteration:
                batches = iter(loader)
                batch = next(batches)
            optimizer.zero_grad(set_to_none=True)
            loss = loss_fn(model, batch)
            value = float(loss.detach())
            if not math.isfinite(value):
                diverged = True
                break
            loss.backward()
            optimizer.step()
            avg = smoothing * avg + (1 - smoothing) * value
            smoothed = avg / (1 - smoothing ** (step + 1))
            rates.append(rate)
            raw.append(value)
            smooth.append(smoothed)
            best = min(best, smoothed)
            if smoothed > diverge_factor * best:
                diverged = True
                break
    model.load_state_dict(initial)
    model.train(was_training)
    if not rates:
        raise RuntimeError(f"lr_find: the loss was non-finite at the first rate {start_lr:g}; lower start_lr")
    suggestion, candidates = _suggest(np.array(rates), np.array(smooth), rule)
    used = rule if rule in candidates else "min/10"
    return LRFindResult(rates, raw, smooth, suggestion, used, diverged, candidates)


def plot_lr_find(result: LRFindResult, title: str = "learning-rate range test"):
    """Loss against rate (log x): raw losses faint, smoothed loss bold, the suggestion marked."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots()
    ax.plot(result.rates, result.raw_losses, color="C0", alpha=0.3, lw=1, label="loss")
    ax.plot(result.rates, result.losses, color="C0", lw=2, label="smoothed")
    ax.axvline(result.suggestion, color="C3", ls="--", label=f"suggested {result.suggestion:.2g} ({result.rule})")
    ax.set_xscale("log")
    ax.set_xlabel("learning rate")
    ax.set_ylabel("training loss")
    ax.set_title(title)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig
