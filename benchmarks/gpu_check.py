"""GPU readiness check: the CUDA tests, the unit suite with CUDA visible, a full-size grounding run, and every
notebook at full size, timed against its budget.

Needs a CUDA GPU (without one it prints one line and exits with status 2). Four steps, each timed:

1. ``pytest -m cuda tests/test_cuda.py`` in a subprocess: passed / failed / skipped counts (from its JUnit XML);
2. the unit suite with the GPU visible, ``pytest tests`` (``-n 4`` when pytest-xdist is installed; test_cuda.py is
   step 1): the counts and the names of failed tests (every unit test must pass where CUDA is visible);
3. the grounding run of a preset, by default ``gpu`` (what ``tvgkit train`` runs on CUDA: the quick default's data
   in batches of 256; its goal is at least 10,000 training samples/s on an H200-class GPU with test R1@0.5 >= 80;
   ``--preset full``, or ``--quick`` for the CPU-sized quick default): data seconds, train seconds, training
   samples/s, peak GPU memory (``torch.cuda.max_memory_allocated``), test R1@0.5 / R1@0.7 / mIoU;
4. each ``notebooks/NN_*.ipynb`` at ``TVGKIT_SIZE=full``: through papermill (``-p SIZE full``) when it is installed,
   else ``tvgkit.notebooks.execute(path, inplace=False, size="full")`` when nbclient and ipykernel are, else cell by
   cell as plain Python (``python -m tvgkit.notebooks --plain``), each in its own process group with a per-notebook
   timeout. Each row has the notebook's budget (``tvgkit.budgets``), whether it kept to it, and the ``verdict:``
   lines it printed (at full size a notebook reports its findings instead of asserting them). Stored notebooks are
   never rewritten, and ``figures/`` is put back as it was afterwards.

A total budget (``--budget-s``, default 1800) is checked before every step and every notebook: what no longer fits
is skipped with a note, and the grounding run stops at the first optimiser step past the budget. Prints a table,
writes ``benchmarks/results/gpu_check.json`` (device, versions, every step; rewritten after each step, so a killed
check leaves what it measured) and prints that object as the last line.
Exit status: 0 when every step that ran succeeded, 1 otherwise, 2 without CUDA.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import importlib.util
import json
import math
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
import traceback
import xml.etree.ElementTree as ET
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results" / "gpu_check.json"
NO_CUDA = "gpu_check: error: needs a CUDA GPU (torch.cuda.is_available() is False); nothing was run"
STEPS = ("tests", "unit", "grounding", "notebooks")


class Budget:
    """Seconds left of a total budget that started when this object was made."""

    def __init__(self, seconds: float, clock=time.monotonic) -> None:
        self.seconds, self.clock, self.start = seconds, clock, clock()

    def used(self) -> float:
        return self.clock() - self.start

    def left(self) -> float:
        return self.seconds - self.used()

    def exceeded(self) -> bool:
        return self.left() <= 0


class BudgetExceeded(Exception):
    """Raised from the trainer's ``on_step`` hook once the budget is spent."""


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python benchmarks/gpu_check.py",
        description=__doc__.splitlines()[0],
        epilog="Needs a CUDA GPU; exits with status 2 without one.",
    )
    parser.add_argument(
        "--preset", default="gpu", help="the grounding run's preset: gpu (default), quick or full (tvgkit --preset)"
    )
    parser.add_argument("--quick", action="store_const", const="quick", dest="preset", help="same as --preset quick")
    parser.add_argument("--budget-s", type=float, default=1800.0, help="total seconds; later steps skip (default 1800)")
    parser.add_argument(
        "--notebook-timeout", type=float, default=300.0, help="seconds per notebook, capped by the budget left"
    )
    parser.add_argument("--skip", action="append", default=[], choices=STEPS, help="leave a step out (repeatable)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="grounding-run override")
    parser.add_argument("--notebooks-out", type=Path, help="keep papermill's executed notebooks in this folder")
    parser.add_argument("--json-out", type=Path, default=RESULTS, help=f"default {RESULTS.relative_to(ROOT)}")
    return parser.parse_args(argv)


# --- device ---


def device_info() -> dict:
    import torch

    import tvgkit
    from tvgkit.runtime import amp_dtype

    props = torch.cuda.get_device_properties(0)
    return {
        "gpu": torch.cuda.get_device_name(0),
        "gpu_count": torch.cuda.device_count(),
        "capability": f"{props.major}.{props.minor}",
        "gpu_memory_gb": round(props.total_memory / 2**30, 1),
        "bf16_native": amp_dtype() == torch.bfloat16,
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version(),
        "python": platform.python_version(),
        "tvgkit": tvgkit.__version__,
        "cpu_cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
    }


# --- processes ---


def run_process(cmd: list[str], timeout: float, env: dict | None = None, cwd: Path = ROOT) -> tuple[int | None, str]:
    """(exit status, or None on timeout; stdout + stderr).

    The command runs in its own process group; on timeout the whole group gets SIGTERM, then SIGKILL 10 s later.
    (A Jupyter kernel starts its own session, but it exits by itself once its parent is gone.)
    """
    proc = subprocess.Popen(
        cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True
    )
    try:
        out, _ = proc.communicate(timeout=max(1.0, timeout))
        return proc.returncode, out
    except subprocess.TimeoutExpired:
        for sig, wait in ((signal.SIGTERM, 10), (signal.SIGKILL, 10)):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, sig)
            try:
                out, _ = proc.communicate(timeout=wait)
                break
            except subprocess.TimeoutExpired:
                out = ""
        return None, out or ""


