"""R-Drop (Liang et al. 2021, NeurIPS, arXiv 2106.14448): two dropout passes, one consistency term.

Each sample goes through the model twice; dropout draws different masks, so the two outputs differ. R-Drop adds
``alpha * D(out1, out2)`` to the task loss (averaged over both passes), where ``D`` is the symmetric KL divergence
between the two predicted distributions for classification, and a distance (the official code uses MSE) for
regression outputs.

The official implementation does not call the model twice: it concatenates the batch with itself, runs one forward
pass (dropout masks are drawn independently per row, so the two halves see different masks) and splits the output.
:func:`doubled_forward` does exactly that.

The term must stay in the autograd graph. ``loss + alpha * rdrop_loss(o1, o2).item()`` adds a Python float: the
printed loss changes, the gradients do not (the bug the grounding seed shipped; notebook 04 shows it).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Literal

import torch
import torch.nn.functional as F

Kind = Literal["kl", "mse", "l1", "smooth_l1"]
KINDS: tuple[str, ...] = ("kl", "mse", "l1", "smooth_l1")
REGRESSION_KINDS: tuple[str, ...] = ("mse", "l1", "smooth_l1")


def _masked_mean(values: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Mean of per-position ``values`` over positions where ``mask`` is True (all positions when ``mask`` is None).

    Masked positions are selected out (not multiplied by zero), so a NaN or inf there cannot leak into the result.
    """
    if mask is None:
        return values.mean()
    mask = mask.to(torch.bool)
    if mask.shape != values.shape:
        raise ValueError(f"mask shape {tuple(mask.shape)} must match the positions' shape {tuple(values.shape)}")
    if not bool(mask.any()):
        raise ValueError("mask keeps no position: the R-Drop term is undefined")
    return values[mask].mean()


