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

    collapsed = [step(i, 0.02) for i in range(1, 6)]
    learning = [step(i, 0.02 if i == 1 else 0.2) for i in range(1, 6)]
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


def test_diagnosis_figure_draws_every_run_in_every_panel() -> None:
    fig = plot_head_diagnosis({name: run["seeds"]["0"]["curve"] for name, run in _report()["runs"].items()})
    fit, spread, grads = fig.axes[:3]
    assert len(fit.lines) == 2 and len(spread.lines) == 3  # two runs; the spread panel adds the targets
    assert len(grads.lines) == 4  # head and [MASK] slots per run
