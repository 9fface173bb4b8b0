"""The kit's own grounding dataset: OpenCV-rendered videos of coloured shapes doing timed actions, with queries.

Why render: no public video features may ship with the kit, yet the training loop needs a task where a model must
read both the video and the sentence. Each video holds 3 to 4 objects whose colours repeat across shapes and whose
shapes repeat across colours, and 2 to 4 timed events; later events are often distractors (the same action by
another object, or another action by the same object), so that neither a video-blind prior nor a query-blind model
can solve it. Durations and moment lengths follow Charades-STA (videos about 30 s, moments about 8 s).

The frames go through :mod:`tvgkit.data.extract` exactly as a user's video would; the dataset is written in the
field's formats (features HDF5, Charades-STA text + durations JSON, JSONL) under a folder named by the hash of its
configuration, so a second run reuses it. Times follow the kit's convention (:mod:`tvgkit.data.timeline`): frame
f shows the video at f / fps seconds, and clip i pools the frames in [i * c, (i + 1) * c).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import ClassVar

import cv2
import numpy as np

from tvgkit.config import Rule, at_least, between, not_above, positive
from tvgkit.data.extract import COLOURS, FRAME_SIZE, SHAPES, clip_features
from tvgkit.data.records import Record

SUBPIXEL_BITS = 4
MIN_SIZE = 32  # objects start 14 px inside the frame (and grow)
MIN_DURATION = 2.0  # a moment ends at least 1 s before the video does
PAIRS = len(COLOURS) * len(SHAPES)  # the objects of one video are distinct (colour, shape) pairs
VERSION = 4  # bump when rendering or extraction changes: old caches are not reused
SPLITS = ("train", "val", "test")
BGR = {"red": (40, 40, 220), "yellow": (40, 220, 230), "green": (50, 200, 50), "blue": (220, 70, 40)}
KINDS = ("move_left", "move_right", "move_up", "move_down", "grow", "shrink", "appear", "disappear")
MOVES = {"move_left": (-1, 0), "move_right": (1, 0), "move_up": (0, -1), "move_down": (0, 1)}
VERBS = {
    "move_left": ("moves to the left", "slides left", "goes left", "travels to the left"),
    "move_right": ("moves to the right", "slides right", "goes right", "travels to the right"),
    "move_up": ("moves up", "rises", "goes up", "slides upward"),
    "move_down": ("moves down", "drops", "goes down", "sinks"),
    "grow": ("grows", "gets bigger", "expands", "becomes larger"),
    "shrink": ("shrinks", "gets smaller", "contracts", "becomes smaller"),
    "appear": ("appears", "fades in", "shows up", "comes into view"),
    "disappear": ("disappears", "fades out", "vanishes", "goes out of view"),
}
NOUNS = {"circle": ("circle", "ball", "disc"), "square": ("square", "box", "block"), "triangle": ("triangle",)}


@dataclass
class SynthConfig:
    """Sizes and statistics of the rendered dataset; every field enters the cache hash."""

    n_train: int = field(default=3000, metadata=at_least(1))
    n_val: int = field(default=100, metadata=at_least(1))
    n_test: int = field(default=300, metadata=at_least(1))
    seed: int = field(default=0, metadata=at_least(0))
    fps: float = field(default=4.0, metadata=positive())
    size: int = field(default=FRAME_SIZE, metadata=at_least(MIN_SIZE))
    duration_min: float = field(default=20.0, metadata=at_least(MIN_DURATION))
    duration_max: float = 40.0
    moment_min: float = field(default=3.0, metadata=positive())
    moment_max: float = 13.0
    objects_min: int = field(default=3, metadata=at_least(1))
    objects_max: int = field(default=4, metadata=at_least(1))
    events_min: int = field(default=2, metadata=at_least(1))
    events_max: int = 4
    distractor_prob: float = field(default=0.7, metadata=between(0, 1))
    clip_seconds: float = field(default=1.0, metadata=positive())
    noise: float = field(default=6.0, metadata=at_least(0))
    # Which features: "blobs" (tvgkit.data.extract) or a pretrained network of tvgkit.data.backbones. For a network,
    # the 64-px frames are upsampled to ``backbone_size`` (beyond 2x that adds compute, not information) and
    # ``backbone_frames`` frames of each clip go through it. Left out of the cache hash for "blobs".
    backbone: str = "blobs"
    backbone_size: int = field(default=128, metadata=at_least(32))
    backbone_frames: int = field(default=1, metadata=at_least(1))

    CHECKS: ClassVar[tuple[Rule, ...]] = (
        not_above("duration_min", "duration_max"),
        not_above("moment_min", "moment_max"),
        not_above("objects_min", "objects_max"),
        Rule("objects_max", lambda c: c.objects_max <= PAIRS, f"<= {PAIRS}, the distinct colour-shape pairs"),
        not_above("events_min", "events_max"),
    )


#: The fields that only a pretrained backbone reads.
BACKBONE_FIELDS = ("backbone", "backbone_size", "backbone_frames")


@dataclass
class Obj:
    colour: str
    shape: str
    x: float
    y: float
    radius: float
    visible: bool = True


@dataclass
class Event:
    obj: int
    kind: str
    start: float
    end: float
    amount: float


@dataclass
class VideoSpec:
    """One video's script: the objects, their timed events, the duration."""

    vid: str
    duration: float
    objects: list[Obj]
    events: list[Event] = field(default_factory=list)


