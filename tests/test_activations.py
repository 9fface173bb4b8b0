"""Activation capture, per-channel statistics, outlier channels, maps as images, and one extreme value."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch
from torch import nn

from tvgkit.lessons.activations import (
    capture,
    channel_stats,
    extreme_value_effect,
    outlier_channels,
    outlier_table,
    to_uint8,
    write_map,
)
from tvgkit.lessons.vit import TokenBatchNorm, ViT


def test_capture_gets_every_norm_attention_and_mlp_output_and_removes_its_hooks() -> None:
    torch.manual_seed(0)
    model = ViT("bn", image_size=16, patch_size=4, d_model=32, depth=2, n_heads=4, d_ff=64).eval()
    acts = capture(model, torch.rand(3, 3, 16, 16))
    expected = [f"encoder.layers.{i}.{m}" for i in range(2) for m in ("norm1", "attn", "norm2", "ffn")]
    assert list(acts) == [*expected, "encoder.final_norm"]  # call order
    assert {tuple(a.shape) for a in acts.values()} == {(3, 17, 32)}  # 16 patches + class token
    assert all(not m._forward_hooks for m in model.modules())
    assert list(capture(model, torch.rand(1, 3, 16, 16), kinds=("mlp",))) == [
        "encoder.layers.0.ffn",
        "encoder.layers.1.ffn",
    ]


def test_channel_stats_by_hand() -> None:
    act = torch.tensor([[[1.0, -4.0], [3.0, 0.0]]])  # one image, two tokens, two channels
    stats = channel_stats(act)
    assert stats["mean"].tolist() == [2.0, -2.0]
    assert stats["var"].tolist() == [1.0, 4.0]
    assert stats["peak"].tolist() == [3.0, 4.0]


def test_outlier_channels_flags_the_dominant_channel_and_its_energy_share() -> None:
    act = torch.ones(2, 5, 8)
    act[1, 2, 3] = -50.0
    act[0, 0, 6] = 5.0
    idx, ratios = outlier_channels(act, k=6.0)
    assert idx.tolist() == [3]
    assert ratios[3] == pytest.approx(50.0) and ratios[6] == pytest.approx(5.0)
    row = outlier_table({"x": act}, k=6.0).iloc[0]
    assert (row["outliers"], row["top_channel"]) == (1, 3)
    # channel 3: nine ones and one 2500; the whole map: 78 ones, one 2500 and one 25
    total = 78 * 1.0 + 2500.0 + 25.0
    assert row["outlier_energy"] == pytest.approx((9 + 2500) / total)


def test_maps_are_min_max_scaled_and_written_with_opencv(tmp_path) -> None:
    assert to_uint8(np.array([[0.0, 0.5], [1.0, 0.25]])).tolist() == [[0, 128], [255, 64]]
    assert to_uint8(np.full((2, 2), 3.0)).tolist() == [[0, 0], [0, 0]]
    path = write_map(torch.tensor([[-2.0, 2.0], [0.0, 2.0], [2.0, -2.0]]), tmp_path / "m.png", scale=3)
    img = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    assert img.shape == (9, 6)  # tokens x channels, enlarged 3 times
    assert img[0, 0] == 0 and img[0, 5] == 255 and img[4, 0] == 128


def test_one_extreme_value_moves_a_token_under_layernorm_and_a_channel_under_batchnorm() -> None:
    torch.manual_seed(0)
    b, t, c = 4, 6, 8
    x = torch.randn(b, t, c)
    bn_train, bn_eval = TokenBatchNorm(c).train(), TokenBatchNorm(c)
    bn_eval.running_mean.normal_()
    bn_eval.eval()
    table = extreme_value_effect(
        {"ln": nn.LayerNorm(c), "bn_train": bn_train, "bn_eval": bn_eval}, x, value=1000.0, where=(1, 2, 3)
    ).set_index("norm")
    # LayerNorm: every other channel of the same token moves, nothing else
    assert table.loc["ln", "other_entries_moved"] == table.loc["ln", "in_same_token"] == c - 1
    assert table.loc["ln", "in_same_channel"] == 0
    # batch statistics: every other entry of the same channel moves, nothing else
    assert table.loc["bn_train", "other_entries_moved"] == table.loc["bn_train", "in_same_channel"] == b * t - 1
    assert table.loc["bn_train", "in_same_token"] == 0
    # running statistics: a fixed affine map, so only the entry itself changes
    assert table.loc["bn_eval", "other_entries_moved"] == 0
    # the squashing: the rest of the token (LN) or of the channel (BN, train) is left with almost no spread
    assert table.loc["ln", "token_rest_std"] < 0.01 < table.loc["bn_train", "token_rest_std"]
    assert table.loc["bn_train", "channel_rest_std"] < 0.01 < table.loc["ln", "channel_rest_std"]