def junit_counts(path: Path) -> dict:
    """passed / failed / errors / skipped / total from a pytest JUnit XML file, and the distinct skip reasons."""
    root = ET.parse(path).getroot()
    suites = [root] if root.tag == "testsuite" else list(root.iter("testsuite"))
    counts: dict = {"total": 0, "failed": 0, "errors": 0, "skipped": 0}
    for suite in suites:
        counts["total"] += int(suite.get("tests", 0))
        counts["failed"] += int(suite.get("failures", 0))
        counts["errors"] += int(suite.get("errors", 0))
        counts["skipped"] += int(suite.get("skipped", 0))
    counts["passed"] = counts["total"] - counts["failed"] - counts["errors"] - counts["skipped"]
    counts["skip_reasons"] = sorted({s.get("message", "") for s in root.iter("skipped")})
    counts["failed_tests"] = [
        f"{case.get('classname', '')}::{case.get('name', '')}"
        for case in root.iter("testcase")
        if case.find("failure") is not None or case.find("error") is not None
    ]
    return counts


def python_env(**extra: str) -> dict[str, str]:
    """This environment, with the repository first on PYTHONPATH (its tvgkit wins over an installed one)."""
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
    return {**os.environ, "PYTHONPATH": path, **extra}


# --- steps 1 and 2: the CUDA tests, the unit suite ---


def pytest_step(budget: Budget, args: list[str]) -> dict:
    """``pytest ARGS`` in a subprocess: status, exit, seconds and the JUnit counts (with failed test names)."""
    with tempfile.TemporaryDirectory(prefix="gpu-check-") as tmp:
        xml = Path(tmp) / "junit.xml"
        cmd = [sys.executable, "-m", "pytest", *args, "-q", "-rfEs", "-p", "no:cacheprovider", f"--junitxml={xml}"]
        start = time.perf_counter()
        code, out = run_process(cmd, budget.left(), python_env())
        seconds = time.perf_counter() - start
        tail = out[-2000:]
        if code is None:
            return {"status": "timeout", "seconds": round(seconds, 1), "output_tail": tail}
        if not xml.exists():
            return {"status": "error", "exit": code, "seconds": round(seconds, 1), "output_tail": tail}
        counts = junit_counts(xml)
    ok = code == 0 and counts["failed"] == counts["errors"] == 0 and counts["passed"] > 0
    result = {"status": "ok" if ok else "failed", "exit": code, "seconds": round(seconds, 1), **counts}
    if not ok:
        result["output_tail"] = tail
    return result


def step_tests(budget: Budget) -> dict:
    return pytest_step(budget, ["-m", "cuda", "tests/test_cuda.py"])


