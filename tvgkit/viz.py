"""Plotting helpers shared by the notebooks: where figures go and how they are saved."""

from __future__ import annotations

from pathlib import Path

import matplotlib.figure


def figures_dir() -> Path:
    """The repository's ``figures/`` folder (next to the package), or ``./figures`` for an installed package."""
    repo = Path(__file__).resolve().parent.parent / "figures"
    target = repo if repo.is_dir() else Path.cwd() / "figures"
    target.mkdir(parents=True, exist_ok=True)
    return target


def save_figure(fig: matplotlib.figure.Figure, name: str) -> Path:
    """Write ``fig`` as ``figures/<name>.png`` (the README shows these) and return the path."""
    path = figures_dir() / f"{name}.png"
    fig.savefig(path, metadata={"Software": None})
    return path
