"""Feature stores for the layouts public TVG feature files use, and resampling to a fixed number of clips.

Layouts (``open_features(path, layout=...)``):

* ``"hdf5"``: ``f[vid]`` is a ``[clips, dim]`` dataset (2D-TAN's Charades VGG and TACoS C3D files);
* ``"hdf5-c3d"``: ``f[vid]["c3d_features"]`` (the ActivityNet C3D file ``sub_activitynet_v1-3.c3d.hdf5``);
* ``"npy"``: a folder of ``<vid>.npy`` files (I3D features of VSLNet and many others);
* ``"npz"``: a folder of ``<vid>.npz`` files holding ``"features"`` (Moment-DETR / lighthouse clip features).

Every store hands out ``float32 [clips, dim]`` arrays (integer and float16 stores are converted; strings, objects and
the like are refused) and refuses non-finite values, naming the video: a NaN in one video's features otherwise
surfaces hours later as a NaN loss with no culprit. A read that fails (a truncated HDF5 or .npy file) is a
:class:`FeatureError` naming the file and the video. :func:`check_coverage` checks, before
a run starts, that every annotated video has features of one width (listing the missing ones, or skipping them when
asked, with a count): a missing video otherwise stops a run at its first epoch, or deep inside torch.
"""

from __future__ import annotations

import contextlib
import os
import zipfile
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np

from tvgkit.data.records import Record
from tvgkit.errors import InputError

LAYOUTS = ("hdf5", "hdf5-c3d", "npy", "npz")
C3D_KEY = "c3d_features"
NPZ_KEY = "features"
SHOW_MISSING = 5  # how many missing video ids an error or report names before it only counts


class FeatureError(InputError):
    """A feature file or folder that cannot be used: the message names it, the video and the reason."""


