"""The README's commands run as written from a fresh clone after ``make setup``.

Every line of the README's ``bash`` blocks is read as a newcomer would type it. ``tvgkit ...`` lines (also after
``torchrun ... -m``) are parsed by the kit's own argument parser, so a sub-command or option that does not exist
fails here; the cheap ones are executed (each sub-command's ``--help``, ``tvgkit runs`` in an empty folder). Scripts,
notebooks, ``make`` targets and configs a line names must exist, and every other program a line starts must be one
that the set-up installs. The example configs in ``configs/`` load through the kit's config loader, where unknown
keys are errors.
"""

from __future__ import annotations

import importlib.util
import re
import shlex
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from tvgkit import config
from tvgkit.cli import build_parser, main
from tvgkit.grounding.presets import RunConfig

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()
# Programs a README line may start with besides tvgkit and python scripts: the set-up provides each of them.
PROGRAMS = {"make", "jupyter", "tensorboard", "papermill", "conda", "source", "pip", "torchrun"}


def readme_lines() -> list[list[str]]:
    """Each command line of the README's bash blocks as shell words (comments dropped, continuations joined)."""
    lines = []
    for block in re.findall(r"```bash\n(.*?)```", README, re.S):
        for line in block.replace("\\\n", " ").splitlines():
            words = shlex.split(line, comments=True)
            while words and re.fullmatch(r"[A-Z_]+=\S*", words[0]):  # VAR=value before the program
                words = words[1:]
            if words:
                lines.append(words)
    return lines


def tvgkit_commands() -> list[list[str]]:
    """The arguments after ``tvgkit`` (or ``-m tvgkit``) of every README line that runs the kit's command."""
    found = []
    for words in readme_lines():
        if words[0] == "tvgkit":
            found.append(words[1:])
        elif "-m" in words and words[words.index("-m") + 1 :][:1] == ["tvgkit"]:
            found.append(words[words.index("-m") + 2 :])
    return found


def test_the_readme_shows_every_sub_command() -> None:
    import argparse

    (commands,) = [a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)]
    assert {args[0] for args in tvgkit_commands()} == set(commands.choices)


@pytest.mark.parametrize("args", tvgkit_commands(), ids=" ".join)
def test_each_tvgkit_line_parses_with_the_kits_parser(args) -> None:
    build_parser().parse_args(args)  # an unknown sub-command or option exits (SystemExit 2) here
    for word in args:
        if word.startswith("configs/"):
            config.load(RunConfig, ROOT / word)


@pytest.mark.parametrize("command", sorted({args[0] for args in tvgkit_commands()}))
def test_each_sub_command_answers_help(command, capsys) -> None:
    with pytest.raises(SystemExit) as done:
        main([command, "--help"])
    assert done.value.code == 0 and f"usage: tvgkit {command}" in capsys.readouterr().out


def test_tvgkit_runs_in_a_fresh_folder_says_there_is_none(tmp_path) -> None:
    assert ["runs"] in tvgkit_commands()
    done = subprocess.run(
        [sys.executable, "-m", "tvgkit", "runs"], cwd=tmp_path, capture_output=True, text=True, check=True
    )
    assert done.stdout == "no finished runs under runs\n"


def _script(words: list[str]) -> tuple[Path, list[str]] | None:
    """(script, its arguments) of a ``python path.py ...`` line; None for any other line."""
    if Path(words[0]).name != "python" or len(words) < 2 or not words[1].endswith(".py"):
        return None
    return ROOT / words[1], words[2:]


def test_every_script_notebook_and_make_target_a_line_names_exists() -> None:
    targets = set(re.findall(r"^([\w-]+):", (ROOT / "Makefile").read_text(), re.M))
    for words in readme_lines():
        script = _script(words)
        if script:
            path, args = script
            assert path.exists(), words
            if "def parse_args" in path.read_text():  # the script's own parser checks its options
                spec = importlib.util.spec_from_file_location(f"readme_{path.stem}", path)
                module = importlib.util.module_from_spec(spec)
                spec.loader.exec_module(module)
                module.parse_args(args)
        elif words[0] == "make":
            assert set(words[1:]) <= targets, words
        elif Path(words[0]).name != "python" and words[0] != "tvgkit":
            assert words[0] in PROGRAMS, f"the README runs {words[0]!r}, which the set-up does not provide"
        for word in words:
            if word.startswith(("notebooks/", "configs/", "benchmarks/")) and "*" not in word:
                assert (ROOT / word).exists(), word


def test_papermill_is_installed_by_the_setup() -> None:
    """The README's papermill line needs papermill in the extras ``make setup`` installs (and in environment.yml,
    which tests/test_packaging.py keeps in step)."""
    import nbformat

    (line,) = [w for w in readme_lines() if w[0] == "papermill"]
    notebook = nbformat.read(ROOT / line[1], as_version=4)  # papermill writes after the cell tagged "parameters"
    assert ["SIZE = None" in c.source for c in notebook.cells if "parameters" in c.metadata.get("tags", [])] == [True]
    assert line[line.index("-p") + 1] == "SIZE"
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert any(r.startswith("papermill") for r in extras["dev"])
    assert "dev" in re.search(r'pip install -q -e "\.\[([\w,]+)\]"', (ROOT / "Makefile").read_text()).group(1)


def test_the_predict_example_asks_for_what_the_demo_video_holds() -> None:
    """``tvgkit synth --video demo.mp4`` writes the first test video of the default synthetic set: the README's
    query on demo.mp4 must be one of that video's annotated queries."""
    from tvgkit.data.synthetic import SynthConfig, generate_split

    assert ["synth", "--video", "demo.mp4"] in tvgkit_commands()
    (query,) = [a[a.index("--query") + 1] for a in tvgkit_commands() if a[0] == "predict" and "demo.mp4" in a]
    _, _, records = next(generate_split(SynthConfig(), "test", 1))
    assert query in [r.query for r in records]


@pytest.mark.parametrize("path", sorted((ROOT / "configs").glob("*.yaml")), ids=lambda p: p.name)
def test_example_configs_load_and_are_pointed_to(path) -> None:
    cfg = config.load(RunConfig, path)  # unknown keys and wrong types are errors
    assert cfg.name == path.stem and f"configs/{path.name}" in README
    assert path.read_text().startswith("# ")  # commented: says what it is for


def test_the_example_configs_say_what_they_set() -> None:
    own = config.load(RunConfig, ROOT / "configs" / "own-data.yaml")
    assert (own.data.dataset, own.data.features, own.data.train, own.data.test) == (
        "files",
        "feats.hdf5",
        "train.jsonl",
        "test.jsonl",
    )
    gpu = config.load(RunConfig, ROOT / "configs" / "gpu.yaml")
    assert (gpu.train.batch_size, gpu.train.lr, gpu.train.epochs) == (256, 3e-3, 20)
    from tvgkit.grounding.presets import preset

    assert gpu == preset("gpu")  # the example is the preset tvgkit train picks on CUDA, written out
