"""The two environment descriptions cannot drift, and the installed command line answers."""

import re
import subprocess
import sys
import tomllib
from pathlib import Path

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
