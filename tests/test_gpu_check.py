"""``benchmarks/gpu_check.py`` and the ``cuda`` marker, checked without a GPU.

No GPU has run gpu_check yet, so its parts are exercised here on the CPU: the refusal without CUDA, the CUDA tests
skipping with their reason, the JUnit counting, the process-group timeout, the notebook runner and its budget guard,
the grounding step (with ``torch.cuda``'s memory counters stubbed and the tiny preset on the CPU) and the report.
``CUDA_VISIBLE_DEVICES=""`` hides any GPU from the subprocesses, so these tests mean the same on a GPU machine.
"""

from __future__ import annotations

import ast
import importlib.util
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "gpu_check.py"
NO_GPU = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "PYTHONPATH": str(ROOT)}

spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
gpu_check = importlib.util.module_from_spec(spec)
spec.loader.exec_module(gpu_check)


def _cuda_tests() -> list[str]:
    tree = ast.parse((ROOT / "tests" / "test_cuda.py").read_text())
    return [n.name for n in tree.body if isinstance(n, ast.FunctionDef) and n.name.startswith("test_")]


def test_cuda_tests_are_selected_by_the_marker_and_skip_without_a_gpu(monkeypatch) -> None:
    """gpu_check's own test step, with the GPU hidden: every CUDA test is collected by ``-m cuda`` and skipped."""
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    result = gpu_check.step_tests(gpu_check.Budget(1200))
    assert "total" in result, result  # "timeout" here means pytest did not even start within the budget
    names = _cuda_tests()
    assert len(names) >= 5
    assert result["total"] == result["skipped"] == len(names), result  # none deselected: all carry the marker
    assert result["skip_reasons"] == ["needs a CUDA GPU"]
    assert result["passed"] == result["failed"] == result["errors"] == 0
    assert result["status"] == "failed"  # on a machine that should have a GPU, nothing passing is a failure


def test_the_marker_is_registered() -> None:
    import tomllib

    markers = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["pytest"]["ini_options"]["markers"]
    assert any(m.startswith("cuda:") for m in markers)


def test_help_works_without_a_gpu() -> None:
    out = subprocess.run([sys.executable, str(SCRIPT), "--help"], env=NO_GPU, capture_output=True, text=True)
    assert out.returncode == 0 and "--budget-s" in out.stdout and "--quick" in out.stdout


def test_refuses_without_cuda_in_one_line_and_writes_nothing(tmp_path) -> None:
    target = tmp_path / "gpu_check.json"
    cmd = [sys.executable, str(SCRIPT), "--json-out", str(target)]
    out = subprocess.run(cmd, env=NO_GPU, capture_output=True, text=True, timeout=300)
    assert out.returncode == 2
    assert out.stderr.strip().splitlines() == [gpu_check.NO_CUDA] and out.stdout == ""
    assert not target.exists()


def test_junit_counts_and_skip_reasons(tmp_path) -> None:
    xml = tmp_path / "j.xml"
    xml.write_text(
        '<testsuites><testsuite name="pytest" tests="5" failures="1" errors="1" skipped="1">'
        '<testcase name="a"/><testcase name="b"><failure message="x"/></testcase><testcase name="c"><error/></testcase>'
        '<testcase name="d"><skipped type="pytest.skip" message="needs a CUDA GPU"/></testcase><testcase name="e"/>'
        "</testsuite></testsuites>"
    )
    counts = gpu_check.junit_counts(xml)
    assert counts.pop("skip_reasons") == ["needs a CUDA GPU"]
    assert counts.pop("failed_tests") == ["::b", "::c"]
    assert counts == {"total": 5, "failed": 1, "errors": 1, "skipped": 1, "passed": 2}


def test_budget_and_overall_status() -> None:
    now = [100.0]
    budget = gpu_check.Budget(10, clock=lambda: now[0])
    assert budget.left() == 10 and not budget.exceeded()
    now[0] = 110.0
    assert budget.exceeded() and budget.used() == 10
    assert gpu_check.overall({"tests": {"status": "ok"}, "grounding": {"status": "ok"}}) == "ok"
    incomplete = gpu_check.overall({"tests": {"status": "ok"}, "notebooks": {"status": "incomplete"}})
    assert incomplete == "ok, incomplete: notebooks (incomplete)"
    assert gpu_check.overall({"tests": {"status": "failed"}, "grounding": {"status": "stopped"}}) == "failed: tests"
    assert gpu_check.finite_or_none({"a": [float("nan"), 1.0], "b": float("inf")}) == {"a": [None, 1.0], "b": None}


