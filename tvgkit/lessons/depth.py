"""Depth probes for :class:`tvgkit.lessons.blocks.Encoder` stacks, and the norm-position training experiment.

Probes (Xiong et al. 2020, "On Layer Normalization in the Transformer Architecture", arXiv 2002.04745):

- :func:`ffn_gradient_norms`: per-layer Frobenius norm of the *expected* gradient of each FFN weight (W1 = fc1,
  W2 = fc2): the gradient averaged over mini-batches, then its norm (their Figure 3); :func:`init_gradient_profile`
  averages that norm over seeds of freshly initialised models.
- :func:`last_w2_gradient_vs_depth` and :func:`loglog_slope`: Theorem 1 bounds the last layer's W2 gradient by
  O(d sqrt(ln d)) for Post-LN (no dependence on depth L: slope 0) and O(d sqrt(ln d / L)) for Pre-LN (slope -1/2).
- :func:`hidden_norms`: E||x||^2 / d per layer; Lemma 2 (uniform attention, Xavier init, ReLU, d x d weights,
  Gaussian inputs): Post-LN's x^{post,5}_l = 3/2 at every layer, Pre-LN's x_{l+1} in [1 + l/2, 1 + 3l/2].
- :func:`residual_profile`: per-layer relative update ||F_l|| / ||x_l|| and the cosine similarity of consecutive
  layers' outputs, the numbers behind Su Jianlin's "watered-down depth" of Pre-Norm (kexue.fm/archives/9009).

The probe model (:class:`ProbeModel`) is the theory's: Gaussian token vectors go through the encoder and a fixed
linear read-out, and each token's label comes from a fixed random "teacher" projection of that token, so the expected
gradient is a deterministic, non-zero quantity rather than noise around zero.

The training experiment (:func:`train_run`, :func:`warmup_grid`) trains :class:`TokenModel` on a
:mod:`tvgkit.lessons.tasks` sequence task with Adam, a linear warmup (or none) and a linear decay.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import nn

from tvgkit.lessons import tasks
from tvgkit.lessons.blocks import Block, Encoder
from tvgkit.runtime import temporary_seed

if TYPE_CHECKING:
    import pandas as pd


def blocks_of(model: nn.Module) -> list[Block]:
    """The :class:`Block` s of any model, in order (so probes work on wrappers such as :class:`TokenModel`)."""
    return [m for m in model.modules() if isinstance(m, Block)]


def simplified_encoder(n_layers: int, d_model: int, position: str, n_heads: int = 1) -> Encoder:
    """Xiong et al.'s theory setting: uniform attention (W^Q = W^K = 0), every weight d x d, Xavier, ReLU FFN,
    LayerNorm with gamma = 1 and beta = 0."""
    return Encoder(n_layers, d_model, n_heads, d_model, position, activation=nn.ReLU, uniform_attention=True)


class ProbeModel(nn.Module):
    """Gaussian tokens -> encoder -> fixed Xavier read-out to ``n_classes``; labels from a fixed teacher."""

    def __init__(self, encoder: Encoder, d_model: int, n_classes: int = 16) -> None:
        super().__init__()
        self.encoder = encoder
        self.readout = nn.Linear(d_model, n_classes, bias=False)
        nn.init.xavier_uniform_(self.readout.weight)
        self.register_buffer("teacher", torch.randn(d_model, n_classes))

    def sample(self, batch: int, tokens: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        x = torch.randn(batch, tokens, self.teacher.shape[0], generator=generator)
        return x, (x @ self.teacher).argmax(-1)

    def loss(self, batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        x, y = batch
        logits = self.readout(self.encoder(x))
        return nn.functional.cross_entropy(logits.flatten(0, 1), y.flatten())


def ffn_gradient_norms(
    model: nn.Module, batches: Iterable, loss_fn: Callable[[nn.Module, object], torch.Tensor]
) -> dict[str, np.ndarray]:
    """Frobenius norms of the expected gradients of every block's W1 (fc1) and W2 (fc2).

    The gradient is averaged over ``batches`` (``loss_fn(model, batch)`` gives each batch's loss) and only then
    normed, as in Xiong et al.'s Figure 3. Returns ``{"W1": array[L], "W2": array[L]}``.
    """
    layers = blocks_of(model)
    weights = [(b.ffn.fc1.weight, b.ffn.fc2.weight) for b in layers]
    sums = [[torch.zeros_like(w1), torch.zeros_like(w2)] for w1, w2 in weights]
    n = 0
    for batch in batches:
        model.zero_grad(set_to_none=True)
        loss_fn(model, batch).backward()
        for acc, (w1, w2) in zip(sums, weights, strict=True):
            acc[0] += w1.grad
            acc[1] += w2.grad
        n += 1
    model.zero_grad(set_to_none=True)
    return {
        "W1": np.array([(a[0] / n).norm().item() for a in sums]),
        "W2": np.array([(a[1] / n).norm().item() for a in sums]),
    }


@dataclass(frozen=True)
class ProbeConfig:
    """Sizes of the initialisation probes. Defaults run in well under a second per model on a CPU."""

    d_model: int = 64
    n_heads: int = 4
    tokens: int = 16
    batch: int = 16
    n_batches: int = 4
    simplified: bool = True


def probe_model(position: str, n_layers: int, config: ProbeConfig, seed: int) -> ProbeModel:
    """A freshly initialised :class:`ProbeModel` (simplified setting or full softmax attention) from ``seed``."""
    with temporary_seed(seed):
        if config.simplified:
            encoder = simplified_encoder(n_layers, config.d_model, position)
        else:
            encoder = Encoder(n_layers, config.d_model, config.n_heads, config.d_model, position, activation=nn.ReLU)
        return ProbeModel(encoder, config.d_model)


def _probe_batches(model: ProbeModel, config: ProbeConfig, seed: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    generator = torch.Generator().manual_seed(10_000 + seed)
    return [model.sample(config.batch, config.tokens, generator) for _ in range(config.n_batches)]


def init_gradient_profile(
    position: str, n_layers: int, config: ProbeConfig = ProbeConfig(), seeds: Sequence[int] = (0, 1, 2)
) -> dict[str, np.ndarray]:
    """Per-layer expected-gradient norms of W1 and W2 at initialisation, averaged over ``seeds`` (Figure 3)."""
    runs = []
    for seed in seeds:
        model = probe_model(position, n_layers, config, seed)
        runs.append(ffn_gradient_norms(model, _probe_batches(model, config, seed), ProbeModel.loss))
    return {key: np.mean([r[key] for r in runs], axis=0) for key in ("W1", "W2")}


def last_w2_gradient_vs_depth(
    position: str, depths: Sequence[int], config: ProbeConfig = ProbeConfig(), seeds: Sequence[int] = (0, 1, 2)
) -> np.ndarray:
    """The last layer's W2 expected-gradient norm for each depth (Theorem 1), averaged over ``seeds``."""
    return np.array([init_gradient_profile(position, n, config, seeds)["W2"][-1] for n in depths])


def loglog_slope(depths: Sequence[int], values: Sequence[float]) -> float:
    """Least-squares slope of log(value) against log(depth): 0 means no depth dependence, -0.5 means 1/sqrt(L)."""
    return float(np.polyfit(np.log(np.asarray(depths, float)), np.log(np.asarray(values, float)), 1)[0])


def lemma2_band(position: str, n_layers: int) -> tuple[np.ndarray, np.ndarray]:
    """Lemma 2's expected E||x||^2/d per layer l = 1..L: ``(low, high)``; Post-LN both 3/2, Pre-LN 1+l/2, 1+3l/2."""
    layer = np.arange(1, n_layers + 1, dtype=float)
    if position == "post":
        return np.full(n_layers, 1.5), np.full(n_layers, 1.5)
    if position == "pre":
        return 1 + layer / 2, 1 + 3 * layer / 2
    raise ValueError("Lemma 2 covers post and pre only")


@torch.no_grad()
def hidden_norms(encoder: Encoder, x: torch.Tensor) -> np.ndarray:
    """Mean over tokens of ||h_l||^2 / d per layer: Post-LN h = x^{post,5}_l (the sum before the second LN),
    Pre-LN and DeepNorm h = the layer's output x_{l+1} (DeepNorm's is a LayerNorm output, so 1 by construction)."""
    _, records = encoder(x, return_intermediates=True)
    key = "ffn_sum" if encoder.position == "post" else "output"
    d = x.shape[-1]
    return np.array([(r[key].pow(2).sum(-1) / d).mean().item() for r in records])


def lemma2_check(
    position: str, n_layers: int, d_model: int = 64, tokens: int = 16, batch: int = 32, seeds: Sequence[int] = (0, 1, 2)
) -> dict[str, np.ndarray]:
    """Measured E||x_l||^2/d in the simplified setting (averaged over ``seeds``) next to Lemma 2's band."""
    measured = []
    for seed in seeds:
        with temporary_seed(seed):
            encoder = simplified_encoder(n_layers, d_model, position)
        x = torch.randn(batch, tokens, d_model, generator=torch.Generator().manual_seed(10_000 + seed))
        measured.append(hidden_norms(encoder, x))
    low, high = lemma2_band(position, n_layers)
    return {"layer": np.arange(1, n_layers + 1), "measured": np.mean(measured, axis=0), "low": low, "high": high}


@torch.no_grad()
def residual_profile(encoder: Encoder, x: torch.Tensor, mask: torch.Tensor | None = None) -> dict[str, np.ndarray]:
    """Per layer: ``attn_update`` and ``ffn_update`` = mean over tokens of ||F(.)|| / ||residual it is added to||,
    ``layer_update`` = ||x_{l+1} - x_l|| / ||x_l|| (meaningful for Pre-LN, where the stream is never renormalised),
    and ``cosine`` = cos(x_{l+1}, x_l), the similarity of consecutive layers' outputs (x_0 is the input)."""
    _, records = encoder(x, mask, return_intermediates=True)
    keep = torch.ones(x.shape[:2], dtype=torch.bool) if mask is None else mask

    def tok_mean(values: torch.Tensor) -> float:
        return values[keep].mean().item()

    out: dict[str, list[float]] = {"attn_update": [], "ffn_update": [], "layer_update": [], "cosine": []}
    for r in records:
        for name in ("attn", "ffn"):
            out[f"{name}_update"].append(tok_mean(r[name].norm(dim=-1) / r[f"{name}_residual"].norm(dim=-1)))
        out["layer_update"].append(tok_mean((r["output"] - r["input"]).norm(dim=-1) / r["input"].norm(dim=-1)))
        out["cosine"].append(tok_mean(nn.functional.cosine_similarity(r["output"], r["input"], dim=-1)))
    return {k: np.array(v) for k, v in out.items()}


class TokenModel(nn.Module):
    """Token embedding + learned positions -> :class:`Encoder` -> per-token or pooled linear head."""

    def __init__(self, spec: tasks.TaskSpec, n_layers: int, d_model: int, n_heads: int, d_ff: int, position: str):
        super().__init__()
        self.spec = spec
        self.embed = nn.Embedding(spec.vocab, d_model)
        self.pos = nn.Parameter(torch.randn(spec.length, d_model) * 0.02)
        nn.init.normal_(self.embed.weight, std=d_model**-0.5)
        self.encoder = Encoder(n_layers, d_model, n_heads, d_ff, position)
        self.head = nn.Linear(d_model, spec.n_classes)

    def embeddings(self, tokens: torch.Tensor) -> torch.Tensor:
        """Input vectors of the encoder, scaled by sqrt(d) as in the Transformer so ||x_0||^2 / d is about 1."""
        return self.embed(tokens) * math.sqrt(self.pos.shape[1]) + self.pos

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        h = self.encoder(self.embeddings(tokens))
        return self.head(h if self.spec.per_token else h.mean(1))

    def loss(self, batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        x, y = batch
        logits = self(x)
        return nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1))


