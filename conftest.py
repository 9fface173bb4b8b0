"""Test-wide settings: quick size, no progress bars, and nbval rules for the notebooks.

nbval compares stored notebook outputs with fresh ones. Here stderr is left out of the comparison (warnings carry
per-run paths), and notebooks that need real annotation files are skipped, with the reason, where those are absent.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

# Set before any kernel starts: nbval's kernels inherit this environment.
os.environ.setdefault("TVGKIT_SIZE", "quick")
os.environ.setdefault("TQDM_DISABLE", "1")
os.environ.setdefault("MPLBACKEND", "Agg")
os.environ.setdefault("PYTHONHASHSEED", "0")


def pytest_collectstart(collector: pytest.Collector) -> None:
    if str(getattr(collector, "path", "")).endswith(".ipynb") and hasattr(collector, "skip_compare"):
        collector.skip_compare = (*collector.skip_compare, "stderr")


def _missing_data(notebook: Path) -> list[str]:
    """Datasets named in the notebook's ``metadata.tvgkit.requires_data`` that cannot be found."""
    from tvgkit.data.locate import data_root

    meta = json.loads(notebook.read_text()).get("metadata", {}).get("tvgkit", {})
    root = data_root()
    return [name for name in meta.get("requires_data", []) if root is None or not (root / name).is_dir()]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    checked: dict[Path, list[str]] = {}
    for item in items:
        path = Path(str(item.path))
        if path.suffix != ".ipynb":
            continue
        if path not in checked:
            checked[path] = _missing_data(path)
        if checked[path]:
            names = ", ".join(checked[path])
            item.add_marker(
                pytest.mark.skip(
                    reason=f"{path.name} needs the real annotation files of {names} "
                    "(set $TVGKIT_DATA; see README 'Real annotations')"
                )
            )
