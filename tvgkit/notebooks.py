"""Execute the kit's notebooks: refresh their stored outputs in place, or time them.

``python -m tvgkit.notebooks notebooks/*.ipynb`` re-runs each notebook at quick size with progress bars off
(``TQDM_DISABLE=1``, as in the tests) and writes outputs and execution counts back, which is what ``pytest --nbval``
compares against. It is the one documented way to refresh outputs (``make refresh-notebooks``).

``--plain`` runs the code cells as plain Python in one process, without a kernel and without writing anything back:
for machines without nbclient or ipykernel (the first GPU machine had neither); ``benchmarks/gpu_check.py`` uses it
there to time the notebooks at full size.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import time
from pathlib import Path

NOTEBOOK_ENV = {"TQDM_DISABLE": "1", "MPLBACKEND": "Agg", "TVGKIT_SIZE": "quick", "PYTHONHASHSEED": "0"}


def execute(
    path: str | Path, inplace: bool = True, timeout: int = 1200, size: str = "quick", out: str | Path | None = None
) -> float:
    """Run every cell of the notebook at ``path`` in its own folder; return the wall time in seconds. The executed
    notebook is written back (``inplace``) and/or to ``out``."""
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
    for target in ([path] if inplace else []) + ([Path(out)] if out else []):
        nbformat.write(nb, target)
    return seconds


SHELL_LINE = re.compile(r"^(\s*)[!%].*$", re.MULTILINE)  # IPython's !shell and %magic lines


def plain_source(cell_source: str) -> str:
    """A code cell as plain Python: each ``!shell`` or ``%magic`` line becomes ``pass`` at its indentation."""
    return SHELL_LINE.sub(lambda m: f"{m.group(1)}pass", cell_source)


def execute_plain(path: str | Path, size: str = "full") -> float:
    """Run the code cells of the notebook at ``path`` as plain Python, in one namespace, in the notebook's folder;
    return the wall time in seconds. Nothing is written back; printed output goes to stdout.

    No kernel: no rich display, and ``!pip`` / ``%magic`` lines are skipped (only the Colab cell has one, and it
    runs on Colab only). An exception stops the run, naming the cell.
    """
    path = Path(path).resolve()
    cells = [c for c in json.loads(path.read_text())["cells"] if c["cell_type"] == "code"]
    os.environ.update({**NOTEBOOK_ENV, "TVGKIT_SIZE": size})
    cwd = Path.cwd()
    os.chdir(path.parent)
    namespace: dict = {"__name__": "__main__"}
    start = time.perf_counter()
    try:
        for i, cell in enumerate(cells):
            source = "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]
            exec(compile(plain_source(source), f"{path.name}:code cell {i}", "exec"), namespace)
    finally:
        os.chdir(cwd)
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m tvgkit.notebooks", description=__doc__.splitlines()[0])
    parser.add_argument("notebooks", nargs="+", type=Path)
    parser.add_argument("--size", default="quick", choices=["quick", "full"])
    parser.add_argument("--plain", action="store_true", help="run cells as plain Python, no kernel, nothing written")
    args = parser.parse_args(argv)
    for path in args.notebooks:
        seconds = execute_plain(path, args.size) if args.plain else execute(path, inplace=True, size=args.size)
        print(f"{path}: {seconds:.1f} s")


if __name__ == "__main__":
    main()