def unit_args(xdist: bool) -> list[str]:
    """The unit suite with CUDA visible: every test but the CUDA ones (step 1), four workers with pytest-xdist."""
    return ["tests", "--ignore=tests/test_cuda.py", *(["-n", "4"] if xdist else [])]


def step_unit(budget: Budget) -> dict:
    xdist = importlib.util.find_spec("xdist") is not None
    return {**pytest_step(budget, unit_args(xdist)), "workers": 4 if xdist else 1}


# --- step 3: the grounding run ---


def step_grounding(budget: Budget, preset_name: str, overrides: list[str], runs_dir: Path) -> dict:
    import torch

    from tvgkit.grounding.presets import preset
    from tvgkit.grounding.splits import load_splits
    from tvgkit.grounding.train import train

    cfg = preset(preset_name, ["name=gpu-check", f"runs_dir={runs_dir}", "train.device=cuda", *overrides])
    result: dict = {"preset": preset_name, "overrides": overrides}
    start = time.perf_counter()
    splits = load_splits(cfg.data, progress=False)
    result["data_seconds"] = round(time.perf_counter() - start, 1)
    if budget.exceeded():
        return {**result, "status": "skipped", "note": "budget spent while rendering the data"}

    def stop_past_budget(step: int, epoch: int) -> None:
        if budget.exceeded():
            raise BudgetExceeded(f"budget spent at step {step} (epoch {epoch})")

    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    try:
        run = train(cfg, progress=False, splits=splits, on_step=stop_past_budget)
    except BudgetExceeded as stop:
        result.update(status="stopped", note=str(stop))
    else:
        torch.cuda.synchronize()
        test = run.metrics["test"]
        finite = all(math.isfinite(v) for v in test.values())
        result.update(
            status="ok" if finite else "failed",
            train_seconds=round(run.train_seconds, 1),
            samples_per_second=run.samples_per_second,
            steps=run.metrics["steps"],
            n_train=run.metrics["n_train"],
            **{k: round(test[k], 2) for k in ("R1@0.5", "R1@0.7", "mIoU")},
        )
    result["wall_seconds"] = round(time.perf_counter() - start, 1)  # train + validation + test
    result["peak_gpu_memory_mb"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
    result["peak_gpu_reserved_mb"] = round(torch.cuda.max_memory_reserved() / 2**20, 1)
    gc.collect()
    torch.cuda.empty_cache()  # the notebooks' kernels come next and need the memory more than this process
    return result


# --- step 4: the notebooks ---


def notebook_runner() -> str:
    """papermill when installed; else nbclient (needs nbformat and ipykernel too); else plain Python cells."""
    if importlib.util.find_spec("papermill") is not None:
        return "papermill"
    if all(importlib.util.find_spec(m) is not None for m in ("nbclient", "nbformat", "ipykernel")):
        return "nbclient"
    return "plain"


def notebook_command(path: Path, out_dir: Path, timeout: float, runner: str) -> list[str]:
    """The command that executes ``path`` at full size and writes nothing back to it."""
    if runner == "papermill":
        cmd = [sys.executable, "-m", "papermill", str(path), str(out_dir / path.name), "-p", "SIZE", "full"]
        return [*cmd, "--cwd", str(path.parent), "--execution-timeout", str(int(timeout)), "--no-progress-bar"]
    if runner == "plain":
        return [sys.executable, "-m", "tvgkit.notebooks", "--plain", "--size", "full", str(path)]
    code = "import sys; from tvgkit.notebooks import execute; execute(sys.argv[1], False, int(sys.argv[2]), 'full', "
    code += "sys.argv[3])"
    return [sys.executable, "-c", code, str(path), str(int(timeout)), str(out_dir / path.name)]


def verdicts(output: str, executed: Path | None = None) -> list[str]:
    """The ``verdict:`` lines a notebook printed at full size (:meth:`tvgkit.runtime.Session.expect`): in the
    process output (plain runner) or in the executed notebook's stream outputs (papermill, nbclient)."""
    texts = [output]
    if executed is not None and executed.exists():
        cells = json.loads(executed.read_text())["cells"]
        for cell in cells:
            for out in cell.get("outputs", []):
                text = out.get("text", "")
                texts.append("".join(text) if isinstance(text, list) else text)
    return [line.strip() for text in texts for line in text.splitlines() if line.strip().startswith("verdict:")]


@contextlib.contextmanager
def files_kept(folder: Path):
    """Put every file under ``folder`` back as it was on the way out, and remove files added meanwhile.

    The notebooks save their figures into the repository's ``figures/``, at full size too; the committed ones are
    the quick-size figures. Files are compared by content, so unchanged ones are not even rewritten.
    """
    before = {p: p.read_bytes() for p in folder.rglob("*") if p.is_file()} if folder.is_dir() else {}
    try:
        yield
    finally:
        now = {p for p in folder.rglob("*") if p.is_file()} if folder.is_dir() else set()
        for path in now - before.keys():
            path.unlink()
        for path, data in before.items():
            if not path.is_file() or path.read_bytes() != data:
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(data)


def step_notebooks(
    budget: Budget, timeout: float, out_dir: Path, notebooks: list[Path] | None = None, figures: Path = ROOT / "figures"
) -> dict:
    from tvgkit.budgets import FULL_SIZES

    runner = notebook_runner()
    paths = notebooks if notebooks is not None else sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
    env = python_env(TVGKIT_SIZE="full", TQDM_DISABLE="1", MPLBACKEND="Agg", PYTHONHASHSEED="0")
    rows: list[dict] = []
    out_dir.mkdir(parents=True, exist_ok=True)
    with files_kept(figures):
        for path in paths:
            left = budget.left()
            if left < 5:
                rows.append({"notebook": path.stem, "status": "skipped", "note": "total budget spent"})
                continue
            limit = min(timeout, left)
            start = time.perf_counter()
            code, out = run_process(notebook_command(path, out_dir, limit, runner), limit, env, cwd=path.parent)
            row = {"notebook": path.stem, "seconds": round(time.perf_counter() - start, 1)}
            if path.stem in FULL_SIZES:
                row["budget_s"] = FULL_SIZES[path.stem].h200_s
                row["within_budget"] = code is not None and row["seconds"] <= row["budget_s"]
            if code is None:
                row.update(status="timeout", note=f"stopped after {limit:.0f} s")
            elif code != 0:
                row.update(status="failed", exit=code, output_tail=out[-2000:])
            else:
                row["status"] = "ok"
            row["verdicts"] = verdicts(out, out_dir / path.name)
            rows.append(row)
    statuses = {r["status"] for r in rows}
    status = "failed" if "failed" in statuses or not rows else "incomplete" if statuses - {"ok"} else "ok"
    return {"status": status, "runner": runner, "rows": rows}


# --- report ---

FAILED = ("failed", "error")  # something is broken: exit status 1
INCOMPLETE = ("stopped", "timeout", "skipped", "incomplete")  # the budget or --skip left something out


def overall(steps: dict[str, dict]) -> str:
    """The overall status: ok, "ok, incomplete: ..." (budget notes only) or "failed: ..." (exit status 1)."""
    failed = [name for name, r in steps.items() if r["status"] in FAILED]
    left_out = [f"{name} ({r['status']})" for name, r in steps.items() if r["status"] in INCOMPLETE]
    if failed:
        return "failed: " + ", ".join(failed)
    return "ok" if not left_out else "ok, incomplete: " + ", ".join(left_out)


def finite_or_none(value):
    """The report with NaN/Inf floats as None, so the file is strict JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: finite_or_none(v) for k, v in value.items()}
    if isinstance(value, list):
        return [finite_or_none(v) for v in value]
    return value


def table(report: dict) -> str:
    lines = []
    dev = report.get("device", {})
    lines.append(f"{dev.get('gpu')} | torch {dev.get('torch')} | CUDA {dev.get('cuda')} | bf16 {dev.get('bf16')}")
    steps = report["steps"]
    tests = steps.get("tests", {})
    if tests.get("status") in ("ok", "failed") and "total" in tests:
        counts = ", ".join(f"{tests[k]} {k}" for k in ("passed", "failed", "errors", "skipped"))
        lines.append(f"\n1. CUDA tests: {tests['status']} ({counts}) in {tests['seconds']} s")
    else:
        lines.append(f"\n1. CUDA tests: {tests.get('status', '?')} {tests.get('note', '')}".rstrip())
    unit = steps.get("unit", {})
    if "total" in unit:
        counts = ", ".join(f"{unit[k]} {k}" for k in ("passed", "failed", "errors", "skipped"))
        lines.append(f"\n2. unit suite, CUDA visible: {unit['status']} ({counts}) in {unit['seconds']} s")
        lines += [f"   failed: {name}" for name in unit.get("failed_tests", [])]
    else:
        lines.append(f"\n2. unit suite, CUDA visible: {unit.get('status', '?')} {unit.get('note', '')}".rstrip())
    g = steps.get("grounding", {})
    lines.append(f"\n3. grounding run ({g.get('preset', '?')}): {g.get('status', '?')} {g.get('note', '')}".rstrip())
    for key, unit in [
        ("data_seconds", "s"),
        ("train_seconds", "s"),
        ("samples_per_second", "samples/s"),
        ("peak_gpu_memory_mb", "MB"),
        ("R1@0.5", ""),
        ("R1@0.7", ""),
        ("mIoU", ""),
    ]:
        if key in g:
            lines.append(f"   {key:<22}{g[key]!s:>12} {unit}".rstrip())
    nb = steps.get("notebooks", {})
    lines.append(f"\n4. notebooks at full size ({nb.get('runner', '-')}): {nb.get('status', '?')} {nb.get('note', '')}")
    for row in nb.get("rows", []):
        seconds = f"{row['seconds']:.1f} s" if "seconds" in row else "-"
        budget = f"budget {row['budget_s']} s" if "budget_s" in row else ""
        status = f"{row['status']} {row.get('note', '')}".rstrip()
        lines.append(f"   {row['notebook']:<36}{seconds:>10} {budget:>14}  {status}")
        lines += [f"      {v}" for v in row.get("verdicts", [])]
    lines.append(f"\ntotal {report['seconds']} s of a {report['budget_s']:.0f} s budget: {report['status']}")
    return "\n".join(lines)


def write_json(path: Path, report: dict) -> None:
    """The report as strict JSON; rewritten after every step, so a killed check still leaves what it measured."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(finite_or_none(report), indent=1) + "\n")


def run_step(step: str, args: argparse.Namespace, budget: Budget, tmp: Path) -> dict:
    """One step; an exception (a CUDA error, out of memory, a NaN stop) becomes an "error" entry, not a crash."""
    try:
        if step == "tests":
            return step_tests(budget)
        if step == "unit":
            return step_unit(budget)
        if step == "grounding":
            return step_grounding(budget, args.preset, args.set, tmp / "runs")
        return step_notebooks(budget, args.notebook_timeout, args.notebooks_out or tmp / "notebooks")
    except Exception as err:  # the report must still be written
        note = f"{type(err).__name__}: {err}"[:500]
        return {"status": "error", "note": note, "traceback": traceback.format_exc()[-2000:]}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    import torch

    if not torch.cuda.is_available():
        print(NO_CUDA, file=sys.stderr)
        return 2
    budget = Budget(args.budget_s)
    report: dict = {"device": device_info(), "budget_s": args.budget_s, "steps": {}}
    with tempfile.TemporaryDirectory(prefix="gpu-check-runs-") as tmp:
        for step in STEPS:
            if step in args.skip:
                report["steps"][step] = {"status": "skipped", "note": "--skip"}
            elif budget.exceeded():
                report["steps"][step] = {"status": "skipped", "note": f"total budget of {args.budget_s:.0f} s spent"}
            else:
                report["steps"][step] = run_step(step, args, budget, Path(tmp))
            print(f"[{budget.used():6.0f} s] {step}: {report['steps'][step]['status']}", file=sys.stderr, flush=True)
            write_json(args.json_out, {**report, "status": "running", "seconds": round(budget.used(), 1)})
    report["seconds"] = round(budget.used(), 1)
    report["status"] = overall(report["steps"])
    report = finite_or_none(report)
    print(table(report))
    write_json(args.json_out, report)
    print(json.dumps(report))
    return 1 if report["status"].startswith("failed") else 0


if __name__ == "__main__":
    sys.exit(main())
