import math

import pytest
import torch
from torch.utils.data import DataLoader

from tvgkit.lessons.pathologies import (
    MaskedMean,
    ToyGrounder,
    evaluate_by_position,
    predict,
    toy_grounding,
    train_steps,
)
from tvgkit.metrics import evaluate


def test_toy_grounding_spans_masks_and_empty_videos():
    video, mask, query, span = toy_grounding(64, seed=0, n_clips=32, dim=8, n_classes=4, n_empty=3).tensors
    assert video.shape == (64, 32, 8) and mask.shape == (64, 32) and query.shape == (64,) and span.shape == (64, 2)
    assert mask[:3].sum() == 0 and torch.all(mask[3:].sum(1) >= 24)
    assert torch.all(span[3:, 0] < span[3:, 1]) and span.min() >= 0 and span.max() <= 1
    assert torch.all(video[mask == 0] == 0)  # padded clips are zero
    again = toy_grounding(64, seed=0, n_clips=32, dim=8, n_classes=4, n_empty=3).tensors
    assert all(torch.equal(a, b) for a, b in zip(again, (video, mask, query, span), strict=True))


def test_masked_mean_by_hand_and_the_empty_video_nan():
    x = torch.tensor([[[1.0], [3.0], [5.0]], [[2.0], [2.0], [2.0]]])
    mask = torch.tensor([[1.0, 1.0, 0.0], [0.0, 0.0, 0.0]])
    assert MaskedMean(eps=0.0)(x, mask)[0].item() == 2.0
    assert math.isnan(MaskedMean(eps=0.0)(x, mask)[1].item())
    assert MaskedMean()(x, mask)[1].item() == 0.0


def test_toy_grounder_heads_and_position_paired_evaluation():
    with pytest.raises(ValueError, match="head"):
        ToyGrounder(head="tanh")
    data = toy_grounding(96, seed=1)
    torch.manual_seed(0)
    model = ToyGrounder()
    losses = train_steps(
        model, DataLoader(data, batch_size=32, shuffle=True), [torch.optim.Adam(model.parameters())], 6
    )
    assert len(losses) == 6 and all(math.isfinite(v) for v in losses)
    spans = predict(model, DataLoader(data, batch_size=32))
    assert spans.shape == (96, 2) and spans.min() >= 0 and spans.max() <= 1 and (spans[:, 0] <= spans[:, 1]).all()
    ordered = evaluate_by_position(model, DataLoader(data, batch_size=32))
    assert ordered == evaluate(spans, [tuple(t) for t in data.tensors[3].numpy()])
    dropping = evaluate_by_position(model, DataLoader(data, batch_size=40, drop_last=True))
    assert dropping == evaluate(spans[:80], [tuple(t) for t in data.tensors[3][:80].numpy()])
