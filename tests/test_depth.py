"""Depth probes: exact expected-gradient averaging, seed reproducibility, Lemma 2's band, slopes, residual profile."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tvgkit.lessons import depth, tasks
from tvgkit.lessons.blocks import Encoder

SMALL = depth.ProbeConfig(d_model=32, tokens=8, batch=8, n_batches=3)


def test_expected_gradient_is_gradient_of_mean_loss_then_norm():
    model = depth.probe_model("post", 2, SMALL, seed=0)
    gen = torch.Generator().manual_seed(1)
    batches = [model.sample(8, 8, gen) for _ in range(3)]
    norms = depth.ffn_gradient_norms(model, batches, depth.ProbeModel.loss)
    model.zero_grad()
    (sum(model.loss(b) for b in batches) / 3).backward()
    for i, block in enumerate(model.encoder.layers):
        assert norms["W1"][i] == pytest.approx(block.ffn.fc1.weight.grad.norm().item(), rel=1e-5)
        assert norms["W2"][i] == pytest.approx(block.ffn.fc2.weight.grad.norm().item(), rel=1e-5)
    assert norms["W1"].shape == (2,) and (norms["W2"] > 0).all()


def test_probes_reproducible_from_seed_and_seed_sensitive():
    a = depth.init_gradient_profile("pre", 3, SMALL, seeds=(0, 1))
    b = depth.init_gradient_profile("pre", 3, SMALL, seeds=(0, 1))
    c = depth.init_gradient_profile("pre", 3, SMALL, seeds=(2, 3))
    np.testing.assert_array_equal(a["W2"], b["W2"])
    np.testing.assert_array_equal(a["W1"], b["W1"])
    assert not np.allclose(a["W2"], c["W2"])
    np.testing.assert_array_equal(
        depth.lemma2_check("pre", 3, 32)["measured"], depth.lemma2_check("pre", 3, 32)["measured"]
    )


def test_lemma2_pre_ln_inside_band_and_growing():
    r = depth.lemma2_check("pre", 8, d_model=64, seeds=(0, 1, 2, 3))
    assert ((r["measured"] >= r["low"]) & (r["measured"] <= r["high"])).all(), r["measured"]
    assert (np.diff(r["measured"]) > 0).all()
    np.testing.assert_array_equal(r["low"], 1 + np.arange(1, 9) / 2)
    np.testing.assert_array_equal(r["high"], 1 + 3 * np.arange(1, 9) / 2)


def test_lemma2_post_ln_about_three_halves_at_every_layer():
    r = depth.lemma2_check("post", 8, d_model=64, seeds=(0, 1, 2, 3))
    assert abs(r["measured"].mean() - 1.5) < 0.1, r["measured"]
    assert (np.abs(r["measured"] - 1.5) < 0.3).all(), r["measured"]
    with pytest.raises(ValueError):
        depth.lemma2_band("deepnorm", 4)


def test_deepnorm_hidden_states_are_layer_normed():
    torch.manual_seed(0)
    enc = depth.simplified_encoder(4, 32, "deepnorm")
    norms = depth.hidden_norms(enc, torch.randn(4, 8, 32))
    np.testing.assert_allclose(norms, 1.0, atol=1e-3)


def test_loglog_slope_recovers_power_laws():
    depths = [6, 12, 24, 48]
    assert depth.loglog_slope(depths, [3.0 / np.sqrt(n) for n in depths]) == pytest.approx(-0.5)
    assert depth.loglog_slope(depths, [1.6] * 4) == pytest.approx(0.0, abs=1e-12)


def test_residual_profile_zero_branches_and_pre_ln_watering_down():
    torch.manual_seed(0)
    enc = Encoder(3, 16, 4, 32, position="pre")
    with torch.no_grad():
        for block in enc.layers:
            block.attn.o_proj.weight.zero_()
            block.ffn.fc2.weight.zero_()
    prof = depth.residual_profile(enc, torch.randn(2, 5, 16))
    np.testing.assert_allclose(prof["layer_update"], 0.0, atol=1e-7)
    np.testing.assert_allclose(prof["cosine"], 1.0, atol=1e-6)
    torch.manual_seed(0)
    prof = depth.residual_profile(depth.simplified_encoder(24, 64, "pre"), torch.randn(8, 16, 64))
    assert prof["layer_update"][-6:].mean() < prof["layer_update"][:6].mean() / 2
    assert prof["cosine"][-6:].mean() > prof["cosine"][:6].mean()


def test_blocks_of_finds_every_layer_of_a_wrapper():
    model = depth.TokenModel(
        tasks.TaskSpec("sort", 6, 8, 8), n_layers=3, d_model=16, n_heads=2, d_ff=32, position="pre"
    )
    assert len(depth.blocks_of(model)) == 3
    assert model(torch.zeros(2, 6, dtype=torch.long)).shape == (2, 6, 8)


def test_train_run_reproducible_and_learning():
    cfg = depth.RunConfig(
        steps=40, n_layers=2, d_model=32, d_ff=64, batch=16, lr=3e-3, warmup=5, task=tasks.TaskSpec("reverse", 6, 8, 8)
    )
    a, b = depth.train_run(cfg), depth.train_run(cfg)
    assert a.losses == b.losses and len(a.losses) == 40 and not a.diverged
    assert a.final_loss < a.losses[0] - 0.3
