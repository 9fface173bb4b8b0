"""The Colab cell is generated from pyproject's repository URL, and the sync tool rewrites only stale cells."""

from __future__ import annotations

import nbformat

from tvgkit.colab import colab_cell, repository_url, sync


def test_the_url_comes_from_pyproject(tmp_path) -> None:
    pyproject = tmp_path / "pyproject.toml"
    pyproject.write_text('[project]\nname = "tvgkit"\n[project.urls]\nRepository = "https://example.org/fork.git"\n')
    assert repository_url(pyproject) == "https://example.org/fork.git"


def test_the_cell_installs_the_repository_and_sync_rewrites_stale_cells(tmp_path) -> None:
    cell = colab_cell("https://example.org/fork.git")
    assert cell.splitlines()[:2] == [
        'REPOSITORY = "https://example.org/fork.git"  # [project.urls] in pyproject.toml; a fork: put its URL here',
        'TVGKIT_SOURCE = f"tvgkit[pretrained] @ git+{REPOSITORY}"  # a branch: add "@branch" at the end',
    ]
    path = tmp_path / "x.ipynb"
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell("# x"), nbformat.v4.new_code_cell('TVGKIT_SOURCE = "tvgkit"'),
                nbformat.v4.new_code_cell("print(1)")]
    nbformat.write(nb, path)
    assert sync([path], "https://example.org/fork.git") == [path]
    again = nbformat.read(path, as_version=4)
    assert again.cells[1].source == cell and again.cells[2].source == "print(1)"
    assert sync([path], "https://example.org/fork.git") == []  # already in step: the file is not rewritten
    assert repository_url().startswith("https://")