def config_hash(cfg: SynthConfig) -> str:
    """The cache folder's name; blob-feature datasets keep the hashes they had before backbones existed."""
    fields = asdict(cfg)
    if cfg.backbone == "blobs":
        fields = {k: v for k, v in fields.items() if k not in BACKBONE_FIELDS}
    text = json.dumps({"version": VERSION, **fields}, sort_keys=True)
    return hashlib.sha1(text.encode()).hexdigest()[:12]


def cache_root() -> Path:
    """``$TVGKIT_CACHE`` or ``~/.cache/tvgkit``: where rendered datasets and trained tokenizers are kept."""
    return Path(os.environ.get("TVGKIT_CACHE") or Path.home() / ".cache" / "tvgkit")


def dataset_root(cfg: SynthConfig, cache_dir: str | Path | None = None) -> Path:
    """Where the dataset of ``cfg`` lives (rendered or not yet): ``<cache>/synthetic/<config hash>``."""
    return Path(cache_dir or cache_root()) / "synthetic" / config_hash(cfg)


def _pick_objects(rng: np.random.Generator, n: int) -> list[tuple[str, str]]:
    """Distinct (colour, shape) pairs where colours repeat across shapes and shapes across colours."""
    pairs = [(str(rng.choice(COLOURS)), str(rng.choice(SHAPES)))]
    while len(pairs) < n:
        c, s = pairs[int(rng.integers(len(pairs)))]
        # the second object shares a colour, the third a shape, later ones either
        same_colour = len(pairs) == 1 or (len(pairs) > 2 and rng.random() < 0.5)
        cand = (c, str(rng.choice(SHAPES))) if same_colour else (str(rng.choice(COLOURS)), s)
        if cand not in pairs:
            pairs.append(cand)
    return pairs


def _place(rng: np.random.Generator, n: int, size: int) -> list[tuple[float, float]]:
    """Start positions spread over the frame (rejection sampling for a minimum distance)."""
    points: list[tuple[float, float]] = []
    for _ in range(400):
        p = (float(rng.uniform(14, size - 14)), float(rng.uniform(14, size - 14)))
        if all((p[0] - q[0]) ** 2 + (p[1] - q[1]) ** 2 > 23**2 for q in points):
            points.append(p)
            if len(points) == n:
                break
    while len(points) < n:
        points.append((float(rng.uniform(14, size - 14)), float(rng.uniform(14, size - 14))))
    return points


