"""The grounding model: bounded heads, start <= end decoding, hand-computed targets and losses."""

from __future__ import annotations

import math

import pytest
import torch
from transformers import BertConfig, BertModel

from tvgkit.grounding.model import (
    GroundingModel,
    ModelConfig,
    clip_targets,
    decode,
    decode_spans,
    giou_loss,
    loss_terms,
    offset_targets,
)

MASK = 4


def _total(out, spans, video_mask, cfg) -> torch.Tensor:
    """The trainer's task loss: the sum of the named terms."""
    return sum(loss_terms(out, spans, video_mask, cfg).values())


def _model(head: str, **options) -> GroundingModel:
    torch.manual_seed(0)
    cfg = BertConfig(vocab_size=30, hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64)
    return GroundingModel(ModelConfig(head=head, **options), BertModel(cfg, add_pooling_layer=False), 7, MASK)


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


@pytest.mark.parametrize("head", ["regression", "regression-mlp"])
def test_regression_heads_are_bounded_and_ordered_and_learn(head: str) -> None:
    model = _model(head)
    video, video_mask, ids, attn = _batch()
    span = model(video, video_mask, ids, attn)["span"]
    assert span.shape == (3, 2) and (span >= 0).all() and (span <= 1).all() and (span[:, 0] <= span[:, 1]).all()
    # padded clips lie beyond the real ones: no span of sample 0 (4 real clips of 6) may reach into them
    assert (span[0] <= 1.0).all()
    loss = _total({"span": span}, torch.tensor([[0.1, 0.3]] * 3), video_mask, model.cfg)
    loss.backward()
    head_params = [p for n, p in model.named_parameters() if n.startswith(("reg_head", "slot_query", "clip_key"))]
    assert head_params and all(p.grad.abs().sum() > 0 for p in head_params)  # a bounded output never starts dead
    assert model.probe["slot_grad_norm"] > 0  # the [MASK] slots' gradient is recorded for the trainer's log


def test_attention_regression_reads_boundaries_off_clip_times() -> None:
    model = _model("regression").eval()
    hidden = model.word_embeddings.embedding_dim
    with torch.no_grad():  # make slot 0 attend only to clip 1 and slot 1 only to clip 2 (of 4 real clips)
        model.slot_query.weight.zero_(), model.slot_query.bias.zero_(), model.clip_key.bias.zero_()
        model.clip_key.weight.copy_(torch.eye(hidden) * 1e3)
        clips = torch.zeros(1, 6, hidden)
        clips[0, 1, 0] = clips[0, 2, 1] = 1.0
        slots = torch.zeros(1, 2, hidden)
        slots[0, 0, 0] = slots[0, 1, 1] = 1.0
        model.slot_query.weight.copy_(torch.eye(hidden))
        valid = torch.tensor([[True] * 4 + [False] * 2])
        out = model._attend(slots, clips, valid)
    # start = clip 1's start (1/4), end = clip 2's end (3/4); the pointer logits are the span head's kind of output
    assert out["span"][0].tolist() == pytest.approx([0.25, 0.75], abs=1e-4)
    assert out["start_logits"].argmax(-1).item() == 1 and out["end_logits"].argmax(-1).item() == 2
    assert (out["start_logits"][0, 4:] == -1e4).all()
    terms = loss_terms(out, torch.tensor([[0.25, 0.75]]), valid.long(), model.cfg)
    assert set(terms) == {"start_ce", "end_ce", "l1", "giou"} and terms["start_ce"].item() < 1e-3


def test_offsets_move_boundaries_inside_their_clips() -> None:
    spans = torch.tensor([[0.3, 0.71]])
    n = torch.tensor([10])
    start, end = clip_targets(spans, n)
    ts, te = offset_targets(spans, n, start, end)
    assert (start.item(), end.item()) == (3, 7) and ts.item() == pytest.approx(0.0) and te.item() == pytest.approx(0.1)
    ps = torch.zeros(1, 10)
    pe = torch.zeros(1, 10)
    ps[0, 3], pe[0, 7] = 1.0, 1.0
    off_s, off_e = torch.full((1, 10), 0.5), torch.full((1, 10), 0.1)
    exact, _ = decode_spans(ps, pe, n, offsets=(off_s, off_e))
    assert exact[0, 0].tolist() == pytest.approx([0.35, 0.71])
    # an end offset that would put the end before the start inside one clip is held at the start (min_clips=0) ...
    ps2, pe2 = torch.zeros(1, 10), torch.zeros(1, 10)
    ps2[0, 4] = pe2[0, 4] = 1.0
    crossing = (torch.full((1, 10), 0.8), torch.full((1, 10), 0.2))
    same, _ = decode_spans(ps2, pe2, n, offsets=crossing, min_clips=0)
    assert same[0, 0].tolist() == pytest.approx([0.48, 0.48])
    # ... and by default widened to one clip about its centre 4.8: [4.3, 5.3] of 10 clips
    widened, _ = decode_spans(ps2, pe2, n, offsets=crossing)
    assert widened[0, 0].tolist() == pytest.approx([0.43, 0.53])


