"""Every notebook keeps the kit's shape, so that nbval comparisons hold and readers find their way.

nbval checks that outputs repeat; these checks catch what it cannot: a missing set-up call or parameters cell, a
function defined in a notebook (logic belongs in the package), outputs stored without execution counts (nbval then
errors with "Unrun reference cell has outputs"), and a missing "What we saw".
"""

import re
from pathlib import Path

import nbformat
import pytest

from tvgkit.budgets import FULL_SIZES
from tvgkit.colab import colab_cell, repository_url

NOTEBOOKS = sorted((Path(__file__).resolve().parent.parent / "notebooks").glob("[0-9][0-9]_*.ipynb"))


def test_there_are_notebooks():
    assert NOTEBOOKS and NOTEBOOKS[0].name == "00_start_here.ipynb"


@pytest.fixture(params=NOTEBOOKS, ids=lambda p: p.stem)
def notebook(request):
    return nbformat.read(request.param, as_version=4)


def _code(nb):
    return [c for c in nb.cells if c.cell_type == "code"]


def test_parameters_cell_then_setup(notebook):
    code = _code(notebook)
    params = [i for i, c in enumerate(code) if "parameters" in c.metadata.get("tags", [])]
    assert params, "a cell tagged 'parameters' is missing"
    assert "SIZE" in code[params[0]].source
    assert "setup(" in code[params[0] + 1].source, "the cell after the parameters must call tvgkit.runtime.setup"


def test_ends_with_what_we_saw(notebook):
    assert notebook.cells[-1].cell_type == "markdown"
    assert notebook.cells[-1].source.lstrip("# ").lower().startswith("what we saw")


def test_no_definitions_in_notebooks(notebook):
    for cell in _code(notebook):
        for line in cell.source.splitlines():
            assert not line.lstrip().startswith(("def ", "class ")), f"move this into tvgkit/: {line.strip()}"


def test_outputs_are_stored_with_execution_counts(notebook):
    code = _code(notebook)
    assert all(c.execution_count is not None for c in code), "re-run with `make refresh-notebooks`"
    assert [c.execution_count for c in code] == list(range(1, len(code) + 1)), "cells were run out of order"


NBVAL_MARKERS = {"NBVAL_IGNORE_OUTPUT", "NBVAL_CHECK_OUTPUT", "NBVAL_SKIP", "NBVAL_RAISES_EXCEPTION"}


def test_nbval_markers_are_exact(notebook):
    # nbval only honours a comment that is exactly the marker: "# NBVAL_IGNORE_OUTPUT  (why)" is silently ignored.
    for cell in _code(notebook):
        for line in cell.source.splitlines():
            text = line.strip().lstrip("#").strip()
            if line.strip().startswith("#") and text.startswith("NBVAL"):
                assert text in NBVAL_MARKERS, line


def test_colab_cell_installs_from_the_repository_in_pyproject(notebook):
    colab = [c for c in _code(notebook) if "google.colab" in c.source]
    assert len(colab) == 1, "one Colab cell, the first code cell"
    assert colab[0] is _code(notebook)[0]
    url = repository_url()
    assert url.startswith("https://") and "USER" not in url
    # exactly the generated cell (python -m tvgkit.colab notebooks/*.ipynb rewrites it after the URL changes)
    assert colab[0].source == colab_cell(url)
    lines = colab[0].source.splitlines()
    assert lines[0] == f'REPOSITORY = "{url}"  # [project.urls] in pyproject.toml; a fork: put its URL here'
    assert lines[1].startswith('TVGKIT_SOURCE = f"tvgkit[pretrained] @ git+{REPOSITORY}"')  # never the PyPI name
    pip = [line.strip() for line in lines if "pip" in line and "install" in line]
    assert pip == ['!pip -q install "{TVGKIT_SOURCE}"']


def test_readme_names_the_repository_of_pyproject():
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    assert f"git+{repository_url()}" in readme and "USER/tvgkit" not in readme


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_setup_names_the_notebook_for_its_full_size_budget(path):
    assert sorted(FULL_SIZES) == [p.stem for p in NOTEBOOKS]  # every notebook has a budget, no stale entries
    setup_cells = [c.source for c in _code(nbformat.read(path, as_version=4)) if "setup(size=SIZE" in c.source]
    assert len(setup_cells) == 1 and re.findall(r'notebook="([^"]+)"', setup_cells[0]) == [path.stem]


def test_no_warning_in_stored_outputs(notebook):
    # Library warnings in stored outputs are noise to a reader; silence them in tvgkit.runtime.setup().
    for cell in _code(notebook):
        for out in cell.get("outputs", []):
            text = out.get("text", "") + str(out.get("data", {}).get("text/plain", ""))
            assert not re.search(r"\w+Warning\b", text), text[:200]