def _allowed(spec: VideoSpec, obj: int, kind: str, start: float, end: float) -> bool:
    mine = [e for e in spec.events if e.obj == obj]
    if any(e.kind == kind or not (end <= e.start or start >= e.end) for e in mine):
        return False
    if kind == "appear":  # an object appears before anything else happens to it
        return all(e.start >= end for e in mine) and all(e.kind != "disappear" for e in mine)
    if kind == "disappear":
        return all(e.end <= start for e in mine) and all(e.kind != "appear" for e in mine)
    if any(e.kind == "appear" and e.start >= end for e in mine) or any(
        e.kind == "disappear" and e.end <= start for e in mine
    ):
        return False
    axis = MOVES.get(kind)
    if axis is not None and any(MOVES.get(e.kind, (9, 9))[0 if axis[0] else 1] != 0 for e in mine if e.kind in MOVES):
        return False  # at most one move per axis keeps the object inside the frame
    if kind in ("grow", "shrink") and any(e.kind in ("grow", "shrink") for e in mine):
        return False
    return True


def sample_video(rng: np.random.Generator, cfg: SynthConfig, vid: str) -> VideoSpec:
    """Draw one video's objects and events (distractor events reuse an action or an object)."""
    duration = round(float(rng.uniform(cfg.duration_min, cfg.duration_max)), 2)
    n_obj = int(rng.integers(cfg.objects_min, cfg.objects_max + 1))
    pairs = _pick_objects(rng, n_obj)
    places = _place(rng, n_obj, cfg.size)
    objects = [Obj(c, s, x, y, float(rng.uniform(7.0, 9.0))) for (c, s), (x, y) in zip(pairs, places, strict=False)]
    spec = VideoSpec(vid, duration, objects)
    n_events = int(rng.integers(cfg.events_min, cfg.events_max + 1))
    for _ in range(60):
        if len(spec.events) == n_events:
            break
        length = float(np.clip(rng.normal(8.0, 2.5), cfg.moment_min, cfg.moment_max))
        length = min(length, duration - 1.0)
        start = round(float(rng.uniform(0.0, duration - length)), 2)
        end = round(start + length, 2)
        if spec.events and rng.random() < cfg.distractor_prob:
            ref = spec.events[int(rng.integers(len(spec.events)))]
            if rng.random() < 0.5:  # the same action by another object
                obj, kind = int(rng.integers(n_obj)), ref.kind
            else:  # another action by the same object
                obj, kind = ref.obj, str(rng.choice(KINDS))
        else:
            obj, kind = int(rng.integers(n_obj)), str(rng.choice(KINDS))
        if not _allowed(spec, obj, kind, start, end):
            continue
        amount = float(rng.uniform(16, 24)) if kind in MOVES else float(rng.uniform(2.5, 3.5))
        spec.events.append(Event(obj, kind, start, end, amount))
        if kind == "appear":
            objects[obj].visible = False
    _keep_inside(spec, cfg.size)
    return spec


def _keep_inside(spec: VideoSpec, size: int) -> None:
    """Shift start positions so that every move ends inside the frame."""
    for i, o in enumerate(spec.objects):
        for e in spec.events:
            if e.obj == i and e.kind in MOVES:
                dx, dy = MOVES[e.kind]
                lo, hi = o.radius + 4 + 2.5, size - o.radius - 4 - 2.5
                if dx:
                    o.x = float(np.clip(o.x, lo - min(0, dx * e.amount), hi - max(0, dx * e.amount)))
                if dy:
                    o.y = float(np.clip(o.y, lo - min(0, dy * e.amount), hi - max(0, dy * e.amount)))


def object_state(spec: VideoSpec, i: int, t: float) -> tuple[float, float, float, float]:
    """(x, y, radius, alpha) of object ``i`` at time ``t``: events applied with linear progress."""
    o = spec.objects[i]
    x, y, r, a = o.x, o.y, o.radius, 1.0 if o.visible else 0.0
    for e in spec.events:
        if e.obj != i:
            continue
        p = float(np.clip((t - e.start) / (e.end - e.start), 0.0, 1.0))
        if e.kind in MOVES:
            x += MOVES[e.kind][0] * e.amount * p
            y += MOVES[e.kind][1] * e.amount * p
        elif e.kind == "grow":
            r += e.amount * p
        elif e.kind == "shrink":
            r -= e.amount * p
        elif e.kind == "appear":
            a += p
        elif e.kind == "disappear":
            a -= p
    return x, y, r, a


