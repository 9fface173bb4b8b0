"""A tiny synthetic sentiment task with negation, a small dropout transformer for it, and its training loop.

Why this task: it is made offline in milliseconds, it needs attention (a "not" token flips the polarity of the word
right after it, so a bag of words is not enough), and with a few hundred training sentences a small transformer fits
the training set perfectly while validation accuracy lags: the overfitting regime where regularisers such as R-Drop
are supposed to help. The training loop runs with or without R-Drop, by the doubled batch or by two forward calls,
so the notebook and the benchmark measure the same code.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from tvgkit.lessons.rdrop import doubled_forward, with_rdrop

PAD, NOT = 0, 1


@dataclass(frozen=True)
class SentimentSpec:
    """Vocabulary layout and sentence shape. Tokens: 0 pad, 1 "not", then positive, negative and neutral words."""

    n_positive: int = 4
    n_negative: int = 4
    n_neutral: int = 16
    length: int = 12
    n_sentiment: tuple[int, int] = (1, 3)  # how many sentiment words per sentence (inclusive range)
    p_not: float = 0.3  # chance that a sentiment word is preceded by "not"

    @property
    def vocab_size(self) -> int:
        return 2 + self.n_positive + self.n_negative + self.n_neutral


def make_sentiment_data(n: int, seed: int, spec: SentimentSpec = SentimentSpec()) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` sentences ``[n, length]`` (int64) and labels ``[n]``: 1 when the polarity sum, after negation, is > 0.

    Each sentiment word counts +1 (positive) or -1 (negative), flipped by a preceding "not"; sentences whose sum is
    0 are redrawn, so the label is always defined. Deterministic in ``seed``.
    """
    g = torch.Generator().manual_seed(seed)
    pos0, neg0, neu0 = 2, 2 + spec.n_positive, 2 + spec.n_positive + spec.n_negative
    x = torch.empty(n, spec.length, dtype=torch.long)
    y = torch.empty(n, dtype=torch.long)
    i = 0
    while i < n:
        row = torch.randint(neu0, spec.vocab_size, (spec.length,), generator=g)
        k = int(torch.randint(spec.n_sentiment[0], spec.n_sentiment[1] + 1, (1,), generator=g))
        slots = torch.randperm(spec.length // 2, generator=g)[:k] * 2 + 1  # odd positions, so a "not" fits before
        score = 0
        for s in slots.tolist():
            positive = bool(torch.rand(1, generator=g) < 0.5)
            word = (
                pos0 + int(torch.randint(spec.n_positive, (1,), generator=g))
                if positive
                else neg0 + int(torch.randint(spec.n_negative, (1,), generator=g))
            )
            negated = bool(torch.rand(1, generator=g) < spec.p_not)
            row[s] = word
            if negated:
                row[s - 1] = NOT
            score += (1 if positive else -1) * (-1 if negated else 1)
        if score == 0:
            continue
        x[i], y[i] = row, int(score > 0)
        i += 1
    return x, y


class TinyTransformerClassifier(nn.Module):
    """Token + position embeddings, a few Pre-LN encoder layers with dropout, mean pooling, a linear head."""

    def __init__(
        self, vocab_size: int, length: int, d_model: int = 64, n_layers: int = 2, n_heads: int = 4,
        d_ff: int = 128, dropout: float = 0.3, n_classes: int = 2,
    ) -> None:  # fmt: skip
        super().__init__()
        self.embed = nn.Embedding(vocab_size, d_model, padding_idx=PAD)
        self.pos = nn.Parameter(torch.randn(length, d_model) / math.sqrt(d_model))
        layer = nn.TransformerEncoderLayer(
            d_model, n_heads, dim_feedforward=d_ff, dropout=dropout, batch_first=True, norm_first=True
        )
        self.encoder = nn.TransformerEncoder(layer, n_layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(d_model)
        self.drop = nn.Dropout(dropout)
        self.head = nn.Linear(d_model, n_classes)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        h = self.drop(self.embed(tokens) + self.pos[: tokens.shape[1]])
        h = self.norm(self.encoder(h))
        return self.head(self.drop(h.mean(dim=1)))


def rdrop_step(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, alpha: float, mode: str = "doubled"
) -> tuple[torch.Tensor, torch.Tensor]:
    """One R-Drop objective on a batch: ``(total_loss, kl_term)``; ``alpha = 0`` is a plain single pass.

    ``mode="doubled"`` runs the batch concatenated with itself in one call (the official trick), ``"two_pass"``
    calls the model twice. Both draw independent dropout masks for the two copies.
    """
    if alpha == 0:
        loss = F.cross_entropy(model(x), y)
        return loss, torch.zeros((), device=loss.device)
    if mode == "doubled":
        out1, out2 = doubled_forward(model, x)
    elif mode == "two_pass":
        out1, out2 = model(x), model(x)
    else:
        raise ValueError(f"mode must be 'doubled' or 'two_pass', got {mode!r}")
    return with_rdrop(F.cross_entropy(out1, y), F.cross_entropy(out2, y), out1, out2, alpha, "kl")


@torch.no_grad()
def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 512) -> float:
    """Accuracy in eval mode (dropout off), restoring the model's previous mode."""
    was_training = model.training
    model.eval()
    correct = sum(int((model(x[i : i + batch_size]).argmax(-1) == y[i : i + batch_size]).sum()) for i in
                  range(0, len(x), batch_size))  # fmt: skip
    model.train(was_training)
    return correct / len(x)


@dataclass(frozen=True)
class RunResult:
    seed: int
    alpha: float
    train_acc: float
    val_acc: float

    @property
    def gap(self) -> float:
        return self.train_acc - self.val_acc


def train_sentiment(
    seed: int,
    alpha: float,
    n_train: int = 256,
    n_val: int = 2000,
    steps: int = 400,
    batch_size: int = 32,
    lr: float = 1e-3,
    dropout: float = 0.3,
    spec: SentimentSpec = SentimentSpec(),
    device: torch.device | str = "cpu",
) -> RunResult:
    """Train a fresh :class:`TinyTransformerClassifier` from ``seed`` with R-Drop weight ``alpha`` (0 = off).

    The data are fixed across seeds (train from seed 1000, validation from seed 2000) so the seeds vary only the
    initialisation, batch order and dropout masks. Reports final train and validation accuracy (eval mode).
    """
    x_tr, y_tr = make_sentiment_data(n_train, 1000, spec)
    x_va, y_va = make_sentiment_data(n_val, 2000, spec)
    x_tr, y_tr, x_va, y_va = (t.to(device) for t in (x_tr, y_tr, x_va, y_va))
    torch.manual_seed(seed)
    model = TinyTransformerClassifier(spec.vocab_size, spec.length, dropout=dropout).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
    g = torch.Generator().manual_seed(seed)
    model.train()
    for _ in range(steps):
        idx = torch.randint(n_train, (batch_size,), generator=g).to(device)
        loss, _ = rdrop_step(model, x_tr[idx], y_tr[idx], alpha)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return RunResult(seed, alpha, accuracy(model, x_tr, y_tr), accuracy(model, x_va, y_va))
