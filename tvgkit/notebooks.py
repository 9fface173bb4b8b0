"""Execute the kit's notebooks: refresh their stored outputs in place, or time them.

``python -m tvgkit.notebooks notebooks/*.ipynb`` re-runs each notebook at quick size with progress bars off
(``TQDM_DISABLE=1``, as in the tests) and writes outputs and execution counts back, which is what ``pytest --nbval``
compares against. It is the one documented way to refresh outputs (``make refresh-notebooks``).
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

NOTEBOOK_ENV = {"TQDM_DISABLE": "1", "MPLBACKEND": "Agg", "TVGKIT_SIZE": "quick", "PYTHONHASHSEED": "0"}


def execute(path: str | Path, inplace: bool = True, timeout: int = 1200, size: str = "quick") -> float:
    """Run every cell of the notebook at ``path`` in its own folder; return the wall time in seconds."""
    import nbformat
    from nbclient import NotebookClient

    path = Path(path)
    nb = nbformat.read(path, as_version=4)
    saved = {k: os.environ.get(k) for k in NOTEBOOK_ENV}
    os.environ.update({**NOTEBOOK_ENV, "TVGKIT_SIZE": size})
    try:
        client = NotebookClient(
            nb, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}
        )
        start = time.perf_counter()
        client.execute()
        seconds = time.perf_counter() - start
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    if inplace:
        nbformat.write(nb, path)
    return seconds


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m tvgkit.notebooks", description=__doc__.splitlines()[0])
    parser.add_argument("notebooks", nargs="+", type=Path)
    parser.add_argument("--size", default="quick", choices=["quick", "full"])
    args = parser.parse_args(argv)
    for path in args.notebooks:
        seconds = execute(path, inplace=True, size=args.size)
        print(f"{path}: {seconds:.1f} s")


if __name__ == "__main__":
    main()
