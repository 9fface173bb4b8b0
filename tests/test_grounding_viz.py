"""Tables and figures of notebook 05's heads section, from a hand-made benchmarks/heads.py report."""

from __future__ import annotations

import pytest

from tvgkit.grounding.viz import heads_table, plot_head_diagnosis, probe_table


def _report() -> dict:
    def step(i: int, spread: float) -> dict:
        return {
            "step": i,
            "batch_mIoU": 10.0 * i,
            "pred_centre_std": spread,
            "target_centre_std": 0.2,
            "grad_reg_head": 1.0,
            "grad_mask_slots": 0.01,
        }

    val = [{"step": 5, "split": "val", "R1@0.5": 30.0}]
    collapsed = [step(i, 0.02) for i in range(1, 6)] + val
    learning = [step(i, 0.02 if i == 1 else 0.2) for i in range(1, 6)] + val
    test = {"R1@0.3": 50.0, "R1@0.5": 30.0, "R1@0.7": 10.0, "mIoU": 35.0}
    seeds = lambda curve: {"0": {"test": test, "steps": 5, "curve": curve}}  # noqa: E731
    return {
        "runs": {"dead": {"seeds": seeds(collapsed)}, "alive": {"seeds": seeds(learning)}},
        "blind": {"query_blind_model": {"R1@0.3": 40.0, "R1@0.5": 20.0, "R1@0.7": 5.0, "mIoU": 30.0}},
    }


def test_probe_table_compares_the_spread_with_the_targets() -> None:
    table = probe_table(_report())
    # a fifth of 5 logged steps is 1: the first step and the last one
    assert table.loc["dead", "spread, first 20% of steps"] == pytest.approx(0.1)
    assert table.loc["dead", "spread, last 20%"] == pytest.approx(0.1)
    assert table.loc["alive", "spread, last 20%"] == pytest.approx(1.0)
    assert table.loc["alive", "batch mIoU, last 20%"] == pytest.approx(50.0)


def test_heads_table_lists_runs_then_blind_bars() -> None:
    table = heads_table(_report())
    assert list(table.index) == ["dead", "alive", "blind: query_blind_model"]
    assert table.loc["alive", "R1@0.5"] == 30.0 and table.loc["alive", "seeds"] == 1
    assert table.loc["blind: query_blind_model", "R1@0.5"] == 20.0


def test_heads_table_gives_the_standard_error_over_seeds() -> None:
    report = _report()
    alive = report["runs"]["alive"]["seeds"]
    alive["1"] = {**alive["0"], "test": {**alive["0"]["test"], "R1@0.5": 40.0}}
    table = heads_table(report)
    assert table.loc["alive", "R1@0.5"] == 35.0 and table.loc["alive", "seeds"] == 2
    assert table.loc["alive", "R1@0.5 se"] == pytest.approx(5.0)  # std 7.07 / sqrt(2)
    assert table.loc["dead", "R1@0.5 se"] == 0.0


def _curves(report: dict) -> dict:
    return {name: [s["curve"] for s in run["seeds"].values()] for name, run in report["runs"].items()}


def test_diagnosis_figure_draws_every_run_in_every_panel() -> None:
    fig = plot_head_diagnosis(_curves(_report()))
    fit, spread, grads, val = fig.axes[:4]
    assert len(fit.lines) == 2 and len(spread.lines) == 3  # two runs; the spread panel adds the targets
    assert len(grads.lines) == 4  # head and [MASK] slots per run
    assert len(val.containers) == 2  # one validation curve (with error bars) per run


def test_diagnosis_figure_averages_seeds_and_shades_their_range() -> None:
    report = _report()
    alive = report["runs"]["alive"]["seeds"]
    alive["1"] = {
        **alive["0"],
        "curve": [{**h, "batch_mIoU": h["batch_mIoU"] + 10} if "batch_mIoU" in h else h for h in alive["0"]["curve"]],
    }
    fig = plot_head_diagnosis(_curves(report))
    fit = fig.axes[0]
    line = fit.lines[1]  # "alive": the mean of the two seeds, 5 points higher than seed 0 alone
    assert line.get_label() == "alive (2 seeds)"
    one_seed = plot_head_diagnosis({"alive": [alive["0"]["curve"]]}).axes[0].lines[0].get_ydata()
    assert line.get_ydata() == pytest.approx(one_seed + 5)
    assert len(fit.collections) == 1  # only the two-seed run has a band
