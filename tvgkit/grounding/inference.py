"""Ground one query in one video with a trained run: what ``tvgkit predict`` prints, as a Python API.

It is honest about what the answer can mean. Query words the run never saw in training are named in an
:class:`UnseenWordsWarning` (the model still answers, but from the words it knows). Features from another backbone
than the run's are refused, naming both: the numbers would have the right shape only by accident, or not at all.
The result names the checkpoint and the backbone used.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from tvgkit.data import timeline
from tvgkit.errors import InputError

FEATURE_SUFFIXES = (".hdf5", ".h5")


class UnseenWordsWarning(UserWarning):
    """Some query words never occur in the run's training queries."""


class QueryCutWarning(UserWarning):
    """The query's prompt was longer than the model takes: only its first words were used."""


@dataclass
class Prediction:
    """Ranked spans ``(start s, end s, score)`` of a query in a video, and what produced them."""

    video: str
    query: str
    duration: float
    spans: list[tuple[float, float, float]]
    checkpoint: Path
    backbone: str | None
    unseen_words: list[str] = field(default_factory=list)

    def as_json(self) -> dict:
        """The spans as ``pred_relevant_windows`` (``[start s, end s, score]``, best first, as in a Moment-DETR /
        lighthouse predictions file), with the video, query and what produced them."""
        return {
            "vid": Path(self.video).stem,
            "query": self.query,
            "duration": round(self.duration, 3),
            "pred_relevant_windows": [[round(s, 4), round(e, 4), round(c, 6)] for s, e, c in self.spans],
            "checkpoint": str(self.checkpoint),
            "backbone": self.backbone,
            "unseen_words": self.unseen_words,
        }


def run_backbone(cfg) -> str | None:
    """The backbone a run's features came from: recorded in its config (``data.backbone``), else, for a run from
    before it was recorded, the synthetic set's (which were always blobs then); None when unknown."""
    if cfg.data.backbone is not None:
        return cfg.data.backbone
    return cfg.data.synth.backbone if cfg.data.dataset == "synthetic" else None


def _stored_features(path: Path, vid: str | None) -> tuple[np.ndarray, float, str | None, float | None]:
    """One video's features, duration, backbone and clip length from an HDF5 file written by ``tvgkit extract``."""
    from tvgkit.data.features import open_features

    with open_features(path) as store:
        if vid is None:
            if len(store.vids) != 1:
                raise InputError(f"{path} holds {len(store.vids)} videos: name one with --vid")
            vid = store.vids[0]
        feats = store[vid]
        durations = json.loads(store.attrs.get("durations", "{}"))
        backbone, clip_seconds = store.backbone, store.clip_seconds
    if vid not in durations:
        raise InputError(f"{path}: no duration for video {vid!r} (write the file with tvgkit extract)")
    return feats, float(durations[vid]), backbone, clip_seconds


def predict_video(
    run_dir: str | Path,
    video: str | Path,
    query: str,
    top: int = 5,
    fps: float | None = None,
    clip_seconds: float | None = None,
    vid: str | None = None,
    device=None,
) -> Prediction:
    """The ``top`` spans of ``query`` in ``video`` (a video file, or an HDF5 file of ``tvgkit extract`` and its
    ``vid``) by the best checkpoint of ``run_dir``.

    A video file is read with the run's backbone, ``fps`` and ``clip_seconds`` (default: the run's); stored features
    from another backbone raise :class:`InputError` naming both. Query words outside the run's training vocabulary
    are listed in an :class:`UnseenWordsWarning` and in the result.
    """
    from tvgkit.grounding.evaluate import load_run
    from tvgkit.grounding.vocabulary import load_vocabulary, unknown_pieces, unseen_words

    if top < 1:
        raise InputError(f"--top must be at least 1, got {top}")
    query = query.strip()
    if not query:
        raise InputError("--query is empty: give the sentence whose moment to find")
    model, tokenizer, cfg = load_run(run_dir)
    templates = cfg.model.templates if cfg.model.prompt_ensemble else cfg.model.templates[:1]
    query = _fitted_query(tokenizer, templates, query)
    backbone = run_backbone(cfg)
    video = Path(video)
    feats, duration, clip_seconds = _video_features(video, vid, run_dir, cfg, backbone, fps, clip_seconds, device)
    if feats.shape[1] != model.feat_mean.numel():
        source = "the file holds" if video.suffix.lower() in FEATURE_SUFFIXES else "tvgkit extract gives"
        raise InputError(
            f"{video}: {source} {feats.shape[1]} features per clip, but the run {run_dir} was trained on "
            f"{model.feat_mean.numel()}-dim features (predict --video needs a run trained on extracted ones)"
        )
    vocabulary = load_vocabulary(run_dir, tokenizer)
    unseen = []
    if not cfg.train.query_blind:  # (a query-blind run reads no query at all)
        unseen = unseen_words(query, vocabulary) if vocabulary is not None else []
        unseen = list(dict.fromkeys([*unseen, *unknown_pieces(query, tokenizer)]))  # emoji are not words
    if unseen:
        warnings.warn(
            f"{len(unseen)} word(s) of the query never occur in the run's training queries: {', '.join(unseen)}; "
            "the spans below ignore what they say",
            UnseenWordsWarning,
            stacklevel=2,
        )
    rows = np.array(_top_spans(model, tokenizer, templates, query, feats, cfg.data.max_clips, top))
    seconds = timeline.Clips.of(len(feats), duration, clip_seconds).to_seconds(rows[:, :2])  # tvgkit.data.timeline
    rows = [(float(s), float(e), float(score)) for (s, e), score in zip(seconds, rows[:, 2], strict=True)]
    checkpoint = Path(run_dir) / "best.pt"
    return Prediction(str(video), query, duration, rows, checkpoint, backbone, unseen)


