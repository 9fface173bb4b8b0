"""The two environment descriptions cannot drift, and the installed command line answers."""

import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
# conda names that differ from pip names
CONDA_TO_PIP = {"pytorch": "torch"}
NOT_PACKAGES = {"python", "pip", "."}


def _name(requirement: str) -> str:
    return re.split(r"[<>=!~\[ @]", requirement.strip(), maxsplit=1)[0].lower().replace("_", "-")


def _pyproject_packages() -> set[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    reqs = list(project["dependencies"])
    for extra in project["optional-dependencies"].values():
        reqs += extra
    return {_name(r) for r in reqs}


def _environment_packages() -> set[str]:
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    names = set()
    for dep in env["dependencies"]:
        if isinstance(dep, dict):
            names |= {_name(r) for r in dep["pip"] if not r.startswith("-e")}
        else:
            names.add(CONDA_TO_PIP.get(_name(dep), _name(dep)))
    return names - NOT_PACKAGES


def test_environment_yml_lists_the_same_packages_as_pyproject():
    assert _environment_packages() == _pyproject_packages()


def test_opencv_is_the_headless_build_only():
    # opencv-python and opencv-python-headless both install `cv2` and break each other when installed together.
    assert "opencv-python" not in _pyproject_packages()
    assert "opencv-python-headless" in _pyproject_packages()


def test_cli_help_lists_the_commands():
    out = subprocess.run([sys.executable, "-m", "tvgkit", "--help"], capture_output=True, text=True, check=True)
    assert "baselines" in out.stdout


def test_package_import_stays_light():
    code = "import sys, tvgkit.runtime, tvgkit.config; print(sorted({'peft', 'transformers'} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_public_entry_points_are_kept():
    import tvgkit.data
    import tvgkit.metrics
    import tvgkit.peft
    from tvgkit.data.formats import read_charades_sta
    from tvgkit.lessons import peft

    assert callable(tvgkit.metrics.evaluate) and tvgkit.data.read_charades_sta is read_charades_sta
    assert (tvgkit.peft.apply, tvgkit.peft.count_parameters, tvgkit.peft.expected_trainable) == (
        peft.apply,
        peft.count_parameters,
        peft.expected_trainable,
    )
    assert tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"] == {"tvgkit": "tvgkit.cli:main"}


def _tvgkit_imports(path: Path) -> set[str]:
    """Every ``tvgkit...`` module a file imports (at any depth of the file), as dotted names."""
    import ast

    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("tvgkit"):
            found |= {node.module} | {f"{node.module}.{a.name}" for a in node.names}
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("tvgkit")}
    return found


# Each layer imports only the layers before it: the base <- data <- lessons <- grounding.
LAYERS = {
    "data": ("tvgkit.lessons", "tvgkit.grounding"),
    "lessons": ("tvgkit.grounding",),
}
BASE = ("runtime", "config", "metrics", "errors", "viz", "notebooks", "experiments", "budgets", "colab")


@pytest.mark.parametrize("layer", sorted(LAYERS))
def test_each_package_imports_only_the_layers_below_it(layer):
    for path in sorted((ROOT / "tvgkit" / layer).glob("*.py")):
        above = {m for m in _tvgkit_imports(path) if m.startswith(LAYERS[layer])}
        assert not above, f"{path.relative_to(ROOT)} imports {sorted(above)}"


def test_the_shared_base_imports_no_package_above_it():
    for name in BASE:
        imports = _tvgkit_imports(ROOT / "tvgkit" / f"{name}.py")
        assert not {m for m in imports if m.startswith(("tvgkit.data", "tvgkit.lessons", "tvgkit.grounding"))}, name
