"""R-Drop losses, the doubled-batch helper, and the detached-term bug."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from tvgkit.config import ConfigError
from tvgkit.grounding.build import build_run
from tvgkit.grounding.presets import preset
from tvgkit.grounding.splits import load_splits
from tvgkit.grounding.train import train_step
from tvgkit.lessons.rdrop import (
    DETACHED_BUG_VARIANTS,
    detached_term_gradients,
    doubled_forward,
    rdrop_loss,
    regression_distance,
    symmetric_kl,
    with_rdrop,
)
from tvgkit.lessons.sentiment_task import (
    NOT,
    SentimentSpec,
    TinyTransformerClassifier,
    accuracy,
    make_sentiment_data,
    rdrop_step,
)


def test_symmetric_kl_hand_computed_two_classes():
    # p = (1/2, 1/2), q = (3/4, 1/4): KL(p||q) = ln(2/sqrt(3)), KL(q||p) = 0.75 ln 1.5 + 0.25 ln 0.5
    p_logits = torch.tensor([[0.0, 0.0]])
    q_logits = torch.tensor([[math.log(3.0), 0.0]])
    expected = (math.log(2 / math.sqrt(3)) + 0.75 * math.log(1.5) + 0.25 * math.log(0.5)) / 2
    assert symmetric_kl(p_logits, q_logits).item() == pytest.approx(expected, rel=1e-6)
    assert expected == pytest.approx(0.13732653, rel=1e-6)


def test_symmetric_kl_is_symmetric_zero_on_equal_and_positive():
    torch.manual_seed(0)
    a, b = torch.randn(6, 5, 7), torch.randn(6, 5, 7)
    assert symmetric_kl(a, b).item() == pytest.approx(symmetric_kl(b, a).item(), rel=1e-6)
    assert symmetric_kl(a, a).item() == pytest.approx(0.0, abs=1e-7)
    assert symmetric_kl(a, a + 3.0).item() == pytest.approx(0.0, abs=1e-6)  # a shift of logits: same softmax
    assert symmetric_kl(a, b).item() > 0


def test_symmetric_kl_matches_official_formula_averaged_per_position():
    # The official code: kl_div(log_softmax(p), softmax(q)) and the reverse, summed; here divided by the positions.
    torch.manual_seed(1)
    p, q = torch.randn(4, 3, 5), torch.randn(4, 3, 5)
    p_loss = F.kl_div(F.log_softmax(p, -1), F.softmax(q, -1), reduction="none").sum()
    q_loss = F.kl_div(F.log_softmax(q, -1), F.softmax(p, -1), reduction="none").sum()
    assert symmetric_kl(p, q).item() == pytest.approx(((p_loss + q_loss) / 2 / 12).item(), rel=1e-5)


def test_classes_masked_with_minus_inf_contribute_nothing():
    a, b = torch.tensor([[0.0, 1.0, -float("inf")]]), torch.tensor([[1.0, 0.0, -float("inf")]])
    a.requires_grad_(True)
    value = symmetric_kl(a, b)
    assert value.item() == pytest.approx(symmetric_kl(a[:, :2], b[:, :2]).item(), rel=1e-6)
    value.backward()
    assert torch.isfinite(a.grad).all()


def test_mask_excludes_positions():
    torch.manual_seed(2)
    a, b = torch.randn(2, 4, 3), torch.randn(2, 4, 3)
    mask = torch.tensor([[True, True, False, False], [True, False, False, False]])
    ref = symmetric_kl(a, b, mask)
    b2 = b.clone()
    b2[~mask] = torch.randn(int((~mask).sum()), 3) * 50  # change only masked positions
    assert symmetric_kl(a, b2, mask).item() == pytest.approx(ref.item(), rel=1e-6)
    b2[~mask] = float("nan")  # even NaN at a padded position must not leak in
    assert torch.isfinite(symmetric_kl(a, b2, mask))
    # the masked mean is the mean of the three kept positions
    kept = torch.stack([symmetric_kl(a[i, j][None], b[i, j][None]) for i, j in [(0, 0), (0, 1), (1, 0)]])
    assert ref.item() == pytest.approx(kept.mean().item(), rel=1e-6)
    with pytest.raises(ValueError, match="no position"):
        symmetric_kl(a, b, torch.zeros(2, 4, dtype=torch.bool))


def test_regression_distances_hand_computed():
    a = torch.tensor([[0.0, 0.0], [1.0, 1.0]])
    b = torch.tensor([[0.5, -2.0], [1.0, 4.0]])
    # elementwise |d| = 0.5, 2, 0, 3
    assert regression_distance(a, b, "mse").item() == pytest.approx((0.25 + 4 + 0 + 9) / 4)
    assert regression_distance(a, b, "l1").item() == pytest.approx((0.5 + 2 + 0 + 3) / 4)
    assert regression_distance(a, b, "smooth_l1").item() == pytest.approx((0.125 + 1.5 + 0 + 2.5) / 4)
    # a mask over rows: only row 0 counts
    assert regression_distance(a, b, "l1", torch.tensor([True, False])).item() == pytest.approx(1.25)
    assert rdrop_loss(a, b, "mse").item() == pytest.approx(regression_distance(a, b, "mse").item())
    with pytest.raises(ValueError, match="kind"):
        rdrop_loss(a, b, "huber")


def test_doubled_forward_equals_two_passes_without_dropout():
    torch.manual_seed(3)
    spec = SentimentSpec()
    model = TinyTransformerClassifier(spec.vocab_size, spec.length, dropout=0.3).eval()
    x, y = make_sentiment_data(8, seed=0, spec=spec)
    out1, out2 = doubled_forward(model, x)
    assert out1.shape == (8, 2) and torch.allclose(out1, out2, atol=1e-6)
    single = model(x)
    assert torch.allclose(out1, single, atol=1e-5)
    doubled_total, _ = with_rdrop(F.cross_entropy(out1, y), F.cross_entropy(out2, y), out1, out2, 1.0)
    two_pass_total, _ = with_rdrop(F.cross_entropy(single, y), F.cross_entropy(model(x), y), single, model(x), 1.0)
    assert doubled_total.item() == pytest.approx(two_pass_total.item(), rel=1e-5)
    # with dropout p = 0 in training mode the same holds
    plain = TinyTransformerClassifier(spec.vocab_size, spec.length, dropout=0.0).train()
    a, b = doubled_forward(plain, x)
    assert torch.allclose(a, b, atol=1e-6)
    # in training mode with dropout the halves differ (independent masks), so the KL term is positive
    model.train()
    a, b = doubled_forward(model, x)
    assert symmetric_kl(a, b).item() > 1e-4


def test_doubled_forward_handles_structured_inputs_and_outputs():
    calls = []

    def fn(x, extra, mask=None, scale=2.0):
        calls.append((x.shape[0], extra["t"].shape[0], mask.shape[0]))
        return {"logits": x * scale, "pair": (x.sum(-1), None), "scalar": x.sum()}

    x = torch.arange(6.0).reshape(3, 2)
    o1, o2 = doubled_forward(fn, x, {"t": torch.ones(3, 4)}, mask=torch.ones(3, dtype=torch.bool), scale=3.0)
    assert calls == [(6, 6, 6)]  # one call on the doubled batch
    assert torch.equal(o1["logits"], x * 3) and torch.equal(o2["logits"], x * 3)
    assert torch.equal(o1["pair"][0], x.sum(-1)) and o1["pair"][1] is None
    assert o1["scalar"].item() == pytest.approx(2 * x.sum().item())  # non-batch outputs go to both halves
    with pytest.raises(ValueError, match="tensor input"):
        doubled_forward(fn, 1.0)


@pytest.mark.parametrize("kind", ["kl", "mse", "l1", "smooth_l1"])
def test_gradients_flow_through_term_and_item_bug_gives_none(kind):
    torch.manual_seed(4)
    model = nn.Sequential(nn.Linear(5, 16), nn.ReLU(), nn.Dropout(0.5), nn.Linear(16, 3))
    x, y = torch.randn(10, 5), torch.randint(3, (10,))
    results = detached_term_gradients(model, x, y, alpha=5.0, kind=kind, seed=5)
    (plain_loss, plain), (item_loss, item), (loss, correct) = (results[v] for v in DETACHED_BUG_VARIANTS)
    assert torch.equal(plain, item)  # .item() detaches: gradients identical
    assert (plain - correct).abs().max().item() > 1e-4
    assert item_loss == pytest.approx(loss) and item_loss > plain_loss  # the logged losses cannot tell them apart


def test_sentiment_data_labels_follow_negated_polarity():
    spec = SentimentSpec()
    x, y = make_sentiment_data(200, seed=7, spec=spec)
    assert x.shape == (200, spec.length) and set(y.tolist()) == {0, 1}
    pos0, neg0, neu0 = 2, 2 + spec.n_positive, 2 + spec.n_positive + spec.n_negative
    for row, label in zip(x.tolist(), y.tolist(), strict=True):
        score = 0
        for i, tok in enumerate(row):
            if pos0 <= tok < neu0:
                sign = 1 if tok < neg0 else -1
                score += -sign if i > 0 and row[i - 1] == NOT else sign
        assert score != 0 and int(score > 0) == label
    assert torch.equal(make_sentiment_data(50, 7, spec)[0], x[:50])  # deterministic in the seed


def test_rdrop_step_modes_and_accuracy_restores_mode():
    torch.manual_seed(6)
    spec = SentimentSpec()
    model = TinyTransformerClassifier(spec.vocab_size, spec.length, dropout=0.0).train()
    x, y = make_sentiment_data(16, seed=1, spec=spec)
    plain, zero = rdrop_step(model, x, y, alpha=0.0)
    doubled, kl_d = rdrop_step(model, x, y, alpha=1.0, mode="doubled")
    two, kl_t = rdrop_step(model, x, y, alpha=1.0, mode="two_pass")
    assert zero.item() == 0 and kl_d.item() == pytest.approx(0.0, abs=1e-6)  # no dropout: the passes agree
    assert doubled.item() == pytest.approx(plain.item(), rel=1e-5) == pytest.approx(two.item(), rel=1e-5)
    acc = accuracy(model, x, y)
    assert model.training and 0.0 <= acc <= 1.0 and acc * 16 == int(acc * 16)


def test_smooth_l1_is_half_mse_on_normalised_spans():
    # SmoothL1 (beta 1) is 0.5 d^2 for |d| < 1: on spans in [0, 1] it never reaches its L1 zone, so it is MSE / 2.
    torch.manual_seed(7)
    a, b = torch.rand(64, 2), torch.rand(64, 2)
    assert regression_distance(a, b, "smooth_l1").item() == pytest.approx(regression_distance(a, b, "mse").item() / 2)
    far = torch.tensor([[0.0, 3.0]]), torch.tensor([[0.0, 0.0]])  # |d| = 3 > 1: there the two part ways
    assert regression_distance(*far, "smooth_l1").item() == pytest.approx(2.5 / 2)
    assert regression_distance(*far, "mse").item() == pytest.approx(9 / 2)


# --- the grounding trainer: the term reaches its gradients (regression head, tiny preset) ---


@pytest.fixture(scope="module")
def tiny_splits(tmp_path_factory):
    root = tmp_path_factory.mktemp("rdrop_trainer")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TVGKIT_CACHE", str(root / "cache"))
        yield root, load_splits(preset("tiny").data, progress=False)


def first_step(tiny_splits, *overrides: str) -> tuple[float, float | None, torch.Tensor, torch.Tensor]:
    """The trainer's own first optimiser step on the tiny preset with the regression head: (loss, R-Drop term,
    gradients, weights after the step). Same seed, so the same initial weights, batch and dropout masks; clipping
    and warmup off, so the gradients compare linearly and the first step has its full learning rate. On the CPU:
    the equalities are fp32-exact (on CUDA, bf16 autocast would move them past these tolerances)."""
    root, splits = tiny_splits
    base = ["train.device=cpu", "model.head=regression", "train.clip_grad=1e9", "train.warmup_ratio=0"]
    base.append(f"runs_dir={root / 'runs'}")
    run = build_run(preset("tiny", [*base, *overrides]), False, splits, None, None)
    try:
        loss, term, _ = train_step(run, next(iter(run.train_loader)))
    finally:
        run.log.close()
    grads = torch.cat([p.grad.flatten() for p in run.params if p.grad is not None])
    weights = torch.cat([p.detach().flatten() for p in run.params])
    return loss.item(), None if term is None else term.item(), grads, weights


def test_trainer_rdrop_term_is_zero_without_dropout(tiny_splits):
    # (train() refuses this config for that reason; the trainer's step itself shows why)
    off = first_step(tiny_splits, "text.dropout=0", "train.rdrop_alpha=0")
    on = first_step(tiny_splits, "text.dropout=0", "train.rdrop_alpha=5", "train.rdrop_kind=l1")
    # The two halves of the doubled batch are the same computation; only float rounding can tell them apart (the
    # rows of one matrix product may be summed in different blocks): about 1e-9, where dropout 0.1 gives about 1e-4.
    assert off[1] is None and 0.0 <= on[1] < 1e-8
    assert on[0] == pytest.approx(off[0], rel=1e-6)
    assert torch.allclose(on[2], off[2], atol=1e-6)  # the same gradients as without R-Drop


def test_trainer_rdrop_kl_needs_boundary_logits(tiny_splits):
    # The seeds' MLP head predicts a span and nothing else: no distributions to compare.
    with pytest.raises(ConfigError, match="needs boundary logits"):
        first_step(
            tiny_splits, "model.head=regression-mlp", "text.dropout=0.1", "train.rdrop_alpha=1", "train.rdrop_kind=kl"
        )


# "kl": the pointer head's boundary distributions over clips; the others: its spans
@pytest.mark.parametrize("kind", ["mse", "l1", "smooth_l1", "kl"])
def test_trainer_rdrop_term_reaches_the_gradients(tiny_splits, kind):
    off = first_step(tiny_splits, "text.dropout=0.1", "train.rdrop_alpha=0")
    rdrop = ("text.dropout=0.1", f"train.rdrop_kind={kind}")
    steps = {a: first_step(tiny_splits, *rdrop, f"train.rdrop_alpha={a}") for a in (1, 2, 3)}
    (loss1, term, g1, w1), (loss2, term2, g2, w2), (_, _, g3, _) = steps.values()
    assert term > 0 and term2 == term  # same dropout masks for every alpha: only the weight of the term changes
    # equal up to float32 rounding of the two losses (the task loss has several terms, so it is large next to term)
    assert loss2 - loss1 == pytest.approx(term, abs=4 * torch.finfo(torch.float32).eps * loss1)
    # the gradient moves with alpha, by the same amount per unit of alpha (the term's own gradient)
    assert (g2 - g1).abs().max().item() > 1e-4 * g1.abs().max().item()
    assert torch.allclose(g3 - g2, g2 - g1, atol=1e-5 * g1.abs().max().item())
    # and so does the optimiser step: different weights from R-Drop off and from another alpha
    assert not torch.equal(w1, off[3]) and not torch.equal(w1, w2)
