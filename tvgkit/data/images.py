"""Small labelled images of shapes, rendered with OpenCV by the kit: an offline dataset for the ViT notebook.

Why rendered shapes rather than a packaged set such as scikit-learn's 8x8 digits: digits are too small to cut into
patches and too easy (any variant reaches ~98%), and they would add a dependency. Here every image is drawn from a
seed, so the data exist anywhere without a download or a licence, and the difficulty is a dial: each image holds one
target shape (the label) at a random position, size, rotation and colour, plus distractor strokes and pixel noise, so
a classifier must combine patches (a square and a triangle differ only in a few patches' edges). Small ViTs reach
clearly different accuracies on it within a few epochs, which is what a comparison of norm variants needs.
"""

from __future__ import annotations

import cv2
import numpy as np
import torch

SHAPES = ("circle", "square", "triangle", "cross", "ring", "star")


def _polygon(center: np.ndarray, radius: float, n: int, angle: float, inner: float | None = None) -> np.ndarray:
    """Vertices of a regular polygon (or a star when ``inner`` radius is given), as int32 for OpenCV."""
    if inner is None:
        theta = angle + 2 * np.pi * np.arange(n) / n
        radii = np.full(n, radius)
    else:
        theta = angle + np.pi * np.arange(2 * n) / n
        radii = np.where(np.arange(2 * n) % 2 == 0, radius, inner)
    pts = center + np.stack([radii * np.cos(theta), radii * np.sin(theta)], axis=1)
    return np.round(pts).astype(np.int32)


def draw_shape(img: np.ndarray, label: int, rng: np.random.Generator) -> None:
    """Draw shape ``SHAPES[label]`` in place at a random position, size, rotation and colour."""
    size = img.shape[0]
    radius = rng.uniform(0.18, 0.32) * size
    center = rng.uniform(radius + 1, size - radius - 1, size=2)
    color = tuple(int(c) for c in rng.integers(120, 256, size=3))
    angle = rng.uniform(0, 2 * np.pi)
    c = tuple(int(v) for v in np.round(center))
    name = SHAPES[label]
    if name == "circle":
        cv2.circle(img, c, int(round(radius)), color, -1, cv2.LINE_AA)
    elif name == "ring":
        cv2.circle(img, c, int(round(radius)), color, max(1, int(radius / 3)), cv2.LINE_AA)
    elif name == "square":
        cv2.fillPoly(img, [_polygon(center, radius, 4, angle)], color, cv2.LINE_AA)
    elif name == "triangle":
        cv2.fillPoly(img, [_polygon(center, radius, 3, angle)], color, cv2.LINE_AA)
    elif name == "star":
        cv2.fillPoly(img, [_polygon(center, radius, 5, angle, inner=radius * 0.45)], color, cv2.LINE_AA)
    elif name == "cross":
        for a in (angle, angle + np.pi / 2):
            d = radius * np.array([np.cos(a), np.sin(a)])
            p, q = np.round(center - d).astype(int), np.round(center + d).astype(int)
            cv2.line(img, tuple(int(v) for v in p), tuple(int(v) for v in q), color, max(1, int(radius / 3)))


def render_shapes(
    n: int, size: int = 32, seed: int = 0, distractors: int = 2, noise: float = 0.08
) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` RGB images ``float32[n, 3, size, size]`` in [0, 1] and their labels ``int64[n]`` (balanced classes).

    Each image: a dark random background, ``distractors`` thin random line segments, one target shape, and Gaussian
    pixel noise of standard deviation ``noise``. Same ``seed``, same images, on any machine.
    """
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % len(SHAPES)
    rng.shuffle(labels)
    images = np.empty((n, size, size, 3), dtype=np.uint8)
    for i, label in enumerate(labels):
        img = np.full((size, size, 3), rng.integers(0, 60, size=3), dtype=np.uint8)
        for _ in range(distractors):
            p, q = rng.integers(0, size, size=(2, 2))
            color = tuple(int(v) for v in rng.integers(60, 200, size=3))
            cv2.line(img, (int(p[0]), int(p[1])), (int(q[0]), int(q[1])), color, 1)
        draw_shape(img, int(label), rng)
        images[i] = img
    x = images.astype(np.float32) / 255.0 + rng.normal(0.0, noise, size=images.shape).astype(np.float32)
    x = np.clip(x, 0.0, 1.0).transpose(0, 3, 1, 2)
    return torch.from_numpy(np.ascontiguousarray(x)), torch.from_numpy(labels.astype(np.int64))


def shapes_splits(
    n_train: int, n_test: int, size: int = 32, seed: int = 0
) -> tuple[torch.utils.data.TensorDataset, torch.utils.data.TensorDataset]:
    """Train and test sets rendered from different seeds (no image is shared between them)."""
    train = torch.utils.data.TensorDataset(*render_shapes(n_train, size=size, seed=seed))
    test = torch.utils.data.TensorDataset(*render_shapes(n_test, size=size, seed=seed + 10_000))
    return train, test