class MissingFeaturesError(FeatureError, KeyError):
    """Videos with no features (also a KeyError, as a mapping's missing key is)."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


def _open_hdf5(path: Path) -> h5py.File:
    """Open read-only; a file that is not HDF5 (or is truncated) is a FeatureError naming it, not an h5py OSError."""
    try:
        return h5py.File(path, "r")
    except OSError as err:
        raise FeatureError(f"{path}: not a readable HDF5 file ({err})") from None


def _detect(path: Path) -> str:
    """Guess the layout from what is at ``path``: a folder of .npy / .npz files, or an HDF5 file."""
    if path.is_dir():
        suffixes = {p.suffix for p in path.iterdir() if p.suffix in (".npy", ".npz")}
        if not suffixes:
            raise FeatureError(f"{path}: the folder holds no <vid>.npy or <vid>.npz files")
        if len(suffixes) != 1:
            raise FeatureError(
                f"{path}: expected a folder of <vid>.npy or of <vid>.npz files, found {sorted(suffixes)}"
            )
        return suffixes.pop()[1:]
    if path.suffix in (".npy", ".npz"):
        raise FeatureError(
            f"{path}: a single {path.suffix} file; features are an HDF5 file or a folder of <vid>.npy files, or of "
            f"<vid>.npz files each holding a {NPZ_KEY!r} array"
        )
    with _open_hdf5(path) as f:
        first = next(iter(f.keys()), None)
        if first is None:
            raise FeatureError(f"{path}: the HDF5 file holds no videos")
        return "hdf5-c3d" if isinstance(f[first], h5py.Group) else "hdf5"


class FeatureStore:
    """Read-only ``vid -> float32 [clips, dim]`` over one of :data:`LAYOUTS`; a context manager (or call close())."""

    def __init__(self, path: str | Path, layout: str = "auto", l2_normalise: bool = False):
        self.path = Path(path)
        if not self.path.exists():
            raise FileNotFoundError(f"{self.path}: no such feature file or folder")
        self.layout = _detect(self.path) if layout == "auto" else layout
        if self.layout not in LAYOUTS:
            raise FeatureError(f"unknown feature layout {layout!r}; choose from {LAYOUTS} or 'auto'")
        self.l2_normalise = l2_normalise
        self._file = _open_hdf5(self.path) if self.layout.startswith("hdf5") else None
        if self._file is not None:
            self.vids = list(self._file.keys())
        else:
            self.vids = sorted(p.stem for p in self.path.glob(f"*.{self.layout}"))
        self._vid_set = set(self.vids)
        #: The clip length in seconds when the file records it (``tvgkit extract``, the synthetic set), else None:
        #: see :mod:`tvgkit.data.timeline` for what each case means; ``data.clip_seconds`` sets it.
        self.clip_seconds: float | None = None
        if "clip_seconds" in self.attrs:
            self.clip_seconds = float(self.attrs["clip_seconds"])

    @contextlib.contextmanager
    def _reading(self, vid: str) -> Iterator[None]:
        """Turn a failed read of one video (a truncated HDF5 or .npy, a bad zip, a missing key, pickled objects)
        into a FeatureError naming the file and the video: h5py's and numpy's own messages name neither."""
        if vid not in self._vid_set:
            raise MissingFeaturesError(f"{self.path}: no features for video {vid!r}")
        try:
            yield
        except (OSError, EOFError, ValueError, KeyError, TypeError, zipfile.BadZipFile) as err:
            if isinstance(err, InputError):
                raise
            reason = str(err).strip("'\"") or type(err).__name__
            raise FeatureError(f"{self.path}: cannot read the features of video {vid!r} ({reason})") from None

    def _dataset(self, vid: str) -> h5py.Dataset:
        """The HDF5 dataset of one video; an entry of the other layout (a group among datasets, or the reverse) is a
        FeatureError naming it, not an AttributeError from h5py."""
        node = self._file[vid]
        if self.layout == "hdf5-c3d":
            node = node.get(C3D_KEY) if isinstance(node, h5py.Group) else None
            if not isinstance(node, h5py.Dataset):
                raise FeatureError(
                    f"{self.path}: the entry of video {vid!r} holds no {C3D_KEY!r} dataset, as the first video's does"
                )
        elif not isinstance(node, h5py.Dataset):
            raise FeatureError(
                f"{self.path}: the entry of video {vid!r} is an HDF5 group, expected a [clips, dim] dataset as the "
                "first video's"
            )
        return node

    def _raw(self, vid: str) -> np.ndarray:
        with self._reading(vid):
            if self.layout.startswith("hdf5"):
                return self._dataset(vid)[()]
            if self.layout == "npy":
                return np.load(self.path / f"{vid}.npy")
            with np.load(self.path / f"{vid}.npz") as data:
                if NPZ_KEY not in data.files:
                    held = ", ".join(data.files) or "nothing"
                    raise FeatureError(f"{self.path}: {vid}.npz holds no {NPZ_KEY!r} array (it holds {held})")
                return data[NPZ_KEY]

    def describe(self, vid: str) -> tuple[tuple[int, ...], np.dtype]:
        """The stored shape and dtype of one video's features, read without loading them (except from .npz)."""
        with self._reading(vid):
            if self.layout.startswith("hdf5"):
                return self._dataset(vid).shape, self._dataset(vid).dtype
            if self.layout == "npy":
                array = np.load(self.path / f"{vid}.npy", mmap_mode="r")
                return array.shape, array.dtype
        array = self._raw(vid)
        return array.shape, array.dtype

    def shape(self, vid: str) -> tuple[int, ...]:
        """The stored shape of one video's features, read without loading them (except from .npz)."""
        return self.describe(vid)[0]

    def __getitem__(self, vid: str) -> np.ndarray:
        raw = self._raw(vid)
        _check_dtype(self.path, vid, raw.dtype)
        array = np.asarray(raw, dtype=np.float32)
        if array.ndim != 2:
            raise FeatureError(f"{self.path}: features of video {vid!r} are {array.shape}, expected [clips, dim]")
        if not np.isfinite(array).all():
            rows = np.flatnonzero((~np.isfinite(array)).any(axis=1))
            raise FeatureError(
                f"{self.path}: features of video {vid!r} hold non-finite values in {len(rows)} clip(s), "
                f"first at clip {rows[0]}"
            )
        if self.l2_normalise:
            norms = np.linalg.norm(array, axis=1, keepdims=True)
            array = array / np.maximum(norms, np.float32(1e-12))
        return array

    def __contains__(self, vid: object) -> bool:
        return vid in self._vid_set

    def __len__(self) -> int:
        return len(self.vids)

    @property
    def attrs(self) -> dict:
        """The HDF5 file's attributes (``tvgkit extract`` writes ``backbone``, ``fps``, ``clip_seconds``); ``{}`` for
        the folder layouts."""
        return dict(self._file.attrs) if self._file is not None else {}

    @property
    def backbone(self) -> str | None:
        """The backbone the features were extracted with, as recorded by ``tvgkit extract`` (None: not recorded)."""
        value = self.attrs.get("backbone")
        return None if value is None else str(value)

    @property
    def dim(self) -> int:
        """Feature width, read from the first video."""
        if not self.vids:
            raise FeatureError(f"{self.path}: the store holds no videos")
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


def _check_dtype(path: Path, vid: str, dtype: np.dtype) -> None:
    """Integers and floats of any width become float32 (int8 or float16 stores are common and lose nothing that
    matters); strings, objects, booleans and complex numbers are not features and are refused."""
    if dtype.kind not in "iuf":
        raise FeatureError(f"{path}: features of video {vid!r} are of dtype {dtype}, expected integers or floats")