def test_a_timeout_ends_the_whole_process_group(tmp_path) -> None:
    pid_file = tmp_path / "pid"
    script = f"sleep 120 & echo $! > {pid_file}; wait"
    start = time.monotonic()
    code, _ = gpu_check.run_process(["bash", "-c", script], timeout=2, cwd=tmp_path)
    assert code is None and time.monotonic() - start < 30
    child = int(pid_file.read_text())
    time.sleep(0.5)
    assert not Path(f"/proc/{child}").exists() or "Z" in Path(f"/proc/{child}/stat").read_text().split()[2]


def _notebook(path: Path, code: str) -> Path:
    nb = nbformat.v4.new_notebook()
    params = nbformat.v4.new_code_cell("SIZE = None")
    params.metadata["tags"] = ["parameters"]
    nb.cells = [params, nbformat.v4.new_code_cell(code)]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, path)
    return path


def test_notebooks_run_at_full_size_with_a_timeout_and_leave_files_as_they_were(tmp_path) -> None:
    figures = tmp_path / "figures"
    figures.mkdir()
    (figures / "kept.png").write_bytes(b"quick")
    write = f"from pathlib import Path; Path({str(figures)!r}, 'kept.png').write_bytes(b'full'); "
    write += f"Path({str(figures)!r}, 'new.png').write_bytes(b'new')"
    check = "print('verdict: size full -> holds')"
    ok = _notebook(tmp_path / "01_ok.ipynb", f"import os; assert os.environ['TVGKIT_SIZE'] == 'full'\n{write}\n{check}")
    bad = _notebook(tmp_path / "03_bad.ipynb", "raise ValueError('broken')")
    stored = ok.read_bytes()
    result = gpu_check.step_notebooks(gpu_check.Budget(600), 240, tmp_path / "out", [ok, bad], figures)
    rows = {r["notebook"]: r for r in result["rows"]}
    assert rows["01_ok"]["status"] == "ok", rows["01_ok"]
    assert rows["01_ok"]["verdicts"] == ["verdict: size full -> holds"]
    assert rows["03_bad"]["status"] == "failed" and "broken" in rows["03_bad"]["output_tail"]
    assert result["status"] == "failed"
    assert ok.read_bytes() == stored  # the notebook itself is not rewritten
    assert sorted(p.name for p in figures.iterdir()) == ["kept.png"] and (figures / "kept.png").read_bytes() == b"quick"

    slow = _notebook(tmp_path / "02_slow.ipynb", "import time; time.sleep(600)")
    late = gpu_check.step_notebooks(gpu_check.Budget(600), 10, tmp_path / "out", [slow], figures)
    assert late["rows"][0]["status"] == "timeout" and late["rows"][0]["seconds"] < 60 and late["status"] == "incomplete"
    spent = gpu_check.step_notebooks(gpu_check.Budget(0), 20, tmp_path / "out", [ok], figures)
    assert spent["rows"] == [{"notebook": "01_ok", "status": "skipped", "note": "total budget spent"}]
    assert spent["status"] == "incomplete"


def test_papermill_command_fills_the_parameters_cell(tmp_path) -> None:
    cmd = gpu_check.notebook_command(tmp_path / "nb" / "05_x.ipynb", tmp_path / "out", 99.7, "papermill")
    assert cmd[1:5] == ["-m", "papermill", str(tmp_path / "nb" / "05_x.ipynb"), str(tmp_path / "out" / "05_x.ipynb")]
    assert " ".join(cmd).count("-p SIZE full") == 1 and cmd[cmd.index("--cwd") + 1] == str(tmp_path / "nb")
    assert cmd[cmd.index("--execution-timeout") + 1] == "99"


@pytest.fixture
def no_cuda_counters(monkeypatch):
    """The grounding step reads torch.cuda's memory counters; on the CPU they are stubbed to zero."""
    for name in ("reset_peak_memory_stats", "synchronize", "empty_cache"):
        monkeypatch.setattr(torch.cuda, name, lambda *a, **k: None)
    for name in ("max_memory_allocated", "max_memory_reserved"):
        monkeypatch.setattr(torch.cuda, name, lambda *a, **k: 0)


def test_grounding_step_reports_the_run_and_stops_at_the_budget(tmp_path, monkeypatch, no_cuda_counters) -> None:
    from tvgkit.grounding.presets import PRESETS

    monkeypatch.setenv("TVGKIT_CACHE", str(tmp_path / "cache"))
    overrides = [*PRESETS["tiny"], "train.device=cpu"]  # after gpu_check's train.device=cuda: this one wins
    result = gpu_check.step_grounding(gpu_check.Budget(600), "quick", overrides, tmp_path / "runs")
    assert result["status"] == "ok" and result["preset"] == "quick", result
    assert result["steps"] == 4 and result["samples_per_second"] > 0 and result["peak_gpu_memory_mb"] == 0
    assert {"R1@0.5", "R1@0.7", "mIoU", "train_seconds", "data_seconds", "wall_seconds"} <= result.keys()
    json.dumps(result)

    class OneCheck(gpu_check.Budget):  # enough budget for the data, spent at the first optimiser step
        calls = 0

        def exceeded(self) -> bool:
            self.calls += 1
            return self.calls > 1

    stopped = gpu_check.step_grounding(OneCheck(600), "quick", overrides, tmp_path / "runs")
    assert stopped["status"] == "stopped" and stopped["note"] == "budget spent at step 1 (epoch 0)"


