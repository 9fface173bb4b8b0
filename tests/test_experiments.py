"""tvgkit.experiments: the statistics every experiment table uses, checked against hand-computed cases."""

from __future__ import annotations

import json
import math

import matplotlib.pyplot as plt
import pytest

from tvgkit import experiments as ex


def test_mean_se_by_hand():
    s = ex.mean_se([1, 2, 3])  # sample std 1, so se = 1 / sqrt(3)
    assert s == {"mean": 2.0, "se": pytest.approx(1 / math.sqrt(3)), "n": 3}
    assert ex.mean_se([5.0]) == {"mean": 5.0, "se": 0.0, "n": 1}
    with pytest.raises(ValueError):
        ex.mean_se([])


def test_differs_uses_the_standard_error_of_the_difference():
    a, b = {"mean": 0.0, "se": 3.0}, {"mean": 11.0, "se": 4.0}  # se of the difference: 5
    assert ex.differs(a, b)  # 11 > 2 * 5
    assert not ex.differs(a, {"mean": 9.0, "se": 4.0})  # 9 < 10
    assert not ex.differs(a, b, k=3.0)
    one_seed = {"mean": 50.0, "se": 0.0, "n": 1}  # a standard error of 0 from one value is no evidence
    assert not ex.differs(one_seed, {"mean": 0.0, "se": 0.0, "n": 1})


ROWS = [
    {"setting": "b", "x": 1.0},
    {"setting": "a", "x": 10.0},
    {"setting": "b", "x": 3.0},
    {"setting": "a", "x": 30.0},
]


def test_summarise_groups_in_first_seen_order():
    summary = ex.summarise(ROWS, "setting", ["x"])
    assert list(summary) == ["b", "a"]
    assert summary["b"]["x"] == {"mean": 2.0, "se": pytest.approx(1.0), "n": 2}
    assert summary["a"]["x"]["mean"] == 20.0 and summary["a"]["x"]["se"] == pytest.approx(10.0)


def test_tables_show_mean_se_and_mark_only_real_differences():
    summary = ex.summarise(ROWS, "setting", ["x"])
    assert ex.summary_frame(summary, ["x"]).loc["a", "x"] == "20.0 ± 10.0"
    assert ex.summary_frame({"a": {"x": ex.mean_se([7.0])}}, ["x"]).loc["a", "x"] == "7.0"  # one seed: no ±
    diff = ex.differences(summary, "b", ["x"])
    assert list(diff.index) == ["a"] and diff.loc["a", "x"] == "+18.0"  # 18 < 2 * hypot(10, 1): not marked
    sharp = {"b": {"x": {"mean": 2.0, "se": 0.1}}, "a": {"x": {"mean": 3.0, "se": 0.1}}}
    assert ex.differences(sharp, "b", ["x"]).loc["a", "x"] == "+1.0 *"


def _square(x: int) -> dict:
    return {"x": x, "square": x * x}


@pytest.mark.parametrize("jobs", [1, 2])
def test_run_parallel_keeps_task_order_and_writes_each_row(tmp_path, jobs):
    rows_file = tmp_path / "rows.jsonl"
    rows = ex.run_parallel(_square, [(3,), (1,), (2,)], jobs, rows_file=rows_file)
    assert [r["square"] for r in rows] == [9, 1, 4]
    written = [json.loads(line) for line in rows_file.read_text().splitlines()]
    assert sorted(r["x"] for r in written) == [1, 2, 3]


def test_machine_says_where_it_ran():
    m = ex.machine()
    assert set(m) == {"cpu", "cores", "torch", "gpu", "load", "date"}
    assert m["cores"] >= 1 and isinstance(m["cpu"], str) and m["cpu"]


def test_describe_names_command_size_seeds_and_machine():
    report = {"command": "python b.py", "steps": 500, "seeds": 3, "machine": ex.machine() | {"gpu": None}}
    line = ex.describe(report)
    assert line.startswith("python b.py\n500 steps per run, 3 seeds; ran on ")
    assert f"({report['machine']['cores']} cores)" in line and report["machine"]["date"] in line
    assert "500 steps per run, 1 seed;" in ex.describe(report | {"seeds": 1})
    assert ex.where("x86_64, 2 CPUs") == "x86_64, 2 CPUs"  # results files written before machine() existed


def test_plot_bars_one_bar_per_group_and_figure_with_error_bars():
    summary = ex.summarise(ROWS, "setting", ["x"])
    fig = ex.plot_bars(summary, ["x"], title="t")
    ax = fig.axes[0]
    heights = sorted(p.get_height() for p in ax.patches)
    assert heights == [2.0, 20.0]
    assert len(ax.containers) == 4  # two bar containers and their two error-bar containers
    plt.close(fig)


def test_write_report_records_command_fields_machine_and_time(tmp_path, monkeypatch):
    monkeypatch.setattr("sys.argv", ["b.py", "--seeds", "3"])
    out = tmp_path / "sub" / "r.json"
    report = ex.write_report(out, "benchmarks/b.py", 0.0, {"seeds": 3})
    assert json.loads(out.read_text()) == report
    assert report["command"] == "python benchmarks/b.py --seeds 3" and report["seeds"] == 3
    assert set(report["machine"]) == {"cpu", "cores", "torch", "gpu", "load", "date"} and report["wall_seconds"] > 0
