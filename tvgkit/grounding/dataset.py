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
    # Features near float32's limit overflow to inf here without a traceback: the trainer's guard then stops the
    # first step naming the input of the video projection, as one line (numpy's own warning would add two).
    with np.errstate(over="ignore"):
        return torch.from_numpy(stacked.mean(0)), torch.from_numpy(stacked.std(0))


class Batches(Dataset):
    """A split as padded tensors on one device; a batch is a few indexing operations, not a Python loop per sample.

    The features, prompt ids and targets of a run are small (the quick default's 3,400 videos fit in about 110 MB), so
    they are copied to the training device once: a GPU then never waits for a batch to be collated and copied
    (DataLoader workers and pinned memory would still collate every sample in Python). The
    :class:`~torch.utils.data.DataLoader` around it keeps what it is good at, the sampler (order, resume, each rank's
    share), and hands whole batches of indices to :meth:`__getitems__`. Batches equal those of a per-sample
    collation exactly: videos and prompts padded to the longest in the batch (lengths known on the host, so no
    device sync), and in training one template per sample drawn from the global torch generator, as before.
    """

    def __init__(self, dataset: GroundingDataset, pad_id: int, train: bool, device: torch.device | None = None) -> None:
        device = torch.device("cpu") if device is None else device
        self.dataset, self.pad_id, self.train, self.device = dataset, pad_id, train, device
        vids = list(dataset.videos)
        row = {vid: i for i, vid in enumerate(vids)}
        self.video_lengths = np.array([len(dataset.videos[v]) for v in vids])
        dim = dataset.videos[vids[0]].shape[1] if vids else 0
        video = torch.zeros(len(vids), int(self.video_lengths.max(initial=0)), dim)
        for i, vid in enumerate(vids):
            video[i, : self.video_lengths[i]] = torch.from_numpy(dataset.videos[vid])
        self.video_row = np.array([row[r.vid] for r in dataset.records], dtype=np.int64)
        self.prompt_lengths = np.array([[len(p) for p in ids] for ids in dataset.ids], dtype=np.int64)
        n_templates = self.prompt_lengths.shape[1] if len(dataset) else 1
        ids = torch.full((len(dataset), n_templates, int(self.prompt_lengths.max(initial=0))), pad_id)
        for i, prompts in enumerate(dataset.ids):
            for t, p in enumerate(prompts):
                ids[i, t, : len(p)] = torch.tensor(p)
        span = torch.tensor([dataset[i].span for i in range(len(dataset))], dtype=torch.float32).reshape(-1, 2)
        self.video, self.ids, self.span = video.to(device), ids.to(device), span.to(device)
        self.lengths = torch.from_numpy(self.video_lengths).to(device)

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return self.__getitems__([index])

    def __getitems__(self, indices: list[int]) -> dict[str, torch.Tensor]:
        index = np.asarray(indices, dtype=np.int64)
        rows = self.video_row[index]
        n = int(self.video_lengths[rows].max())
        index_t, rows_t = self._on_device(index), self._on_device(rows)
        if self.train:  # one template per sample, drawn on the host from the global generator (as the seeds did)
            choice = torch.randint(self.ids.shape[1], (len(index),))
            width = int(self.prompt_lengths[index, choice.numpy()].max())
            ids = self.ids[index_t, choice.to(self.device), :width].unsqueeze(1)
        else:
            width = int(self.prompt_lengths[index].max())
            ids = self.ids[index_t, :, :width]
        return {
            "video": self.video[rows_t, :n],
            "video_mask": (torch.arange(n, device=self.device) < self.lengths[rows_t, None]).long(),
            "input_ids": ids,  # [B, templates, L] (one template in training)
            "attention_mask": (ids != self.pad_id).long(),
            "span": self.span[index_t],
            "index": index_t,
        }

    def _on_device(self, index: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(index).to(self.device, non_blocking=True)


def whole_batch(batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The DataLoader's ``collate_fn`` for :class:`Batches`, whose ``__getitems__`` already returns the batch."""
    return batch


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
    device: torch.device | None = None,
) -> DataLoader:
    """Training loaders shuffle (seeded) and drop nothing either; evaluation loaders keep order and every sample.

    Batches come out already on ``device`` (default: the CPU), the whole split having been put there once
    (:class:`Batches`).

    With several processes (``replicas``), training takes the rank's share of each epoch (:class:`EpochSampler`)
    and evaluation a contiguous piece of the set (:func:`tvgkit.grounding.distributed.shard_range`), never a padded one.
    The training loader gets its own generator, so making its iterator does not draw from the global torch RNG.
    """
    data: Dataset = Batches(dataset, pad_id, train, device)
    if train:
        sampler = EpochSampler(data, seed, replicas, rank)
        generator = torch.Generator().manual_seed(seed)
    else:
        if replicas > 1:
            data = Subset(data, shard_range(len(data), rank, replicas))
        sampler, generator = None, None
    return DataLoader(
        data, batch_size=batch_size, sampler=sampler, drop_last=False, generator=generator, collate_fn=whole_batch
    )


def split_by_video(records: Sequence[Record], fractions: Sequence[float], seed: int = 0) -> list[list[Record]]:
    """Split records into parts by video (no video in two parts), deterministic for ``seed``."""
    vids = sorted({r.vid for r in records})
    order = np.random.default_rng(seed).permutation(len(vids))
    bounds = np.cumsum([0, *[round(f * len(vids)) for f in fractions]])
    bounds[-1] = len(vids)
    parts = [{vids[i] for i in order[a:b]} for a, b in zip(bounds[:-1], bounds[1:], strict=False)]
    return [[r for r in records if r.vid in part] for part in parts]