def test_table_reads_a_partial_report() -> None:
    report = {
        "device": {"gpu": "NVIDIA X", "torch": "2.x", "cuda": "12.x", "bf16": True},
        "budget_s": 480.0,
        "seconds": 12.3,
        "status": "failed: tests",
        "steps": {
            "tests": {"status": "failed", "exit": 1, "seconds": 9.0, "total": 6, "failed": 1, "errors": 0,
                      "skipped": 0, "passed": 5},
            "grounding": {"status": "failed", "preset": "full", "samples_per_second": 123.4, "R1@0.5": None},
            "notebooks": {"status": "incomplete", "runner": "papermill",
                          "rows": [{"notebook": "00_start_here", "status": "ok", "seconds": 3.2},
                                   {"notebook": "01_x", "status": "skipped", "note": "total budget spent"}]},
        },
    }  # fmt: skip
    text = gpu_check.table(report)
    assert "5 passed, 1 failed" in text and "00_start_here" in text and "total budget spent" in text
    assert "NVIDIA X" in text and "failed: tests" in text and "123.4 samples/s" in text  # a NaN metric (None) too


def test_a_step_that_raises_is_an_error_entry_not_a_crash(monkeypatch, tmp_path) -> None:
    def oom(*args, **kwargs):
        raise RuntimeError("CUDA out of memory")

    monkeypatch.setattr(gpu_check, "step_grounding", oom)
    args = gpu_check.parse_args(["--quick"])
    assert args.preset == "quick" and gpu_check.parse_args([]).preset == "gpu"  # by default what CUDA trains
    entry = gpu_check.run_step("grounding", args, gpu_check.Budget(10), tmp_path)
    assert entry["status"] == "error" and entry["note"] == "RuntimeError: CUDA out of memory"
    assert gpu_check.overall({"grounding": entry}) == "failed: grounding"


def test_plain_runner_executes_cells_without_a_kernel(tmp_path, monkeypatch) -> None:
    # the first GPU machine had no nbclient, ipykernel or papermill: cells run as plain Python, !pip lines skipped
    monkeypatch.setattr(gpu_check, "notebook_runner", lambda: "plain")
    code = "import os\nif False:\n    !pip -q install x\nprint('verdict: a -> holds')"
    nb = _notebook(tmp_path / "07_plain.ipynb", code)
    result = gpu_check.step_notebooks(gpu_check.Budget(600), 120, tmp_path / "out", [nb], tmp_path / "figures")
    (row,) = result["rows"]
    assert result["runner"] == "plain" and row["status"] == "ok", row
    assert row["verdicts"] == ["verdict: a -> holds"]
    assert gpu_check.notebook_command(nb, tmp_path, 10, "plain")[1:] == [
        "-m", "tvgkit.notebooks", "--plain", "--size", "full", str(nb)
    ]


def test_a_real_notebook_row_carries_its_budget(tmp_path) -> None:
    from tvgkit.budgets import FULL_SIZES

    nb = _notebook(tmp_path / "00_start_here.ipynb", "print('verdict: x -> does NOT hold at this size')")
    (row,) = gpu_check.step_notebooks(gpu_check.Budget(600), 120, tmp_path / "out", [nb], tmp_path / "f")["rows"]
    assert row["budget_s"] == FULL_SIZES["00_start_here"].h200_s and row["within_budget"] is True
    assert row["verdicts"] == ["verdict: x -> does NOT hold at this size"]


def test_the_unit_step_runs_the_suite_with_four_workers_when_xdist_is_there(tmp_path) -> None:
    assert gpu_check.unit_args(True) == ["tests", "--ignore=tests/test_cuda.py", "-n", "4"]
    assert gpu_check.unit_args(False) == ["tests", "--ignore=tests/test_cuda.py"]
    xml = tmp_path / "j.xml"
    xml.write_text(
        '<testsuites><testsuite tests="3" failures="1" errors="1" skipped="0">'
        '<testcase classname="tests.test_a" name="test_ok"/>'
        '<testcase classname="tests.test_a" name="test_bad"><failure message="x"/></testcase>'
        '<testcase classname="tests.test_b" name="test_err"><error message="y"/></testcase>'
        "</testsuite></testsuites>"
    )
    counts = gpu_check.junit_counts(xml)
    assert counts["failed_tests"] == ["tests.test_a::test_bad", "tests.test_b::test_err"] and counts["passed"] == 1
