"""Where the real annotation files live: an explicit folder, ``$TVGKIT_DATA``, or ``shared/data`` beside the repo.

The kit never ships those files (their licences forbid it); a user points the kit at their own copy.
"""

from __future__ import annotations

import os
from pathlib import Path

DATA_ENV = "TVGKIT_DATA"
HOW_TO_GET = (
    "point --data-dir (or $TVGKIT_DATA) at a folder holding <dataset>/ subfolders with the files under their usual "
    "names; see README.md, section 'Real annotations', for where to download them"
)


def data_root(explicit: str | Path | None = None) -> Path | None:
    """The first existing folder among: ``explicit``, ``$TVGKIT_DATA``, ``../shared/data`` of the repo or cwd."""
    repo = Path(__file__).resolve().parents[2]
    candidates = [
        explicit,
        os.environ.get(DATA_ENV),
        repo.parent / "shared" / "data",
        Path.cwd().parent / "shared" / "data",
    ]
    for candidate in candidates:
        if candidate and Path(candidate).is_dir():
            return Path(candidate)
    return None


def dataset_dir(name: str, explicit: str | Path | None = None) -> Path:
    """The folder of dataset ``name`` (for example ``charades_sta``); a clear error when it is absent.

    ``explicit`` may be the dataset folder itself or a root holding ``name/``.
    """
    if explicit is not None:
        path = Path(explicit)
        if (path / name).is_dir():
            return path / name
        if path.is_dir():
            return path
        raise FileNotFoundError(f"{path}: no such data folder; {HOW_TO_GET}")
    root = data_root()
    if root is None or not (root / name).is_dir():
        raise FileNotFoundError(f"dataset {name!r} not found; {HOW_TO_GET}")
    return root / name
