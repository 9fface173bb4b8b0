"""Feature stores for the layouts public TVG feature files use, and resampling to a fixed number of clips.

Layouts (``open_features(path, layout=...)``):

* ``"hdf5"``: ``f[vid]`` is a ``[clips, dim]`` dataset (2D-TAN's Charades VGG and TACoS C3D files);
* ``"hdf5-c3d"``: ``f[vid]["c3d_features"]`` (the ActivityNet C3D file ``sub_activitynet_v1-3.c3d.hdf5``);
* ``"npy"``: a folder of ``<vid>.npy`` files (I3D features of VSLNet and many others);
* ``"npz"``: a folder of ``<vid>.npz`` files holding ``"features"`` (Moment-DETR / lighthouse clip features).

Every store hands out ``float32 [clips, dim]`` arrays and refuses non-finite values, naming the video: a NaN in one
video's features otherwise surfaces hours later as a NaN loss with no culprit.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path

import h5py
import numpy as np

LAYOUTS = ("hdf5", "hdf5-c3d", "npy", "npz")
C3D_KEY = "c3d_features"
NPZ_KEY = "features"


def _detect(path: Path) -> str:
    """Guess the layout from what is at ``path``: a folder of .npy / .npz files, or an HDF5 file."""
    if path.is_dir():
        suffixes = {p.suffix for p in path.iterdir() if p.suffix in (".npy", ".npz")}
        if len(suffixes) != 1:
            raise ValueError(f"{path}: expected a folder of <vid>.npy or of <vid>.npz files, found {sorted(suffixes)}")
        return suffixes.pop()[1:]
    with h5py.File(path, "r") as f:
        first = next(iter(f.keys()), None)
        if first is None:
            raise ValueError(f"{path}: the HDF5 file holds no videos")
        return "hdf5-c3d" if isinstance(f[first], h5py.Group) else "hdf5"


class FeatureStore:
    """Read-only ``vid -> float32 [clips, dim]`` over one of :data:`LAYOUTS`; a context manager (or call close())."""

    def __init__(self, path: str | Path, layout: str = "auto", l2_normalise: bool = False):
        self.path = Path(path)
        if not self.path.exists():
            raise FileNotFoundError(f"{self.path}: no such feature file or folder")
        self.layout = _detect(self.path) if layout == "auto" else layout
        if self.layout not in LAYOUTS:
            raise ValueError(f"unknown feature layout {layout!r}; choose from {LAYOUTS} or 'auto'")
        self.l2_normalise = l2_normalise
        self._file = h5py.File(self.path, "r") if self.layout.startswith("hdf5") else None
        if self._file is not None:
            self.vids = list(self._file.keys())
        else:
            self.vids = sorted(p.stem for p in self.path.glob(f"*.{self.layout}"))
        self._vid_set = set(self.vids)

    def _raw(self, vid: str) -> np.ndarray:
        if self.layout == "hdf5":
            return self._file[vid][()]
        if self.layout == "hdf5-c3d":
            return self._file[vid][C3D_KEY][()]
        if self.layout == "npy":
            return np.load(self.path / f"{vid}.npy")
        with np.load(self.path / f"{vid}.npz") as data:
            return data[NPZ_KEY]

    def __getitem__(self, vid: str) -> np.ndarray:
        if vid not in self._vid_set:
            raise KeyError(f"{self.path}: no features for video {vid!r}")
        array = np.asarray(self._raw(vid), dtype=np.float32)
        if array.ndim != 2:
            raise ValueError(f"{self.path}: features of video {vid!r} have shape {array.shape}, expected [clips, dim]")
        if not np.isfinite(array).all():
            bad = int((~np.isfinite(array)).any(axis=1).sum())
            raise ValueError(f"{self.path}: features of video {vid!r} hold non-finite values in {bad} clip(s)")
        if self.l2_normalise:
            norms = np.linalg.norm(array, axis=1, keepdims=True)
            array = array / np.maximum(norms, np.float32(1e-12))
        return array

    def __contains__(self, vid: object) -> bool:
        return vid in self._vid_set

    def __len__(self) -> int:
        return len(self.vids)

    @property
    def dim(self) -> int:
        """Feature width, read from the first video."""
        if not self.vids:
            raise ValueError(f"{self.path}: the store holds no videos")
        return int(self[self.vids[0]].shape[1])

    def missing(self, vids: Iterable[str]) -> list[str]:
        """The requested videos that have no features, in the order given (check before a long run, not during)."""
        return [vid for vid in vids if vid not in self._vid_set]

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def __enter__(self) -> FeatureStore:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def open_features(path: str | Path, layout: str = "auto", l2_normalise: bool = False) -> FeatureStore:
    """Open a feature file or folder; ``layout`` is one of :data:`LAYOUTS` or ``"auto"`` (guessed from the path)."""
    return FeatureStore(path, layout=layout, l2_normalise=l2_normalise)


def write_hdf5(features: Mapping[str, np.ndarray], path: str | Path, group_key: str | None = None) -> Path:
    """Write ``{vid: [clips, dim]}`` as HDF5 ``f[vid]`` (float32), or ``f[vid][group_key]`` when given.

    ``group_key="c3d_features"`` writes the ActivityNet C3D layout.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w") as f:
        for vid, array in features.items():
            array = np.asarray(array, dtype=np.float32)
            if array.ndim != 2:
                raise ValueError(f"features of video {vid!r} have shape {array.shape}, expected [clips, dim]")
            if not np.isfinite(array).all():
                raise ValueError(f"features of video {vid!r} hold non-finite values")
            target = f.create_group(vid) if group_key else f
            target.create_dataset(group_key or vid, data=array)
    return path


def resample(features: np.ndarray, n_clips: int) -> tuple[np.ndarray, np.ndarray]:
    """Bring ``[T, dim]`` features to ``[n_clips, dim]`` and a boolean mask of real clips.

    Longer inputs are mean-pooled over ``n_clips`` contiguous bins with integer edges ``floor(i * T / n_clips)``
    (each bin holds ``floor`` or ``ceil`` of ``T / n_clips`` clips, so the pooled video keeps its time axis);
    shorter inputs are padded with zeros and the mask marks the padding False, so attention can ignore it.
    """
    features = np.asarray(features, dtype=np.float32)
    if features.ndim != 2 or len(features) == 0:
        raise ValueError(f"resample: expected non-empty [clips, dim] features, got shape {features.shape}")
    if n_clips < 1:
        raise ValueError(f"resample: n_clips must be >= 1, got {n_clips}")
    length, dim = features.shape
    if length >= n_clips:
        edges = (np.arange(n_clips + 1) * length) // n_clips
        sums = np.add.reduceat(features.astype(np.float64), edges[:-1], axis=0)
        pooled = sums / np.diff(edges)[:, None]
        return pooled.astype(np.float32), np.ones(n_clips, dtype=bool)
    padded = np.zeros((n_clips, dim), dtype=np.float32)
    padded[:length] = features
    mask = np.zeros(n_clips, dtype=bool)
    mask[:length] = True
    return padded, mask
