"""The OpenCV per-clip feature extractor: pixels in, one feature vector per clip out.

The same function serves the kit's rendered videos and a user's video file, so the synthetic benchmark measures
the whole pipeline (nothing is ever computed from event labels). Each frame is reduced to colour-blob statistics:
for every (colour, shape) slot the presence, area, centre, and colour strength (mean saturation, which shows a
fading object), found by HSV thresholds and connected components, with the shape read from the blob's fill ratio
(area / bounding-box area: about 1 for a square, 0.7 to 0.78 for a circle, 0.5 for a triangle). A clip keeps the
mean of its frames, the change from its first to its last frame (sharp boundaries need change features; scaled by
10 so that a move is as visible as a presence flag), and the frame-difference energy in a 2x2 grid. Optical flow
would cost about four times more and was not needed.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Iterator
from pathlib import Path

import cv2
import numpy as np

from tvgkit.errors import InputError

FRAME_SIZE = 64
COLOURS = ("red", "yellow", "green", "blue")
SHAPES = ("circle", "square", "triangle")
# OpenCV hue runs 0..179; red wraps around 0.
HUE_RANGES = {"red": ((0, 8), (172, 179)), "yellow": ((22, 38),), "green": ((50, 70),), "blue": ((110, 130),)}
MIN_SATURATION = 70
MIN_VALUE = 60
MIN_AREA = 6
SLOT_FIELDS = ("present", "area", "x", "y", "strength")
CHANGE_FIELDS = SLOT_FIELDS
CHANGE_SCALE = 10.0
ENERGY_SCALE = 10.0
N_SLOTS = len(COLOURS) * len(SHAPES)
FRAME_DIM = N_SLOTS * len(SLOT_FIELDS)
FEATURE_DIM = FRAME_DIM + N_SLOTS * len(CHANGE_FIELDS) + 4


class VideoError(InputError):
    """A file OpenCV cannot read as a video (or one with no frame): the message names the file."""


def shape_of(fill_ratio: float) -> int:
    """Index into SHAPES from a blob's fill ratio (area / bounding-box area)."""
    if fill_ratio > 0.88:
        return SHAPES.index("square")
    if fill_ratio > 0.6:
        return SHAPES.index("circle")
    return SHAPES.index("triangle")


def _hue_lut() -> np.ndarray:
    lut = np.zeros(256, np.uint8)
    for c, colour in enumerate(COLOURS):
        for lo, hi in HUE_RANGES[colour]:
            lut[lo : hi + 1] = c + 1
    return lut


HUE_LUT = _hue_lut()


def frame_features(frame: np.ndarray) -> np.ndarray:
    """Colour-blob statistics of one BGR frame (any size; positions and areas are relative): float32 [FRAME_DIM]."""
    h, w = frame.shape[:2]
    hsv = cv2.cvtColor(frame, cv2.COLOR_BGR2HSV)
    sat = hsv[..., 1]
    strong = (sat >= MIN_SATURATION) & (hsv[..., 2] >= MIN_VALUE)
    colour_of = HUE_LUT[hsv[..., 0]] * strong
    counts = np.bincount(colour_of.ravel(), minlength=len(COLOURS) + 1)
    out = np.zeros((len(COLOURS), len(SHAPES), len(SLOT_FIELDS)), np.float32)
    for c in np.nonzero(counts[1:] >= MIN_AREA)[0]:
        mask = (colour_of == c + 1).astype(np.uint8)
        n, labels, stats, centroids = cv2.connectedComponentsWithStats(mask, connectivity=8)
        sat_sum = np.bincount(labels.ravel(), weights=sat.ravel(), minlength=n)
        for i in range(1, n):
            x0, y0, bw, bh, area = stats[i]
            if area < MIN_AREA:
                continue
            slot = out[c, shape_of(area / float(bw * bh))]
            frac = area / (h * w)
            weight = slot[1] + frac
            # Two blobs of one slot (rare) merge into one area-weighted centre.
            slot[2] = (slot[2] * slot[1] + centroids[i][0] / w * frac) / weight
            slot[3] = (slot[3] * slot[1] + centroids[i][1] / h * frac) / weight
            slot[4] = max(slot[4], sat_sum[i] / area / 255.0)
            slot[1] = weight
            slot[0] = 1.0
    out[..., 1] *= 10.0  # areas are a few percent of the frame: bring them to the scale of the other fields
    return out.reshape(-1)