def open_features(path: str | Path, layout: str = "auto", l2_normalise: bool = False) -> FeatureStore:
    """Open a feature file or folder; ``layout`` is one of :data:`LAYOUTS` or ``"auto"`` (guessed from the path)."""
    return FeatureStore(path, layout=layout, l2_normalise=l2_normalise)


def _some(ids: Sequence[str]) -> str:
    """The first few ids, then how many more: an error stays one readable line for a thousand missing videos."""
    more = len(ids) - SHOW_MISSING
    return ", ".join(ids[:SHOW_MISSING]) + (f" and {more} more" if more > 0 else "")


@dataclass
class Coverage:
    """What :func:`check_coverage` found: the features' width and the queries skipped for want of features."""

    source: str
    dim: int
    n_skipped: int = 0
    missing_vids: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        if not self.missing_vids:
            return f"{self.source}: features ({self.dim} dims) for every annotated video"
        return (
            f"{self.source}: skipped {self.n_skipped} queries of {len(self.missing_vids)} videos "
            f"with no features ({_some(self.missing_vids)})"
        )


def check_coverage(
    store: FeatureStore,
    splits: Mapping[str, Sequence[Record]],
    feature_dim: int | None = None,
    skip_missing: bool = False,
) -> tuple[dict[str, list[Record]], Coverage]:
    """Check, before a run starts, that every annotated video has features ``[clips >= 1, dim]`` of one width.

    Videos with no features are an error that lists them (the first few, and the count) unless ``skip_missing``:
    then their queries are dropped and counted in the returned :class:`Coverage`. ``feature_dim`` (the config's
    ``data.feature_dim``), when given, must equal every video's width. A split left with no query is an error too.
    Returns the kept records per split and the coverage.
    """
    vids = list(dict.fromkeys(r.vid for records in splits.values() for r in records))
    missing = store.missing(vids)
    lacking = set(missing)
    n_skipped = sum(r.vid in lacking for records in splits.values() for r in records)
    if missing and not skip_missing:
        raise MissingFeaturesError(
            f"{store.path}: no features for {len(missing)} of {len(vids)} annotated videos ({_some(missing)}); "
            f"fix the video ids, or set data.skip_missing_features=true to skip their {n_skipped} queries"
        )
    kept = {split: [r for r in records if r.vid not in lacking] for split, records in splits.items()}
    dim, first = feature_dim, None
    for vid in (v for v in vids if v not in lacking):
        shape, dtype = store.describe(vid)
        _check_dtype(store.path, vid, dtype)
        if len(shape) != 2 or shape[0] < 1:
            raise FeatureError(f"{store.path}: features of video {vid!r} are {shape}, expected [clips >= 1, dim]")
        if dim is None:
            dim, first = shape[1], vid
        elif shape[1] != dim:
            expected = f"data.feature_dim is {dim}" if first is None else f"those of video {first!r} have {dim}"
            raise FeatureError(f"{store.path}: features of video {vid!r} have {shape[1]} dims but {expected}")
    for split, records in kept.items():
        if not records:
            reason = f" (all {len(splits[split])} lack features)" if splits[split] else ""
            raise InputError(f"split {split!r} has no queries{reason}")
    return kept, Coverage(str(store.path), int(dim or 0), n_skipped, missing)


def write_hdf5(
    features: Mapping[str, np.ndarray],
    path: str | Path,
    group_key: str | None = None,
    attrs: Mapping[str, object] | None = None,
) -> Path:
    """Write ``{vid: [clips, dim]}`` as HDF5 ``f[vid]`` (float32), or ``f[vid][group_key]`` when given.

    ``attrs`` become the file's attributes: the backbone goes with the features it made, so a run or ``predict``
    can refuse features from another backbone (:attr:`FeatureStore.backbone`).

    ``group_key="c3d_features"`` writes the ActivityNet C3D layout. Every array is checked before anything is
    written, and the file is written beside ``path`` then renamed, so a failure never leaves a half-written file or
    destroys the one that was there.
    """
    path = Path(path)
    arrays = {vid: np.asarray(array, dtype=np.float32) for vid, array in features.items()}
    for vid, array in arrays.items():
        if array.ndim != 2:
            raise FeatureError(f"features of video {vid!r} have shape {array.shape}, expected [clips, dim]")
        if not np.isfinite(array).all():
            raise FeatureError(f"features of video {vid!r} hold non-finite values")
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    try:
        with h5py.File(partial, "w") as f:
            f.attrs.update(dict(attrs or {}))
            for vid, array in arrays.items():
                target = f.create_group(vid) if group_key else f
                target.create_dataset(group_key or vid, data=array)
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)
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