def test_no_decoded_span_is_shorter_than_one_clip() -> None:
    n = torch.tensor([10])
    ps, pe = torch.zeros(1, 10), torch.zeros(1, 10)
    ps[0, 9] = pe[0, 9] = 1.0  # a 0.1-clip span at 9.85 in the last clip: widened inside the video, to [9, 10]
    last, _ = decode_spans(ps, pe, n, offsets=(torch.full((1, 10), 0.8), torch.full((1, 10), 0.9)))
    assert last[0, 0].tolist() == pytest.approx([0.9, 1.0])
    ps, pe = torch.rand(4, 10).softmax(-1), torch.rand(4, 10).softmax(-1)
    spans, _ = decode_spans(ps, pe, n.repeat(4), k=20, offsets=(torch.rand(4, 10), torch.rand(4, 10)))
    assert ((spans[..., 1] - spans[..., 0]) * 10 >= 1 - 1e-6).all()
    # a regression head's span too: [0.5, 0.5] of 4 clips -> one clip about 2.0 = [1.5, 2.5] / 4
    regressed, _ = decode([{"span": torch.tensor([[0.5, 0.5]])}], torch.ones(1, 4, dtype=torch.long))
    assert regressed[0, 0].tolist() == pytest.approx([0.375, 0.625])


def test_span_loss_has_an_offset_term_only_with_offsets() -> None:
    spans = torch.tensor([[0.0, 0.5]] * 3)
    with_offsets = loss_terms(_model("span")(*_batch()), spans, _batch()[1], ModelConfig())
    without = loss_terms(_model("span", offsets=False)(*_batch()), spans, _batch()[1], ModelConfig(offsets=False))
    assert set(with_offsets) == {"highlight_bce", "start_ce", "end_ce", "offset_l1"}
    assert set(without) == {"highlight_bce", "start_ce", "end_ce"}
    assert 0 < with_offsets["offset_l1"].item() < 2


def test_query_gate_starts_as_identity_and_makes_the_clips_depend_on_the_words() -> None:
    gated, plain = _model("span").eval(), _model("span", query_gate=False).eval()
    plain.load_state_dict({k: v for k, v in gated.state_dict().items() if not k.startswith("query_gate")})
    video, video_mask, ids, attn = _batch()
    assert torch.allclose(
        gated(video, video_mask, ids, attn)["start_logits"], plain(video, video_mask, ids, attn)["start_logits"]
    )
    with torch.no_grad():
        gated.query_gate.out.weight.normal_()
    other = ids.clone()
    other[:, 0] = (other[:, 0] + 1 - 5) % 25 + 5  # another first word, same [MASK] positions
    a = gated(video, video_mask, ids, attn)["start_logits"]
    b = gated(video, video_mask, other, attn)["start_logits"]
    assert not torch.allclose(a, b)


def test_highlight_term_by_hand() -> None:
    # 4 clips, target clips 1..2: inside = [0, 1, 1, 0]; logits 0 give BCE log(2) on every clip
    out = {"highlight": torch.zeros(1, 5), "span": torch.tensor([[0.25, 0.75]])}
    mask = torch.tensor([[1, 1, 1, 1, 0]])
    terms = loss_terms(out, torch.tensor([[0.25, 0.75]]), mask, ModelConfig(highlight_weight=2.0))
    assert terms["highlight_bce"].item() == pytest.approx(2 * math.log(2))
    out["highlight"] = torch.tensor([[-20.0, 20.0, 20.0, -20.0, 99.0]])  # right on real clips; padding ignored
    terms = loss_terms(out, torch.tensor([[0.25, 0.75]]), mask, ModelConfig())
    assert terms["highlight_bce"].item() < 1e-6 and terms["giou"].item() == pytest.approx(0.0, abs=1e-6)


def test_decode_averages_the_templates_and_scores_regression_spans_one() -> None:
    spans, scores = decode(
        [{"span": torch.tensor([[0.2, 0.4]])}, {"span": torch.tensor([[0.4, 0.8]])}], torch.ones(1, 5)
    )
    assert spans.tolist() == [[[pytest.approx(0.3), pytest.approx(0.6)]]] and scores.tolist() == [[1.0]]


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
    loss = _total(out, torch.tensor([[0.0, 0.5]] * 3), video_mask, model.cfg)
    assert loss.item() > 0


def test_peft_wrapped_encoder_trains_only_adapters_and_heads() -> None:
    from tvgkit.lessons import peft

    torch.manual_seed(0)
    cfg = BertConfig(vocab_size=30, hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64)
    encoder = peft.apply(BertModel(cfg, add_pooling_layer=False), "lora", r=2, target_modules=["query", "value"])
    model = GroundingModel(ModelConfig(head="span"), encoder, 7, MASK)
    trainable = {n.split(".")[0] for n, p in model.named_parameters() if p.requires_grad}
    assert trainable == {"encoder", "query_gate", "video_proj", "video_pos", "span_head", "highlight"}
    assert all("lora_" in n for n, p in model.encoder.named_parameters() if p.requires_grad)
    out = model(*_batch())
    _total(out, torch.tensor([[0.0, 0.5]] * 3), _batch()[1], model.cfg).backward()
    assert all(p.grad is not None for n, p in model.encoder.named_parameters() if p.requires_grad)
