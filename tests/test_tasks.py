"""The offline algorithmic tasks: targets by hand, label balance, and seeded streams."""

from __future__ import annotations

import pytest
import torch

from tvgkit.lessons import tasks


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_sequence_targets():
    x, y = tasks.sequence_task("sort", 50, 7, 10, _gen())
    assert x.shape == y.shape == (50, 7) and x.max() < 10
    assert (y.diff(dim=1) >= 0).all() and torch.equal(y.sort(1).values, x.sort(1).values)
    x, y = tasks.sequence_task("reverse", 5, 4, 10, _gen())
    assert torch.equal(y, x.flip(1))
    x, y = tasks.sequence_task("prefix_sum", 3, 4, 5, _gen())
    assert torch.equal(y[:, 0], x[:, 0]) and torch.equal(y[:, 3], x.sum(1) % 5)
    with pytest.raises(ValueError):
        tasks.sequence_task("copy", 1, 2, 3, _gen())


def test_classification_labels():
    x, y = tasks.classification_task("sum_mod", 100, 6, 9, 4, _gen())
    assert y.shape == (100,) and torch.equal(y, x.sum(1) % 4)
    _, y = tasks.classification_task("majority", 200, 9, 5, 5, _gen())
    assert y.max() < 5
    x, y = tasks.classification_task("first_last", 2000, 5, 10, 2, _gen())
    assert torch.equal(y, (x[:, 0] == x[:, -1]).long())
    assert 0.45 < y.float().mean().item() < 0.6
    with pytest.raises(ValueError):
        tasks.classification_task("majority", 1, 3, 5, 2, _gen())


def test_majority_ties_go_to_smallest_token():
    spec_gen = _gen(3)
    x, y = tasks.classification_task("majority", 300, 4, 3, 3, spec_gen)
    counts = torch.nn.functional.one_hot(x, 3).sum(1)
    for row, label in zip(counts, y, strict=True):
        assert row[label] == row.max() and (row[:label] < row.max()).all()


def test_batches_stream_is_seeded_and_fresh():
    spec = tasks.TaskSpec("sort", 5, 6, 6)
    a, b = tasks.batches(spec, 4, seed=1), tasks.batches(spec, 4, seed=1)
    first_a, first_b = next(a), next(b)
    assert torch.equal(first_a[0], first_b[0]) and torch.equal(first_a[1], first_b[1])
    assert not torch.equal(next(a)[0], first_a[0])
    assert spec.per_token and not tasks.TaskSpec("sum_mod", 5, 6, 3).per_token
    with pytest.raises(ValueError):
        tasks.make(tasks.TaskSpec("sort", 5, 6, 3), 2, _gen())