@dataclass(frozen=True)
class RunConfig:
    """One training run of the norm-position experiment."""

    position: str = "post"
    lr: float = 1e-3
    warmup: int = 0
    steps: int = 300
    n_layers: int = 6
    d_model: int = 64
    n_heads: int = 4
    d_ff: int = 128
    batch: int = 32
    task: tasks.TaskSpec = field(default_factory=lambda: tasks.TaskSpec("sort", 12, 16, 16))
    seed: int = 0


@dataclass
class RunResult:
    config: RunConfig
    losses: list[float]
    final_loss: float
    accuracy: float
    diverged: bool
    model: TokenModel = field(repr=False)


def _schedule(config: RunConfig) -> Callable[[int], float]:
    def factor(step: int) -> float:
        if config.warmup and step < config.warmup:
            return (step + 1) / config.warmup
        return max(0.0, (config.steps - step) / max(1, config.steps - config.warmup))

    return factor


def train_run(config: RunConfig, device: torch.device | str = "cpu") -> RunResult:
    """Train one :class:`TokenModel` with Adam (betas 0.9, 0.98 as in Xiong et al.), linear warmup over
    ``config.warmup`` steps (0 = none) and linear decay, on fresh batches each step; no gradient clipping, so an
    unstable set-up shows. ``final_loss``: mean of the last 10% of steps; ``accuracy``: per-token (or per-sequence)
    accuracy on 512 held-out examples. A non-finite loss stops the run and marks it ``diverged``."""
    with temporary_seed(config.seed):
        model = TokenModel(config.task, config.n_layers, config.d_model, config.n_heads, config.d_ff, config.position)
    model.to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr, betas=(0.9, 0.98), eps=1e-8, foreach=True)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, _schedule(config))
    stream = tasks.batches(config.task, config.batch, seed=config.seed)
    losses: list[float] = []
    diverged = False
    for _ in range(config.steps):
        x, y = next(stream)
        loss = model.loss((x.to(device), y.to(device)))
        if not torch.isfinite(loss):
            diverged = True
            break
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()
        losses.append(loss.item())
    tail = losses[-max(1, config.steps // 10) :]
    x, y = tasks.make(config.task, 512, torch.Generator().manual_seed(99_999))
    with torch.no_grad():
        accuracy = (model(x.to(device)).argmax(-1).cpu() == y).float().mean().item()
    final = float(np.mean(tail)) if not diverged else float("nan")
    return RunResult(config, losses, final, accuracy, diverged, model)


def warmup_grid(
    base: RunConfig,
    positions: Sequence[str] = ("post", "pre", "deepnorm"),
    lrs: Sequence[float] = (5e-4, 5e-3),
    warmups: Sequence[int] = (0, 100),
    device: torch.device | str = "cpu",
) -> list[RunResult]:
    """Every combination of norm position x learning rate x warmup, same data stream and init seed for all."""
    return [
        train_run(replace(base, position=p, lr=lr, warmup=w), device) for p in positions for lr in lrs for w in warmups
    ]


def grid_table(results: Sequence[RunResult]) -> pd.DataFrame:
    """One row per run: position, lr, warmup, final loss and accuracy (rounded for stable printing)."""
    import pandas as pd

    return pd.DataFrame(
        {
            "position": [r.config.position for r in results],
            "lr": [r.config.lr for r in results],
            "warmup": [r.config.warmup for r in results],
            "final_loss": [round(r.final_loss, 3) for r in results],
            "accuracy": [round(r.accuracy, 3) for r in results],
            "diverged": [r.diverged for r in results],
        }
    )
