"""Small, fast reproductions of the seeds' training pathologies (notebook 07), on a toy grounding task.

The task keeps what makes grounding grounding (a query picks a moment out of a sequence of clip features; the
answer is a normalised ``(start, end)``) and drops everything that costs time, so that each pathology can be
trained, diagnosed with :mod:`tvgkit.lessons.diagnostics` and fixed in a few seconds on a CPU:

- a video is ``n_clips`` feature vectors of noise; the clips inside the moment also carry the prototype vector of
  the query's class (one of ``n_classes`` "sentences"); each video has its own number of valid (unpadded) clips;
- :class:`ToyGrounder` scores every clip against the query, pools the scores with learned position embeddings
  over the valid clips (:class:`MaskedMean`) and regresses the span with a head that ends in a ReLU (the seeds'
  head) or a sigmoid (the bounded head).
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from tvgkit.lessons.diagnostics import GradientFlowMonitor, NonFiniteGuard

PROTOTYPE_SEED = 1234  # the classes' prototypes are shared by every split


def toy_grounding(
    n: int,
    seed: int,
    n_clips: int = 32,
    dim: int = 16,
    n_classes: int = 8,
    noise: float = 1.0,
    n_empty: int = 0,
) -> TensorDataset:
    """``(video [n, n_clips, dim], mask [n, n_clips], query [n], span [n, 2])``; spans are normalised by the number
    of valid clips. ``n_empty`` samples get zero valid clips (a corrupt, zero-length video) to reproduce a NaN."""
    protos = torch.randn(n_classes, dim, generator=torch.Generator().manual_seed(PROTOTYPE_SEED)) * 1.5
    g = torch.Generator().manual_seed(seed)
    valid = torch.randint(n_clips * 3 // 4, n_clips + 1, (n,), generator=g)
    length = (valid * (0.15 + 0.35 * torch.rand(n, generator=g))).round().clamp_min(1)
    start = ((valid - length) * torch.rand(n, generator=g)).floor()
    query = torch.randint(n_classes, (n,), generator=g)
    clips = torch.arange(n_clips)[None]
    inside = (clips >= start[:, None]) & (clips < (start + length)[:, None])
    mask = clips < valid[:, None]
    video = noise * torch.randn(n, n_clips, dim, generator=g) + inside[..., None] * protos[query][:, None, :]
    span = torch.stack([start / valid, (start + length) / valid], -1).float()
    if n_empty:
        mask[:n_empty] = False
        video[:n_empty] = 0.0
        span[:n_empty] = 0.0
    return TensorDataset(video * mask[..., None], mask.float(), query, span)


class MaskedMean(nn.Module):
    """Mean of ``x`` over the valid clips: ``sum(x * mask) / (sum(mask) + eps)``.

    With ``eps=0`` an empty video divides 0 by 0, which is NaN: the bug
    :class:`~tvgkit.lessons.diagnostics.NonFiniteGuard` names in notebook 07. ``eps=1e-6`` (or dropping empty videos
    at load time) fixes it.
    """

    def __init__(self, eps: float = 1e-6) -> None:
        super().__init__()
        self.eps = eps

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return (x * mask[..., None]).sum(1) / (mask.sum(1, keepdim=True) + self.eps)


class ToyGrounder(nn.Module):
    """Query-conditioned clip scores -> position-weighted pooling -> MLP -> ``(start, end)`` in [0, 1].

    ``head="relu"`` ends in a ReLU (unbounded below zero is cut: a negative pre-activation passes no gradient);
    ``head="sigmoid"`` predicts a centre and a width through a sigmoid, always differentiable and inside [0, 1].
    """

    def __init__(
        self, dim: int = 16, n_classes: int = 8, n_clips: int = 32, hidden: int = 32, head: str = "sigmoid"
    ) -> None:
        super().__init__()
        if head not in ("relu", "sigmoid"):
            raise ValueError(f"head must be 'relu' or 'sigmoid', got {head!r}")
        self.head_kind = head
        self.video = nn.Linear(dim, hidden)
        self.query = nn.Embedding(n_classes, hidden)
        self.score = nn.Sequential(nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, 1))
        self.position = nn.Parameter(torch.randn(n_clips, hidden) * 0.5)
        self.pool = MaskedMean()
        self.body = nn.Sequential(nn.Linear(2 * hidden, hidden), nn.ReLU())
        self.head = nn.Linear(hidden, 2)
        self.out = nn.ReLU() if head == "relu" else nn.Sigmoid()

    def forward(self, video: torch.Tensor, mask: torch.Tensor, query: torch.Tensor) -> torch.Tensor:
        v = self.video(video)
        relevance = torch.sigmoid(self.score(v * self.query(query)[:, None]))
        pooled = self.pool(torch.cat([relevance * self.position, relevance.expand_as(v) * v], -1), mask)
        raw = self.out(self.head(self.body(pooled)))
        if self.head_kind == "relu":
            return raw
        centre, width = raw.unbind(-1)
        return torch.stack([(centre - width / 2).clamp(0, 1), (centre + width / 2).clamp(0, 1)], -1)


def lora_copy(model: nn.Module, seed: int = 0, **lora_options: Any) -> nn.Module:
    """A deep copy of ``model`` with LoRA adapters (:func:`tvgkit.lessons.peft.apply`, options in peft's names),
    initialised from ``seed``. Imported here because importing peft costs seconds."""
    from tvgkit.lessons import peft

    torch.manual_seed(seed)
    return peft.apply(copy.deepcopy(model), "lora", **lora_options)


def train_loader(dataset: TensorDataset, seed: int, batch_size: int = 64) -> DataLoader:
    """A shuffling training loader whose order depends only on ``seed``."""
    return DataLoader(dataset, batch_size=batch_size, shuffle=True, generator=torch.Generator().manual_seed(seed))


def span_loss(model: nn.Module, batch: Sequence[torch.Tensor]) -> torch.Tensor:
    """L1 between predicted and true normalised spans (the ``loss_fn(model, batch)`` form ``lr_find`` takes)."""
    video, mask, query, span = batch
    return F.l1_loss(model(video, mask, query), span)


def train_steps(
    model: nn.Module,
    loader: DataLoader,
    optimizers: Iterable[torch.optim.Optimizer],
    n_steps: int,
    guard: bool = True,
    monitor: GradientFlowMonitor | None = None,
) -> list[float]:
    """Plain training loop over ``n_steps`` batches (cycling the loader); every optimiser steps every batch.

    With ``guard`` each step runs under :class:`NonFiniteGuard`, which raises before the optimiser step on the first
    NaN/Inf. Returns the training loss of every step.
    """
    optimizers = list(optimizers)
    watch = NonFiniteGuard(model)
    losses: list[float] = []
    batches = iter(loader)
    model.train()
    for step in range(n_steps):
        try:
            batch = next(batches)
        except StopIteration:
            batches = iter(loader)
            batch = next(batches)
        for opt in optimizers:
            opt.zero_grad(set_to_none=True)
        if guard:
            with watch.watch(step):
                loss = span_loss(model, batch)
                watch.check_loss(loss)
                loss.backward()
                watch.check_gradients()
        else:
            loss = span_loss(model, batch)
            loss.backward()
        if monitor is not None:
            monitor.after_backward()
        for opt in optimizers:
            opt.step()
        if monitor is not None:
            monitor.after_step()
        losses.append(float(loss.detach()))
    return losses


@torch.no_grad()
def predict(model: nn.Module, loader: DataLoader) -> np.ndarray:
    """Predicted normalised spans ``[N, 2]`` in the order the loader yields them."""
    model.eval()
    out = [model(video, mask, query) for video, mask, query, _ in loader]
    model.train()
    return torch.cat(out).numpy()


@torch.no_grad()
def mean_loss(model: nn.Module, loader: DataLoader) -> float:
    """Mean L1 span loss over a loader (sample-weighted)."""
    model.eval()
    total, count = 0.0, 0
    for batch in loader:
        total += float(span_loss(model, batch)) * len(batch[0])
        count += len(batch[0])
    model.train()
    return total / count


def evaluate_by_position(model: nn.Module, loader: DataLoader) -> dict[str, float]:
    """R1@m and mIoU with predictions paired to the dataset's annotations *by position*, as the seeds' evaluation
    did: right for an ordered, complete loader; silently wrong for one that shuffles or drops samples."""
    from tvgkit.metrics import evaluate

    preds = predict(model, loader)
    truths = loader.dataset.tensors[3][: len(preds)].numpy()
    return evaluate(preds, [tuple(t) for t in truths])
