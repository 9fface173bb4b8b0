"""Torch datasets and loaders for grounding: records + feature store -> batches of video tokens and prompts.

A batch holds the video clips padded to the longest in the batch with a mask, the prompt token ids for every
template, and the target span as fractions of the clip grid (tvgkit.data.timeline). Evaluation loaders never
shuffle and never drop a sample (the seeds lost weeks to a test loader that did both): :func:`loader` decides from
``train``, not from the caller.
"""

from __future__ import annotations

import itertools
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Subset

from tvgkit.data import timeline
from tvgkit.data.features import resample
from tvgkit.data.records import Record
from tvgkit.errors import InputError
from tvgkit.grounding.distributed import shard_range
from tvgkit.grounding.model import VIDEO_POSITION_OFFSET


def fill_template(template: str, query: str) -> str:
    """The prompt for ``query``; an empty query (query-blind model) leaves just the template."""
    return " ".join(template.format(query=query.strip().rstrip(".")).split())


def fit_query(
    tokenizer, templates: Sequence[str], query: str, max_tokens: int = VIDEO_POSITION_OFFSET
) -> tuple[str, int]:
    """``query`` cut to its first words so that its prompt in every template fits ``max_tokens`` tokens (special
    tokens included), and the longest prompt's length before the cut.

    The model puts the clips at positions from ``VIDEO_POSITION_OFFSET`` on, so a longer prompt would overlap them
    (and, past the encoder's position table, crash inside torch). Words are dropped, not tokens, so the template and
    its ``[MASK]`` slots stay whole; the caller warns when the returned query differs.
    """

    def length(text: str) -> int:
        return max(len(tokenizer(fill_template(t, text))["input_ids"]) for t in templates)

    n_tokens = length(query)
    if n_tokens <= max_tokens:
        return query, n_tokens
    words = query.split()
    keep, too_many = 0, len(words)  # length(words[:keep]) fits, length(words[:too_many]) does not
    while too_many - keep > 1:
        mid = (keep + too_many) // 2
        keep, too_many = (mid, too_many) if length(" ".join(words[:mid])) <= max_tokens else (keep, mid)
    if keep == 0:  # nothing to keep: refused rather than grounding the template alone
        what = "the prompt template alone" if length("") > max_tokens else f"its first word {words[0][:30]!r}"
        raise InputError(f"query {query[:40]!r}...: {what} makes a prompt longer than the model's {max_tokens} tokens")
    return " ".join(words[:keep]), n_tokens


@dataclass
class Item:
    video: np.ndarray
    ids: list[list[int]]
    span: tuple[float, float]
    index: int


class GroundingDataset(Dataset):
    """One item per record: its video features (at most ``max_clips``), its prompts tokenised, its target span.

    ``query_blind=True`` empties every query: the model then sees the video and the template only, which is the
    query-blind baseline.
    """

    def __init__(
        self,
        records: Sequence[Record],
        features: Mapping[str, np.ndarray],
        tokenizer,
        templates: Sequence[str],
        max_clips: int = 64,
        query_blind: bool = False,
    ) -> None:
        self.records = list(records)
        self.max_clips = max_clips
        videos: dict[str, np.ndarray] = {}
        lengths: dict[str, int] = {}
        for r in self.records:
            if r.vid not in videos:
                feats = np.asarray(features[r.vid], np.float32)
                lengths[r.vid] = len(feats)
                videos[r.vid] = resample(feats, max_clips)[0] if len(feats) > max_clips else feats
        self.videos = videos
        # Each record's clips on its time axis: the targets are fractions of them (tvgkit.data.timeline).
        c = timeline.clip_seconds_of(features)
        self.clips = [timeline.Clips.of(lengths[r.vid], r.duration, c) for r in self.records]
        queries = ["" if query_blind else r.query for r in self.records]
        prompts = sorted({fill_template(t, q) for q in queries for t in templates})
        encoded = dict(zip(prompts, tokenizer(prompts, add_special_tokens=True)["input_ids"], strict=False))
        too_long = {p for p, ids in encoded.items() if len(ids) > VIDEO_POSITION_OFFSET}
        if too_long:  # rare: re-fit only the queries concerned, and say how many
            cut = [i for i, q in enumerate(queries) if any(fill_template(t, q) in too_long for t in templates)]
            for i in cut:
                queries[i] = fit_query(tokenizer, templates, queries[i])[0]
            fitted = sorted({fill_template(t, queries[i]) for i in cut for t in templates} - encoded.keys())
            if fitted:
                encoded.update(zip(fitted, tokenizer(fitted)["input_ids"], strict=True))
            warnings.warn(
                f"{len(cut)} of {len(queries)} queries make prompts longer than the model's "
                f"{VIDEO_POSITION_OFFSET} tokens and were cut to their first words (first: {self.records[cut[0]].qid})",
                stacklevel=2,
            )
        self.ids = [[encoded[fill_template(t, q)] for t in templates] for q in queries]

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> Item:
        r = self.records[index]
        start, end = self.clips[index].to_grid(r.window).tolist()
        return Item(self.videos[r.vid], self.ids[index], (start, end), index)


