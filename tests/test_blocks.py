"""The block equations (post / pre / deepnorm), DeepNet's constants and init scaling, and the attention variants."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from tvgkit.lessons.blocks import Block, Encoder, deepnorm_constants


def _zero_branches(block: Block) -> None:
    """Make both residual branches F return exactly zero (zero output projections)."""
    with torch.no_grad():
        for linear in (block.attn.o_proj, block.ffn.fc2):
            linear.weight.zero_()
            linear.bias.zero_()


def _x(seed: int = 0, shape: tuple[int, ...] = (2, 5, 16)) -> torch.Tensor:
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed)) * 3.0 + 1.0


def test_post_ln_with_zero_branch_gives_norm_of_x():
    torch.manual_seed(0)
    block = Block(16, 4, 32, position="post")
    _zero_branches(block)
    x = _x()
    ln = nn.functional.layer_norm
    torch.testing.assert_close(block(x), ln(ln(x, (16,)), (16,)))
    torch.testing.assert_close(block(x), ln(x, (16,)), atol=1e-4, rtol=0)


def test_pre_ln_with_zero_branch_is_identity_and_encoder_adds_final_norm():
    torch.manual_seed(0)
    enc = Encoder(3, 16, 4, 32, position="pre")
    for block in enc.layers:
        _zero_branches(block)
        x = _x()
        assert torch.equal(block(x), x)
    x = _x(1)
    torch.testing.assert_close(enc(x), nn.functional.layer_norm(x, (16,)))
    assert isinstance(enc.final_norm, nn.LayerNorm)
    assert isinstance(Encoder(3, 16, 4, 32, position="post").final_norm, nn.Identity)


def test_each_position_follows_its_equation_with_nonzero_branches():
    x = _x(2)
    for position in ("post", "pre", "deepnorm"):
        torch.manual_seed(0)
        block = Block(16, 4, 32, position=position, alpha=1.7)
        record: dict = {}
        out = block(x, record=record)
        a, n1, n2, f = block.attn, block.norm1, block.norm2, block.ffn
        if position == "pre":
            h = x + a(n1(x))
            expected = h + f(n2(h))
        else:
            alpha = 1.7 if position == "deepnorm" else 1.0
            h = n1(alpha * x + a(x))
            expected = n2(alpha * h + f(h))
        torch.testing.assert_close(out, expected)
        torch.testing.assert_close(record["output"], out)
        torch.testing.assert_close(record["ffn_sum"], record["ffn_residual"] + record["ffn"])
        assert block.alpha == (1.7 if position == "deepnorm" else 1.0)


def test_deepnorm_with_zero_branch_gives_ln_of_alpha_x():
    block = Block(16, 4, 32, position="deepnorm", alpha=2.0)
    _zero_branches(block)
    x = _x(3)
    record: dict = {}
    block(x, record=record)
    torch.testing.assert_close(record["attn_sum"], 2.0 * x)
    torch.testing.assert_close(block.norm1(record["attn_sum"]), nn.functional.layer_norm(2.0 * x, (16,)))


@pytest.mark.parametrize("n_layers", [1, 6, 12, 48])
def test_deepnorm_constants_are_deepnets_encoder_values(n_layers):
    alpha, beta = deepnorm_constants(n_layers)
    assert alpha == pytest.approx((2 * n_layers) ** 0.25)
    assert beta == pytest.approx((8 * n_layers) ** -0.25)
    assert alpha * beta == pytest.approx(0.5**0.5)  # (2N / 8N)^(1/4) = 4^(-1/4)


def test_deepnorm_constants_for_six_layers_and_bad_depth():
    assert deepnorm_constants(6) == (pytest.approx(1.8612097), pytest.approx(0.3799178))
    with pytest.raises(ValueError):
        deepnorm_constants(0)


def test_deepnorm_scales_v_o_and_ffn_by_beta_but_not_q_k():
    """Same seed, same Xavier draws: deepnorm's v/o/fc1/fc2 weights are exactly beta times the post-LN ones."""
    torch.manual_seed(5)
    post = Encoder(6, 32, 4, 64, position="post")
    torch.manual_seed(5)
    deep = Encoder(6, 32, 4, 64, position="deepnorm")
    alpha, beta = deepnorm_constants(6)
    assert deep.alpha == alpha and deep.beta == beta
    for p, d in zip(post.layers, deep.layers, strict=True):
        assert d.alpha == alpha and p.alpha == 1.0
        for name in ("q_proj", "k_proj"):
            assert torch.equal(getattr(p.attn, name).weight, getattr(d.attn, name).weight)
        for lp, ld in (
            (p.attn.v_proj, d.attn.v_proj),
            (p.attn.o_proj, d.attn.o_proj),
            (p.ffn.fc1, d.ffn.fc1),
            (p.ffn.fc2, d.ffn.fc2),
        ):
            torch.testing.assert_close(ld.weight, beta * lp.weight)
    bound = math.sqrt(6.0 / (32 + 64))  # Xavier-uniform limit for fc1 (64 x 32)
    assert post.layers[0].ffn.fc1.weight.abs().max() <= bound


def test_uniform_attention_equals_zero_query_key_weights():
    """uniform=True is the W^Q = W^K = 0 setting: softmax of equal scores averages the values."""
    torch.manual_seed(0)
    from tvgkit.lessons.blocks import SelfAttention

    full = SelfAttention(16, 4)
    uni = SelfAttention(16, 4, uniform=True)
    uni.load_state_dict(full.state_dict())
    with torch.no_grad():
        for lin in (full.q_proj, full.k_proj):
            lin.weight.zero_()
            lin.bias.zero_()
    x = _x(4)
    torch.testing.assert_close(uni(x), full(x))
    mask = torch.tensor([[True, True, True, False, False], [True] * 5])
    torch.testing.assert_close(uni(x, mask), full(x, mask))


def test_masked_tokens_do_not_change_real_tokens():
    torch.manual_seed(0)
    enc = Encoder(2, 16, 4, 32, position="pre")
    x = _x(5)
    mask = torch.tensor([[True, True, True, False, False], [True] * 5])
    y1 = enc(x, mask)
    x2 = x.clone()
    x2[0, 3:] = 100.0
    y2 = enc(x2, mask)
    torch.testing.assert_close(y1[0, :3], y2[0, :3])


def test_intermediates_one_record_per_layer_and_custom_norm_and_activation():
    enc = Encoder(
        4, 16, 4, 32, position="post", norm=lambda d: nn.LayerNorm(d, elementwise_affine=False), activation=nn.ReLU
    )
    out, records = enc(_x(6), return_intermediates=True)
    assert len(records) == 4
    assert isinstance(enc.layers[0].ffn.act, nn.ReLU)
    assert not list(enc.layers[0].norm1.parameters())
    for a, b in zip(records, records[1:], strict=False):
        assert torch.equal(a["output"], b["input"])
    assert torch.equal(records[-1]["output"], out)
    with pytest.raises(ValueError):
        Block(16, 4, 32, position="sandwich")