def _draw(canvas: np.ndarray, shape: str, x: float, y: float, r: float, colour: tuple[int, int, int]) -> None:
    """Draw at sub-pixel precision (OpenCV's ``shift``): integer radii would make growing look like a staircase."""
    k = 1 << SUBPIXEL_BITS
    cx, cy, rr = round(x * k), round(y * k), round(max(2.0, r) * k)
    if shape == "circle":
        cv2.circle(canvas, (cx, cy), rr, colour, -1, shift=SUBPIXEL_BITS)
    elif shape == "square":
        side = round(max(2.0, r) * 0.89 * k)  # same area as the circle
        cv2.rectangle(canvas, (cx - side, cy - side), (cx + side, cy + side), colour, -1, shift=SUBPIXEL_BITS)
    else:
        half = round(max(2.0, r) * 1.25 * k)
        pts = np.array([[cx, cy - half], [cx - half, cy + half], [cx + half, cy + half]], np.int32)
        cv2.fillPoly(canvas, [pts], colour, shift=SUBPIXEL_BITS)


def render(spec: VideoSpec, cfg: SynthConfig, rng: np.random.Generator) -> np.ndarray:
    """The video's frames, uint8 BGR [T, size, size, 3]: textured grey background, noise, blended shapes."""
    n = cfg.size
    n_frames = max(1, int(spec.duration * cfg.fps))
    small = rng.uniform(90, 160, size=(8, 8)).astype(np.float32)
    texture = cv2.resize(small, (n, n), interpolation=cv2.INTER_CUBIC)
    grey = np.clip(texture[None] + rng.normal(0, cfg.noise, size=(8, n, n)), 0, 255).astype(np.uint8)
    backgrounds = np.repeat(grey[..., None], 3, axis=3)
    frames = np.empty((n_frames, n, n, 3), np.uint8)
    for f in range(n_frames):
        img = backgrounds[f % len(backgrounds)].copy()
        for i, o in enumerate(spec.objects):
            x, y, r, a = object_state(spec, i, f / cfg.fps)
            if a <= 0.02:
                continue
            if a >= 0.98:
                _draw(img, o.shape, x, y, r, BGR[o.colour])
            else:  # a fading object: blend its colour into the background
                layer = img.copy()
                _draw(layer, o.shape, x, y, r, BGR[o.colour])
                cv2.addWeighted(layer, a, img, 1 - a, 0, dst=img)
        frames[f] = img
    return frames


def queries(spec: VideoSpec, rng: np.random.Generator) -> list[Record]:
    """One query per event, from templates with synonyms ("a red ball slides left")."""
    out = []
    for k, e in enumerate(spec.events):
        o = spec.objects[e.obj]
        det = "the" if rng.random() < 0.7 else "a"
        text = f"{det} {o.colour} {rng.choice(NOUNS[o.shape])} {rng.choice(VERBS[e.kind])}"
        out.append(Record(spec.vid, f"{spec.vid}_{k}", text, spec.duration, ((e.start, e.end),)))
    return out


def make_video(cfg: SynthConfig, split: str, k: int) -> tuple[VideoSpec, np.ndarray, list[Record]]:
    """Video ``k`` of ``split``: its script, frames and queries, from its own seed ``(seed, split, k)``.

    One generator per video (not one per split) makes every video independent of the others, so videos can be
    rendered in any order and by any number of processes with identical results.
    """
    rng = np.random.default_rng([cfg.seed, SPLITS.index(split), k])
    spec = sample_video(rng, cfg, f"{split}{k:05d}")
    return spec, render(spec, cfg, rng), queries(spec, rng)


def generate_split(cfg: SynthConfig, split: str, n: int):
    """Yield (spec, frames, records) for the first ``n`` videos of one split, deterministic for the seed."""
    for k in range(n):
        yield make_video(cfg, split, k)


def _features_and_records(job: tuple[SynthConfig, str, int]) -> tuple[str, np.ndarray, list[Record]]:
    """Worker of :func:`build`: render one video and extract its blob features (frames never leave the process);
    for a pretrained backbone it returns the frames, which the parent process runs through the network in batches
    (one copy of the network, on the GPU when there is one)."""
    cfg, split, k = job
    spec, frames, records = make_video(cfg, split, k)
    return spec.vid, clip_features(frames, cfg.fps, cfg.clip_seconds) if cfg.backbone == "blobs" else frames, records


