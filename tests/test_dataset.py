"""Datasets and loaders: evaluation never shuffles or drops; padding and masks are exact; splits by video."""

from __future__ import annotations

import numpy as np
import torch
from transformers import BertTokenizer

from tvgkit.data.records import Record
from tvgkit.grounding.dataset import GroundingDataset, fill_template, loader, split_by_video
from tvgkit.grounding.text import train_wordpiece

TEMPLATES = ['The text of "{query}" starts at time [MASK] and ends at time [MASK].', "{query}: from [MASK] to [MASK]."]


def _data(tmp_path, n: int = 10):
    records = [
        Record(f"v{i % 4}", f"q{i}", f"the red box {'grows' if i % 2 else 'sinks'}", 20.0, ((2.0 + i, 8.0 + i),))
        for i in range(n)
    ]
    features = {f"v{k}": np.full((5 + k, 3), k, np.float32) for k in range(4)}
    sentences = [r.query for r in records] + [fill_template(t, "") for t in TEMPLATES]
    tok = BertTokenizer.from_pretrained(str(train_wordpiece(sentences, 60, tmp_path / "tok")))
    return records, features, tok


def test_evaluation_loader_keeps_order_and_every_sample(tmp_path) -> None:
    records, features, tok = _data(tmp_path)
    ds = GroundingDataset(records, features, tok, TEMPLATES)
    batches = list(loader(ds, batch_size=3, train=False, pad_id=tok.pad_token_id))
    assert [len(b["index"]) for b in batches] == [3, 3, 3, 1]
    assert torch.cat([b["index"] for b in batches]).tolist() == list(range(10))
    assert batches[0]["input_ids"].shape[1] == 2  # every template, for the prompt ensemble
    train = list(loader(ds, batch_size=3, train=True, pad_id=tok.pad_token_id, seed=0))
    order = torch.cat([b["index"] for b in train]).tolist()
    assert sorted(order) == list(range(10)) and order != list(range(10))  # shuffled, nothing dropped
    assert train[0]["input_ids"].shape[1] == 1
    again = torch.cat([b["index"] for b in loader(ds, 3, train=True, pad_id=tok.pad_token_id, seed=0)]).tolist()
    assert again == order


def test_padding_masks_and_targets(tmp_path) -> None:
    records, features, tok = _data(tmp_path, n=4)
    ds = GroundingDataset(records, features, tok, TEMPLATES)
    batch = next(iter(loader(ds, batch_size=4, train=False, pad_id=tok.pad_token_id)))
    assert batch["video"].shape == (4, 8, 3)
    assert batch["video_mask"].sum(1).tolist() == [5, 6, 7, 8]
    assert batch["video"][0, 5:].abs().sum() == 0
    assert torch.allclose(batch["span"][1], torch.tensor([3.0 / 20, 9.0 / 20]))
    ids = batch["input_ids"][0, 0]
    assert (ids == tok.mask_token_id).sum() == 2 and tok.unk_token_id not in ids.tolist()


def test_query_blind_prompts_are_all_the_same(tmp_path) -> None:
    records, features, tok = _data(tmp_path)
    blind = GroundingDataset(records, features, tok, TEMPLATES, query_blind=True)
    assert len({tuple(map(tuple, ids)) for ids in blind.ids}) == 1
    seeing = GroundingDataset(records, features, tok, TEMPLATES)
    assert len({tuple(map(tuple, ids)) for ids in seeing.ids}) == 2


def test_long_videos_are_pooled_to_max_clips(tmp_path) -> None:
    records, features, tok = _data(tmp_path, n=4)
    ds = GroundingDataset(records, features, tok, TEMPLATES, max_clips=6)
    assert [len(ds.videos[f"v{k}"]) for k in range(4)] == [5, 6, 6, 6]


def test_split_by_video_is_disjoint_and_complete(tmp_path) -> None:
    records, _, _ = _data(tmp_path)
    a, b = split_by_video(records, [0.5, 0.5], seed=0)
    assert {r.vid for r in a}.isdisjoint({r.vid for r in b}) and len(a) + len(b) == len(records)
    assert fill_template("{query}: from [MASK]", " a red ball rises. ") == "a red ball rises: from [MASK]"