def symmetric_kl(logits1: torch.Tensor, logits2: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """``(KL(p1 || p2) + KL(p2 || p1)) / 2`` with ``p = softmax(logits)`` over the last dim.

    Reduction: the KL is summed over the classes (the last dim) at each position, then averaged over the positions
    (``[B]`` for logits ``[B, C]``, ``[B, T]`` for ``[B, T, C]``) where ``mask`` is True. Gradients flow through both
    passes (neither side is detached, as in the official code).

    Why a mean and not the official sum: the official fairseq code sums the KL over all non-pad tokens, and its
    cross-entropy is also a token sum, both later divided by the token count, so alpha weighs a per-token KL against a
    per-token cross-entropy. Averaging here keeps that same ratio next to a *mean* cross-entropy
    (``F.cross_entropy``'s default), so the released alphas (translation 5, ViT 0.3, ...) transfer. The official
    BERT/GLUE snippet instead sums the KL but averages the cross-entropy: its alpha corresponds to
    ``alpha * batch_size`` here.
    """
    if logits1.shape != logits2.shape:
        raise ValueError(f"logits shapes differ: {tuple(logits1.shape)} vs {tuple(logits2.shape)}")
    logp1 = F.log_softmax(logits1.float(), dim=-1)
    logp2 = F.log_softmax(logits2.float(), dim=-1)
    # Classes masked out with -inf in both passes have p = 0 on both sides and contribute 0 (F.kl_div gives NaN there).
    both_out = torch.isneginf(logp1) & torch.isneginf(logp2)
    diff = logp1.masked_fill(both_out, 0.0) - logp2.masked_fill(both_out, 0.0)
    # (KL(p1||p2) + KL(p2||p1)) / 2 = sum (p1 - p2)(log p1 - log p2) / 2 over the classes.
    per_position = ((logp1.exp() - logp2.exp()) * diff).sum(-1) / 2
    return _masked_mean(per_position, mask)


_ELEMENTWISE: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {
    "mse": lambda a, b: F.mse_loss(a, b, reduction="none"),
    "l1": lambda a, b: F.l1_loss(a, b, reduction="none"),
    "smooth_l1": lambda a, b: F.smooth_l1_loss(a, b, reduction="none", beta=1.0),
}


def regression_distance(
    a: torch.Tensor, b: torch.Tensor, kind: str = "mse", mask: torch.Tensor | None = None
) -> torch.Tensor:
    """Distance between two regression outputs: ``"mse"`` (the official choice), ``"l1"`` or ``"smooth_l1"`` (beta 1).

    Without ``mask``: the mean over all elements (what ``F.mse_loss(a, b)`` returns). With ``mask`` of shape
    ``a.shape[:mask.dim()]``: the elementwise distance is averaged over the remaining trailing dims at each position,
    then over the positions where ``mask`` is True. The distance is symmetric, so no averaging of two directions.
    """
    if kind not in _ELEMENTWISE:
        raise ValueError(f"kind must be one of {REGRESSION_KINDS}, got {kind!r}")
    if a.shape != b.shape:
        raise ValueError(f"output shapes differ: {tuple(a.shape)} vs {tuple(b.shape)}")
    per_element = _ELEMENTWISE[kind](a.float(), b.float())
    if mask is None:
        return per_element.mean()
    trailing = tuple(range(mask.dim(), per_element.dim()))
    per_position = per_element.mean(dim=trailing) if trailing else per_element
    return _masked_mean(per_position, mask)


def rdrop_loss(
    out1: torch.Tensor, out2: torch.Tensor, kind: str = "kl", mask: torch.Tensor | None = None
) -> torch.Tensor:
    """The R-Drop consistency term between two passes: :func:`symmetric_kl` for ``"kl"`` (logits), else
    :func:`regression_distance`. Multiply by alpha and add it to the task loss, as a tensor."""
    if kind == "kl":
        return symmetric_kl(out1, out2, mask)
    if kind in REGRESSION_KINDS:
        return regression_distance(out1, out2, kind, mask)
    raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")


def _double(x: Any) -> Any:
    """Concatenate every tensor in ``x`` (tensor, tuple/list or mapping of them) with itself along dim 0."""
    if isinstance(x, torch.Tensor):
        return torch.cat([x, x], dim=0) if x.dim() > 0 else x
    if isinstance(x, (tuple, list)):
        return type(x)(_double(v) for v in x)
    if isinstance(x, Mapping):
        return {k: _double(v) for k, v in x.items()}
    return x


def _split(x: Any, n: int) -> tuple[Any, Any]:
    """Split every tensor with ``2 n`` rows into its two halves; anything else is returned for both halves."""
    if isinstance(x, torch.Tensor):
        if x.dim() > 0 and x.shape[0] == 2 * n:
            return x[:n], x[n:]
        return x, x
    if isinstance(x, (tuple, list)):
        pairs = [_split(v, n) for v in x]
        return type(x)(p[0] for p in pairs), type(x)(p[1] for p in pairs)
    if isinstance(x, Mapping):
        pairs = {k: _split(v, n) for k, v in x.items()}
        first, second = {k: p[0] for k, p in pairs.items()}, {k: p[1] for k, p in pairs.items()}
        try:  # keep the output's own mapping type (e.g. transformers' ModelOutput) where it rebuilds from kwargs
            return type(x)(**first), type(x)(**second)
        except TypeError:
            return first, second
    return x, x


def _batch_size(x: Any) -> int | None:
    if isinstance(x, torch.Tensor):
        return x.shape[0] if x.dim() > 0 else None
    values = x.values() if isinstance(x, Mapping) else x if isinstance(x, (tuple, list)) else ()
    for v in values:
        n = _batch_size(v)
        if n is not None:
            return n
    return None


def doubled_forward(fn: Callable[..., Any], *inputs: Any, **kwargs: Any) -> tuple[Any, Any]:
    """Run ``fn`` once on the batch concatenated with itself and return the two halves' outputs ``(out1, out2)``.

    Every tensor in ``inputs`` and ``kwargs`` (also inside tuples, lists and dicts) is concatenated with itself along
    dim 0; non-tensors pass through unchanged. In the output, every tensor whose first dim is twice the batch size is
    split in two; other values (scalars, ``None``) are returned for both halves. In training mode the two halves get
    independent dropout masks; in eval mode they are identical.
    """
    n = _batch_size((inputs, kwargs))
    if n is None:
        raise ValueError("doubled_forward needs at least one tensor input with a batch dimension")
    out = fn(*_double(inputs), **_double(kwargs))
    return _split(out, n)


def with_rdrop(
    task_loss1: torch.Tensor,
    task_loss2: torch.Tensor,
    out1: torch.Tensor,
    out2: torch.Tensor,
    alpha: float,
    kind: str = "kl",
    mask: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The full R-Drop objective: ``(task_loss1 + task_loss2) / 2 + alpha * rdrop_loss(out1, out2)``.

    Returns ``(total, term)``; ``term`` is the unweighted consistency term (a tensor in the graph; log ``.item()``
    of it, never add that float to the loss).
    """
    term = rdrop_loss(out1, out2, kind, mask)
    return (task_loss1 + task_loss2) / 2 + alpha * term, term


DETACHED_BUG_VARIANTS = ("task only", "task + alpha * term.item()", "task + alpha * term")


def detached_term_gradients(
    model: torch.nn.Module,
    inputs: torch.Tensor,
    targets: torch.Tensor,
    alpha: float = 1.0,
    kind: str = "kl",
    seed: int = 1,
) -> dict[str, tuple[float, torch.Tensor]]:
    """The seed's ``.item()`` bug made visible: loss value and flattened gradients for each of
    :data:`DETACHED_BUG_VARIANTS`, under the same dropout masks (re-seeded before each pass).

    ``term.item()`` is a Python float: it changes the logged loss but never reaches the gradients.
    """
    results = {}
    for variant in DETACHED_BUG_VARIANTS:
        model.zero_grad()
        torch.manual_seed(seed)
        out1, out2 = doubled_forward(model, inputs)
        task = (F.cross_entropy(out1, targets) + F.cross_entropy(out2, targets)) / 2
        term = rdrop_loss(out1, out2, kind)
        loss = {
            "task only": task,
            DETACHED_BUG_VARIANTS[1]: task + alpha * term.item(),
            DETACHED_BUG_VARIANTS[2]: task + alpha * term,
        }[variant]
        loss.backward()
        grads = torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])
        results[variant] = (loss.item(), grads)
    return results