def _diff_energy(prev: np.ndarray, frame: np.ndarray) -> np.ndarray:
    diff = cv2.absdiff(cv2.cvtColor(prev, cv2.COLOR_BGR2GRAY), cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY))
    h, w = diff.shape
    quads = [diff[: h // 2, : w // 2], diff[: h // 2, w // 2 :], diff[h // 2 :, : w // 2], diff[h // 2 :, w // 2 :]]
    return np.array([q.mean() / 255.0 for q in quads], np.float32)


def clip_features(frames: Iterable[np.ndarray], fps: float, clip_seconds: float = 1.0) -> np.ndarray:
    """Per-clip features of a frame sequence: float32 [n_clips, FEATURE_DIM] (a last partial clip is kept).

    Clip i pools frames ``i * round(fps * clip_seconds)`` onwards, the frames shown in [i * c, (i + 1) * c) seconds:
    the kit's time convention (:mod:`tvgkit.data.timeline`).
    """
    per_clip = max(1, round(fps * clip_seconds))
    clips: list[np.ndarray] = []
    stats: list[np.ndarray] = []
    energy: list[np.ndarray] = []
    prev = None
    for frame in frames:
        stats.append(frame_features(frame))
        energy.append(np.zeros(4, np.float32) if prev is None else _diff_energy(prev, frame))
        prev = frame
        if len(stats) == per_clip:
            clips.append(_pool(stats, energy))
            stats, energy = [], []
    if stats:
        clips.append(_pool(stats, energy))
    return np.stack(clips) if clips else np.zeros((0, FEATURE_DIM), np.float32)


def _pool(stats: list[np.ndarray], energy: list[np.ndarray]) -> np.ndarray:
    arr = np.stack(stats).reshape(len(stats), N_SLOTS, len(SLOT_FIELDS))
    change = arr[-1] - arr[0]
    # A blob missed in one frame would look like a jump to 0: area, position and strength change only where the blob
    # is seen in both frames; appearing and vanishing show in the presence change instead.
    change[:, 1:] *= (arr[-1, :, 0] * arr[0, :, 0])[:, None]
    # Scaled so that a typical move (a third of the frame in 8 s) gives about 0.3 per clip, like the other fields.
    change *= CHANGE_SCALE
    return np.concatenate(
        [arr.mean(0).reshape(-1), change.reshape(-1), ENERGY_SCALE * np.stack(energy).mean(0)]
    ).astype(np.float32)


def read_frames(path: str | Path, fps: float = 4.0, size: int = FRAME_SIZE) -> tuple[Iterator[np.ndarray], float]:
    """Frames of a video file resampled to ``fps`` and resized to ``size`` x ``size``; also the duration (s)."""
    if not Path(path).is_file():
        raise FileNotFoundError(f"{path}: no such video file")
    # The kit names a file it cannot read itself; libav's own lines ("moov atom not found") would only add noise.
    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")
    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        raise VideoError(f"{path}: OpenCV cannot read this file as a video")
    if (int(cap.get(cv2.CAP_PROP_FOURCC)) & 0xFFFFFFFF).to_bytes(4, "little") == b"ansi":
        cap.release()  # FFmpeg's tty demuxer plays any .txt file as a video of its text
        raise VideoError(f"{path}: a text file, not a video")
    src_fps = cap.get(cv2.CAP_PROP_FPS) or fps
    n_frames = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
    duration = n_frames / src_fps if n_frames > 0 else 0.0

    def frames() -> Iterator[np.ndarray]:
        next_time, index = 0.0, 0
        try:
            while True:
                ok, frame = cap.read()
                if not ok:
                    break
                if index / src_fps + 1e-6 >= next_time:
                    next_time += 1.0 / fps
                    yield cv2.resize(frame, (size, size), interpolation=cv2.INTER_AREA)
                index += 1
        finally:
            cap.release()

    return frames(), duration


def extract_video(
    path: str | Path,
    fps: float = 4.0,
    clip_seconds: float = 1.0,
    progress: bool = False,
    backbone: str = "blobs",
    device=None,
    image_size: int | None = None,
    frames_per_clip: int | None = None,
) -> tuple[np.ndarray, float]:
    """Features [clips, dim] and duration (s) of a video file: what ``tvgkit extract`` writes per video.

    ``backbone`` is ``"blobs"`` (the colour-blob statistics above, FEATURE_DIM wide) or a pretrained network of
    :mod:`tvgkit.data.backbones` (frames read at its input size ``image_size``, ``frames_per_clip`` of each clip
    through the network; ``device`` defaults to CUDA when present).
    ``progress`` shows a tqdm bar over the sampled frames (a long video takes minutes).
    """
    from tqdm.auto import tqdm

    from tvgkit.data.backbones import BLOBS, FRAMES_PER_CLIP, IMAGE_SIZE, check_backbone, encoder, extract_frames

    if not (0 < fps < math.inf and 0 < clip_seconds < math.inf):  # NaN fails every comparison
        raise InputError(f"fps ({fps}) and clip_seconds ({clip_seconds}) must be positive finite numbers")
    image_size = image_size or IMAGE_SIZE
    if check_backbone(backbone) != BLOBS:
        encoder(device, image_size)  # load the network (or fail for want of the extra) before reading any frame
    frames, duration = read_frames(path, fps, FRAME_SIZE if backbone == BLOBS else image_size)
    total = math.ceil(duration * fps) if duration else None
    with tqdm(frames, total=total, desc=Path(path).name, unit="frame", disable=not progress) as bar:
        feats = extract_frames(bar, backbone, fps, clip_seconds, device, image_size, frames_per_clip or FRAMES_PER_CLIP)
    if len(feats) == 0:
        raise VideoError(f"{path}: OpenCV opened the file but read no frame from it")
    return feats, duration or len(feats) * clip_seconds


def write_video(frames: np.ndarray, path: str | Path, fps: float, scale: int = 4) -> Path:
    """Write uint8 BGR frames [T, H, W, 3] as an mp4, each pixel a ``scale`` x ``scale`` block (demos and tests).

    Why enlarge: the codec works on 16 x 16 blocks with chroma at half resolution, which at 64 x 64 smears a shape
    into its neighbour: on 12 rendered videos 4 to 76 blob presences per video changed (of 79 to 177) and the clip
    features moved by 0.7 to 4 times their own norm. Enlarged 4x, 0 to 2 changed and 99% of the feature values read
    back lie within 0.05 of the frames' own (``read_frames`` shrinks with INTER_AREA, which undoes the enlargement
    exactly), as a real video's would.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    h, w = frames.shape[1] * scale, frames.shape[2] * scale
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
    for frame in frames:
        writer.write(cv2.resize(frame, (w, h), interpolation=cv2.INTER_NEAREST) if scale != 1 else frame)
    writer.release()
    return path
