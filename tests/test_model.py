"""The grounding model: bounded heads, start <= end decoding, hand-computed targets and losses."""

from __future__ import annotations

import pytest
import torch
from transformers import BertConfig, BertModel

from tvgkit.model import GroundingModel, ModelConfig, clip_targets, decode_spans, giou_loss, grounding_loss

MASK = 4


def _model(head: str) -> GroundingModel:
    torch.manual_seed(0)
    cfg = BertConfig(vocab_size=30, hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64)
    return GroundingModel(ModelConfig(head=head), BertModel(cfg, add_pooling_layer=False), 7, MASK)


def _batch(b: int = 3, n: int = 6):
    ids = torch.randint(5, 30, (b, 9))
    ids[:, 3] = MASK
    ids[:, 6] = MASK
    video_mask = torch.ones(b, n, dtype=torch.long)
    video_mask[0, 4:] = 0
    return torch.randn(b, n, 7), video_mask, ids, torch.ones_like(ids)


def test_decode_picks_the_best_pair_with_start_before_end() -> None:
    ps = torch.tensor([[0.1, 0.2, 0.7, 0.0]])
    pe = torch.tensor([[0.6, 0.3, 0.1, 0.0]])
    # unconstrained, start 2 and end 0 (0.42) would win; with start <= end the pairs score
    # (0,0)=.06 (0,1)=.03 (1,1)=.06 (0,2)=.01 (1,2)=.02 (2,2)=.07, so (2, 2) wins: clip 2 of 4 = [0.5, 0.75]
    spans, scores = decode_spans(ps, pe, torch.tensor([4]), k=2)
    assert spans[0, 0].tolist() == [0.5, 0.75] and scores[0, 0].item() == pytest.approx(0.07)
    assert (spans[..., 0] <= spans[..., 1]).all()


def test_clip_targets_by_hand() -> None:
    spans = torch.tensor([[0.0, 0.25], [0.3, 0.71], [0.9, 1.0]])
    start, end = clip_targets(spans, torch.tensor([8, 10, 4]))
    assert start.tolist() == [0, 3, 3] and end.tolist() == [1, 7, 3]


def test_giou_is_zero_for_equal_spans_and_grows_with_distance() -> None:
    t = torch.tensor([[0.2, 0.4]])
    assert giou_loss(t, t).item() == pytest.approx(0.0, abs=1e-6)
    near, far = giou_loss(torch.tensor([[0.45, 0.6]]), t), giou_loss(torch.tensor([[0.8, 0.95]]), t)
    assert 1.0 < near.item() < far.item() < 2.0


def test_regression_head_is_bounded_and_ordered_and_learns() -> None:
    model = _model("regression")
    out = model(*_batch())
    span = out["span"]
    assert span.shape == (3, 2) and (span >= 0).all() and (span <= 1).all() and (span[:, 0] <= span[:, 1]).all()
    loss = grounding_loss(out, torch.tensor([[0.1, 0.3]] * 3), _batch()[1], giou_weight=1.0)
    loss.backward()
    assert model.reg_head[-1].weight.grad.abs().sum() > 0  # a sigmoid output never starts dead


def test_span_head_ignores_padding_clips() -> None:
    model = _model("span").eval()
    video, video_mask, ids, attn = _batch()
    out = model(video, video_mask, ids, attn)
    assert out["start_logits"].shape == (3, 6)
    assert (out["start_logits"][0, 4:] == -1e4).all()
    video2 = video.clone()
    video2[0, 4:] = 100.0  # changing padded clips changes nothing
    out2 = model(video2, video_mask, ids, attn)
    assert torch.allclose(out["start_logits"][0, :4], out2["start_logits"][0, :4], atol=1e-5)
    loss = grounding_loss(out, torch.tensor([[0.0, 0.5]] * 3), video_mask, 1.0)
    assert loss.item() > 0