def feature_stats(dataset: GroundingDataset) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and standard deviation of the clip features over the dataset's videos (for standardisation)."""
    stacked = np.concatenate(list(dataset.videos.values()))
    return torch.from_numpy(stacked.mean(0)), torch.from_numpy(stacked.std(0))


class Collate:
    """Pad videos and prompts; in training pick one template per sample at random, else keep all of them."""

    def __init__(self, pad_id: int, train: bool) -> None:
        self.pad_id = pad_id
        self.train = train

    def __call__(self, items: list[Item]) -> dict[str, torch.Tensor]:
        n = max(len(it.video) for it in items)
        video = torch.zeros(len(items), n, items[0].video.shape[1])
        video_mask = torch.zeros(len(items), n, dtype=torch.long)
        for b, it in enumerate(items):
            video[b, : len(it.video)] = torch.from_numpy(it.video)
            video_mask[b, : len(it.video)] = 1
        n_templates = len(items[0].ids)
        if self.train:
            choice = torch.randint(n_templates, (len(items),)).tolist()
            prompts = [[it.ids[c]] for it, c in zip(items, choice, strict=False)]
        else:
            prompts = [it.ids for it in items]
        width = max(len(p) for ps in prompts for p in ps)
        ids = torch.full((len(items), len(prompts[0]), width), self.pad_id, dtype=torch.long)
        for b, ps in enumerate(prompts):
            for t, p in enumerate(ps):
                ids[b, t, : len(p)] = torch.tensor(p)
        return {
            "video": video,
            "video_mask": video_mask,
            "input_ids": ids,  # [B, templates, L] (one template in training)
            "attention_mask": (ids != self.pad_id).long(),
            "span": torch.tensor([it.span for it in items], dtype=torch.float32),
            "index": torch.tensor([it.index for it in items]),
        }


class EpochSampler(DistributedSampler):
    """The training order: a shuffle seeded by ``(seed, epoch)``, this rank's share of it, optionally resumed mid-epoch.

    PyTorch's ``DistributedSampler`` already draws each epoch's order from ``seed + epoch`` alone (call
    :meth:`set_epoch`), so the order does not depend on how many epochs this process ran before: a resumed run
    sees the same batches. With one replica it is a plain seeded shuffle of the whole set. ``skip`` drops the first
    samples of the epoch (the batches a checkpoint already trained on) without loading or collating them.
    """

    def __init__(self, dataset: Dataset, seed: int, replicas: int = 1, rank: int = 0) -> None:
        super().__init__(dataset, num_replicas=replicas, rank=rank, shuffle=True, seed=seed, drop_last=False)
        self.skip = 0

    def __iter__(self):
        return itertools.islice(super().__iter__(), self.skip, None)

    def __len__(self) -> int:
        return super().__len__() - self.skip


def loader(
    dataset: GroundingDataset,
    batch_size: int,
    train: bool,
    pad_id: int,
    seed: int = 0,
    rank: int = 0,
    replicas: int = 1,
) -> DataLoader:
    """Training loaders shuffle (seeded) and drop nothing either; evaluation loaders keep order and every sample.

    With several processes (``replicas``), training takes the rank's share of each epoch (:class:`EpochSampler`)
    and evaluation a contiguous piece of the set (:func:`tvgkit.grounding.distributed.shard_range`), never a padded one.
    The training loader gets its own generator, so making its iterator does not draw from the global torch RNG.
    """
    if train:
        sampler = EpochSampler(dataset, seed, replicas, rank)
        generator = torch.Generator().manual_seed(seed)
    else:
        if replicas > 1:
            dataset = Subset(dataset, shard_range(len(dataset), rank, replicas))
        sampler, generator = None, None
    return DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        drop_last=False,
        generator=generator,
        collate_fn=Collate(pad_id, train),
    )


def split_by_video(records: Sequence[Record], fractions: Sequence[float], seed: int = 0) -> list[list[Record]]:
    """Split records into parts by video (no video in two parts), deterministic for ``seed``."""
    vids = sorted({r.vid for r in records})
    order = np.random.default_rng(seed).permutation(len(vids))
    bounds = np.cumsum([0, *[round(f * len(vids)) for f in fractions]])
    bounds[-1] = len(vids)
    parts = [{vids[i] for i in order[a:b]} for a, b in zip(bounds[:-1], bounds[1:], strict=False)]
    return [[r for r in records if r.vid in part] for part in parts]