def synth_features(cfg: SynthConfig, frames: np.ndarray) -> np.ndarray:
    """Per-clip features of rendered frames with ``cfg.backbone`` (what :func:`build` stores for each video)."""
    from tvgkit.data.backbones import extract_frames

    return extract_frames(
        frames,
        cfg.backbone,
        cfg.fps,
        cfg.clip_seconds,
        image_size=cfg.backbone_size,
        frames_per_clip=cfg.backbone_frames,
    )


@dataclass(frozen=True)
class SynthData:
    """Paths of a rendered dataset (all in the field's formats)."""

    root: Path

    @property
    def features(self) -> Path:
        return self.root / "features.hdf5"

    def jsonl(self, split: str) -> Path:
        return self.root / f"{split}.jsonl"

    def charades_txt(self, split: str) -> Path:
        return self.root / "charades_sta" / f"charades_sta_{split}.txt"

    @property
    def durations(self) -> Path:
        return self.root / "charades_sta" / "durations.json"


def build(
    cfg: SynthConfig | None = None,
    cache_dir: str | Path | None = None,
    progress: bool = True,
    workers: int | None = None,
) -> SynthData:
    """Render, extract and write the dataset of ``cfg`` unless its cache folder is already complete.

    ``workers`` processes render in parallel (default: one per CPU core, at most 8); the result does not depend on it.
    """
    from multiprocessing import get_context

    from tqdm.auto import tqdm

    from tvgkit.data.backbones import check_backbone
    from tvgkit.data.features import write_hdf5
    from tvgkit.data.formats import write_charades_sta, write_jsonl

    cfg = cfg or SynthConfig()
    check_backbone(cfg.backbone)
    root = dataset_root(cfg, cache_dir)
    data = SynthData(root)
    if (root / "DONE").exists():
        return data
    tmp = root.with_name(root.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    (tmp / "charades_sta").mkdir(parents=True)
    sizes = {"train": cfg.n_train, "val": cfg.n_val, "test": cfg.n_test}
    jobs = [(cfg, split, k) for split, n in sizes.items() for k in range(n)]
    workers = min(workers or os.cpu_count() or 1, 8, max(1, len(jobs)))
    features: dict[str, np.ndarray] = {}
    records: dict[str, list[Record]] = {split: [] for split in sizes}
    bar = tqdm(total=len(jobs), desc="render + extract", unit="video", disable=not progress)
    # "spawn": forking a process that has started torch's or OpenCV's thread pools can deadlock.
    pool = get_context("spawn").Pool(workers, initializer=cv2.setNumThreads, initargs=(1,)) if workers > 1 else None
    try:
        results = pool.imap(_features_and_records, jobs, chunksize=8) if pool else map(_features_and_records, jobs)
        for (_, split, _), (vid, feats, recs) in zip(jobs, results, strict=True):
            features[vid] = feats if cfg.backbone == "blobs" else synth_features(cfg, feats)
            records[split] += recs
            bar.update()
    finally:
        if pool:
            pool.close()
            pool.join()
    bar.close()
    durations: dict[str, float] = {}
    for split, recs in records.items():
        write_jsonl(recs, tmp / f"{split}.jsonl")
        write_charades_sta(recs, tmp / "charades_sta" / f"charades_sta_{split}.txt", tmp / f"durations_{split}.json")
        durations.update(json.loads((tmp / f"durations_{split}.json").read_text()))
        (tmp / f"durations_{split}.json").unlink()
    (tmp / "charades_sta" / "durations.json").write_text(json.dumps(durations))
    attrs = {k: getattr(cfg, k) for k in BACKBONE_FIELDS} if cfg.backbone != "blobs" else {"backbone": "blobs"}
    write_hdf5(features, tmp / "features.hdf5", attrs={**attrs, "fps": cfg.fps, "clip_seconds": cfg.clip_seconds})
    (tmp / "config.json").write_text(json.dumps(asdict(cfg), indent=1))
    (tmp / "DONE").write_text("ok\n")
    shutil.rmtree(root, ignore_errors=True)
    tmp.rename(root)
    return data
