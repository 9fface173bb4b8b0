"""The OpenCV extractor reads shapes, colours and motion from pixels alone."""

from __future__ import annotations

import numpy as np
import pytest

from tvgkit.data.extract import (
    CHANGE_FIELDS,
    COLOURS,
    FEATURE_DIM,
    FRAME_DIM,
    SHAPES,
    SLOT_FIELDS,
    clip_features,
    extract_video,
    frame_features,
    write_video,
)
from tvgkit.data.synthetic import BGR, _draw


def _frame(objects: list[tuple[str, str, float, float]]) -> np.ndarray:
    img = np.full((64, 64, 3), 128, np.uint8)
    for colour, shape, x, y in objects:
        _draw(img, shape, x, y, 8.0, BGR[colour])
    return img


def _slots(frame: np.ndarray) -> np.ndarray:
    return frame_features(frame).reshape(len(COLOURS), len(SHAPES), len(SLOT_FIELDS))


@pytest.mark.parametrize("shape", SHAPES)
def test_each_shape_lands_in_its_own_slot(shape: str) -> None:
    slots = _slots(_frame([("red", shape, 20, 40)]))
    present = list(zip(*np.nonzero(slots[..., 0]), strict=False))
    assert present == [(COLOURS.index("red"), SHAPES.index(shape))]
    x, y = slots[COLOURS.index("red"), SHAPES.index(shape), 2:4]
    assert abs(x - 20 / 64) < 0.03 and abs(y - 40 / 64) < 0.06  # a triangle's centroid sits below its box centre


def test_same_colour_different_shapes_are_told_apart() -> None:
    slots = _slots(_frame([("blue", "circle", 16, 16), ("blue", "square", 46, 46), ("green", "circle", 46, 14)]))
    got = {(COLOURS[c], SHAPES[s]) for c, s in zip(*np.nonzero(slots[..., 0]), strict=False)}
    assert got == {("blue", "circle"), ("blue", "square"), ("green", "circle")}


def test_empty_grey_frame_has_no_blobs() -> None:
    assert frame_features(np.full((64, 64, 3), 128, np.uint8)).sum() == 0
    assert FRAME_DIM == 60 and FEATURE_DIM == 60 + 60 + 4


def test_clips_pool_frames_and_keep_a_partial_last_clip() -> None:
    frames = [_frame([("yellow", "circle", 10 + 4 * i, 32)]) for i in range(9)]
    feats = clip_features(frames, fps=4, clip_seconds=1.0)
    assert feats.shape == (3, FEATURE_DIM)
    slot = COLOURS.index("yellow") * len(SHAPES) + SHAPES.index("circle")
    dx = feats[:, FRAME_DIM + slot * len(CHANGE_FIELDS) + CHANGE_FIELDS.index("x")]  # change of x within each clip
    assert dx[0] == pytest.approx(10 * 12 / 64, abs=0.2) and dx[2] == 0.0
    assert (feats[:2, -4:].sum(1) > 0).all()  # frame differences see the motion


def test_video_file_round_trip(tmp_path) -> None:
    frames = np.stack([_frame([("green", "square", 32, 32)]) for _ in range(20)])
    path = write_video(frames, tmp_path / "v.mp4", fps=4)
    feats, duration = extract_video(path, fps=4)
    assert duration == pytest.approx(5.0) and feats.shape == (5, FEATURE_DIM)
    slot = COLOURS.index("green") * len(SHAPES) + SHAPES.index("square")
    assert (feats[:, slot * len(SLOT_FIELDS)] == 1.0).all()
    with pytest.raises(FileNotFoundError):
        extract_video(tmp_path / "missing.mp4")
