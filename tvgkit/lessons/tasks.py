"""Small algorithmic tasks the kit generates offline, reproducible from a seed.

Two shapes, both as plain tensors so any model or loop can use them:

- :func:`sequence_task`: token-in, token-out tasks of fixed length (``reverse``, ``sort``, ``prefix_sum``), the
  targets one per position. Sorting needs every token to look at every other one, so attention has to work; a model
  that ignores context stays near chance.
- :func:`classification_task`: one label per sequence (``sum_mod``: sum of the tokens modulo ``n_classes``;
  ``majority``: the most frequent token, ties to the smallest; ``first_last``: whether the first token equals the
  last), for classifiers and for regularisers that compare two forward passes.

:func:`batches` turns either into an endless stream of fresh mini-batches drawn from one seeded generator, which is
what a quick training experiment wants (no overfitting, no loader).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch

SEQUENCE_TASKS = ("reverse", "sort", "prefix_sum")
CLASSIFICATION_TASKS = ("sum_mod", "majority", "first_last")


@dataclass(frozen=True)
class TaskSpec:
    """What a task is: its name, sequence length, input vocabulary and number of output classes."""

    name: str
    length: int
    vocab: int
    n_classes: int

    @property
    def per_token(self) -> bool:
        return self.name in SEQUENCE_TASKS


def sequence_task(
    name: str, n: int, length: int, vocab: int, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` random sequences of ``length`` tokens in ``[0, vocab)`` and their per-position targets.

    ``reverse``: the sequence backwards; ``sort``: sorted ascending; ``prefix_sum``: running sum modulo ``vocab``.
    Returns ``(inputs, targets)``, both ``LongTensor[n, length]``.
    """
    x = torch.randint(0, vocab, (n, length), generator=generator)
    if name == "reverse":
        y = x.flip(1)
    elif name == "sort":
        y = x.sort(dim=1).values
    elif name == "prefix_sum":
        y = x.cumsum(1) % vocab
    else:
        raise ValueError(f"unknown sequence task {name!r}; choose from {SEQUENCE_TASKS}")
    return x, y


def classification_task(
    name: str, n: int, length: int, vocab: int, n_classes: int, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` random sequences and one label each: ``(LongTensor[n, length], LongTensor[n])``.

    ``sum_mod``: sum of tokens mod ``n_classes``; ``majority``: most frequent token (needs ``n_classes == vocab``);
    ``first_last``: 1 if the first token equals the last, else 0 (needs ``n_classes == 2``; the last token is copied
    from the first in half of the rows so the classes are balanced).
    """
    x = torch.randint(0, vocab, (n, length), generator=generator)
    if name == "sum_mod":
        y = x.sum(1) % n_classes
    elif name == "majority":
        if n_classes != vocab:
            raise ValueError("majority needs n_classes == vocab")
        y = torch.nn.functional.one_hot(x, vocab).sum(1).argmax(1)
    elif name == "first_last":
        if n_classes != 2:
            raise ValueError("first_last needs n_classes == 2")
        copy = torch.rand(n, generator=generator) < 0.5
        x[copy, -1] = x[copy, 0]
        y = (x[:, 0] == x[:, -1]).long()
    else:
        raise ValueError(f"unknown classification task {name!r}; choose from {CLASSIFICATION_TASKS}")
    return x, y


def make(spec: TaskSpec, n: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Draw ``n`` examples of ``spec`` (dispatches to :func:`sequence_task` or :func:`classification_task`)."""
    if spec.per_token:
        if spec.n_classes != spec.vocab:
            raise ValueError(f"{spec.name} predicts input tokens: n_classes must equal vocab")
        return sequence_task(spec.name, n, spec.length, spec.vocab, generator)
    return classification_task(spec.name, n, spec.length, spec.vocab, spec.n_classes, generator)


def batches(spec: TaskSpec, batch_size: int, seed: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """An endless stream of fresh ``(inputs, targets)`` mini-batches of ``spec``, the same for the same seed."""
    generator = torch.Generator().manual_seed(seed)
    while True:
        yield make(spec, batch_size, generator)