def _fitted_query(tokenizer, templates: list[str], query: str) -> str:
    """``query``, cut to its first words (with a :class:`QueryCutWarning`) when its prompt would reach the clips."""
    from tvgkit.grounding.dataset import fit_query
    from tvgkit.grounding.model import VIDEO_POSITION_OFFSET

    fitted, n_tokens = fit_query(tokenizer, templates, query)
    if fitted != query:
        warnings.warn(
            f"the query makes a {n_tokens}-token prompt, longer than the model's {VIDEO_POSITION_OFFSET}; "
            f"using its first {len(fitted.split())} words",
            QueryCutWarning,
            stacklevel=3,  # the caller of predict_video
        )
    return fitted


def _video_features(
    video: Path, vid: str | None, run_dir, cfg, backbone: str | None, fps, clip_seconds, device
) -> tuple[np.ndarray, float, float | None]:
    """(clip features, duration in seconds, clip length) of a video file, extracted as the run's were, or of stored
    features, which must come from the run's backbone."""
    from tvgkit.data.extract import extract_video

    if video.suffix.lower() in FEATURE_SUFFIXES:
        feats, duration, found, stored_clip = _stored_features(video, vid)
        if found is not None and backbone is not None and found != backbone:
            raise InputError(
                f"{video}: features extracted with backbone {found!r}, but the run {run_dir} was trained on "
                f"{backbone!r} features; extract again with --backbone {backbone}"
            )
        return feats, duration, stored_clip
    synth = cfg.data.synth
    fps = synth.fps if fps is None else fps
    clip_seconds = synth.clip_seconds if clip_seconds is None else clip_seconds
    # a synthetic run's network saw the rendered frames at data.synth.backbone_size
    sizes = (synth.backbone_size, synth.backbone_frames) if cfg.data.dataset == "synthetic" else (None, None)
    return (*extract_video(video, fps, clip_seconds, False, backbone or "blobs", device, *sizes), clip_seconds)


def _top_spans(
    model, tokenizer, templates: list[str], query: str, feats: np.ndarray, max_clips: int, top: int
) -> list[tuple[float, float, float]]:
    """The ``top`` (start, end, score) of the query in the clips, normalised to the video's length."""
    import torch

    from tvgkit.data.features import resample
    from tvgkit.grounding.dataset import fill_template
    from tvgkit.grounding.model import decode

    if len(feats) > max_clips:
        feats = resample(feats, max_clips)[0]
    clips = torch.from_numpy(feats)[None]
    mask = torch.ones(1, len(feats), dtype=torch.long)
    with torch.no_grad():
        outs = []
        for template in templates:
            enc = tokenizer([fill_template(template, query)], return_tensors="pt")
            outs.append(model(clips, mask, enc["input_ids"], enc["attention_mask"]))
    spans, scores = decode(outs, mask, k=top)
    return [(float(s[0]), float(s[1]), float(c)) for s, c in zip(spans[0], scores[0], strict=True)]
