"""Repeated runs and their summaries: what the benchmark scripts behind notebooks 03-05 share.

Every experiment table in the notebooks is made by code from a results file in ``benchmarks/results``, and every
such file says its size, its seeds and the machine it ran on (:func:`machine`). One convention for all of them: a
figure over seeds is its mean and standard error (:func:`mean_se`), and two settings differ only when their means are
more than two standard errors of the difference apart (:func:`differs`); with three seeds that is a coarse test, and
the tables say so rather than ranking settings by their third digit.
"""

from __future__ import annotations

import json
import math
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from datetime import date
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure


def mean_se(values: Sequence[float]) -> dict[str, float]:
    """Mean, standard error of the mean (sample standard deviation / sqrt(n); 0 for one value) and n."""
    values = [float(v) for v in values]
    if not values:
        raise ValueError("mean_se: no values")
    se = statistics.stdev(values) / math.sqrt(len(values)) if len(values) > 1 else 0.0
    return {"mean": statistics.fmean(values), "se": se, "n": len(values)}


def summarise(rows: Sequence[dict], by: str, figures: Sequence[str]) -> dict[str, dict[str, dict[str, float]]]:
    """group (the value of ``by``, in first-seen order) -> figure -> :func:`mean_se` over that group's rows."""
    groups: dict[str, list[dict]] = {}
    for row in rows:
        groups.setdefault(str(row[by]), []).append(row)
    return {g: {f: mean_se([r[f] for r in mine]) for f in figures} for g, mine in groups.items()}


def differs(a: dict[str, float], b: dict[str, float], k: float = 2.0) -> bool:
    """Whether two :func:`mean_se` summaries are more than ``k`` standard errors of their difference apart.

    Never for a single seed: its standard error of 0 says nothing about the spread, it is unknown.
    """
    if min(a.get("n", 2), b.get("n", 2)) < 2:
        return False
    return abs(a["mean"] - b["mean"]) > k * math.hypot(a["se"], b["se"])


def machine() -> dict[str, object]:
    """Where a benchmark ran: CPU model, cores, torch version, GPU if any, the load when it finished, and the date."""
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), cpu)
    except OSError:
        pass
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    load = round(os.getloadavg()[0], 1) if hasattr(os, "getloadavg") else None
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "torch": torch.__version__,
        "gpu": gpu,
        "load": load,
        "date": date.today().isoformat(),
    }


def where(m: dict | str) -> str:
    """A :func:`machine` record as a phrase (older results files hold a plain string)."""
    if isinstance(m, str):
        return m
    return f"{m['cpu']} ({m['cores']} cores{', ' + m['gpu'] if m.get('gpu') else ''}), torch {m['torch']}, {m['date']}"


def describe(report: dict) -> str:
    """How a results file was made: its command, then steps, seeds and the machine (from :func:`machine`)."""
    seeds = report["seeds"]
    size = f"{report['steps']} steps per run, {seeds} seed{'' if seeds == 1 else 's'}"
    return f"{report['command']}\n{size}; ran on {where(report['machine'])}"


def write_report(path: Path, script: str, start: float, fields: dict) -> dict:
    """Write a results file: the command that made it (``script`` and this process's arguments), ``fields``, the
    machine and the wall seconds since ``start`` (a ``time.perf_counter()`` value)."""
    report = {"command": " ".join(["python", script, *sys.argv[1:]]), **fields, "machine": machine()}
    report["wall_seconds"] = round(time.perf_counter() - start, 1)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=1) + "\n")
    return report


def run_parallel(
    fn: Callable[..., dict | list[dict]],
    tasks: Sequence[tuple],
    jobs: int,
    initializer: Callable | None = None,
    initargs=(),
    rows_file: Path | None = None,
) -> list:
    """``fn(*task)`` for every task, in ``jobs`` worker processes (in this one when ``jobs`` is 1), in task order.

    Processes rather than threads: each run sets its own torch thread count (one, for runs side by side on a small
    machine), and a process's peak memory is its own run's. With ``rows_file``, each result is also appended there
    as one JSON line the moment it is done, so that an interrupted hour of runs keeps what finished.
    """

    def keep(result):
        if rows_file is not None:
            with open(rows_file, "a") as f:
                f.write(json.dumps(result) + "\n")
        return result

    if jobs <= 1:
        if initializer:
            initializer(*initargs)
        return [keep(fn(*task)) for task in tasks]
    with ProcessPoolExecutor(jobs, initializer=initializer, initargs=initargs) as pool:
        futures = [pool.submit(fn, *task) for task in tasks]
        for future in as_completed(futures):
            keep(future.result())
        return [f.result() for f in futures]


def summary_frame(summary: dict[str, dict[str, dict[str, float]]], figures: Sequence[str], digits: int = 1):
    """A table of ``mean ± se`` strings, one row per group, one column per figure (the mean alone for one seed,
    whose spread is unknown)."""

    def cell(s: dict[str, float]) -> str:
        mean = f"{s['mean']:.{digits}f}"
        return mean if s.get("n", 2) < 2 else f"{mean} ± {s['se']:.{digits}f}"

    cells = {g: {f: cell(s[f]) for f in figures} for g, s in summary.items()}
    return pd.DataFrame.from_dict(cells, orient="index")


def differences(
    summary: dict[str, dict[str, dict[str, float]]], reference: str, figures: Sequence[str]
) -> pd.DataFrame:
    """Each group minus ``reference`` per figure, marked ``*`` where it exceeds two standard errors."""
    ref = summary[reference]
    cells = {
        g: {f: f"{s[f]['mean'] - ref[f]['mean']:+.1f}{' *' if differs(s[f], ref[f]) else ''}" for f in figures}
        for g, s in summary.items()
        if g != reference
    }
    return pd.DataFrame.from_dict(cells, orient="index")


def plot_bars(
    summary: dict[str, dict[str, dict[str, float]]], figures: Sequence[str], title: str = "", ylabel: str = "percent"
) -> Figure:
    """Grouped bars of each group's mean per figure, with error bars of one standard error."""
    groups = list(summary)
    width = 0.8 / len(groups)
    x = np.arange(len(figures))
    fig, ax = plt.subplots(figsize=(max(5.0, 1.6 * len(figures) + 0.25 * len(groups)), 3.4))
    for i, g in enumerate(groups):
        means = [summary[g][f]["mean"] for f in figures]
        errors = [summary[g][f]["se"] for f in figures]
        ax.bar(x + (i - (len(groups) - 1) / 2) * width, means, width, yerr=errors, capsize=3, label=g)
    ax.set_xticks(x, list(figures))
    ax.set(ylabel=ylabel, title=title)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    return fig
