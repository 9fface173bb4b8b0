"""The rendered dataset: deterministic, every query word needed, real formats, cached by config hash."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest

from tvgkit.data.formats import read_charades_sta, read_jsonl
from tvgkit.data.synthetic import SynthConfig, build, config_hash, generate_split, make_video, sample_video

TINY = SynthConfig(n_train=6, n_val=2, n_test=3, duration_min=10.0, duration_max=14.0, moment_max=6.0)


def test_same_seed_same_videos_and_queries() -> None:
    a = [(f, r) for _, f, r in generate_split(TINY, "train", 2)]
    b = [(f, r) for _, f, r in generate_split(TINY, "train", 2)]
    assert all(np.array_equal(fa, fb) and ra == rb for (fa, ra), (fb, rb) in zip(a, b, strict=False))
    c = next(generate_split(replace(TINY, seed=1), "train", 1))[2]
    assert c != a[0][1]
    assert make_video(TINY, "train", 1)[2] == a[1][1]  # video k does not depend on the videos before it


def test_videos_repeat_colours_and_shapes_and_queries_are_unambiguous() -> None:
    rng = np.random.default_rng(0)
    specs = [sample_video(rng, SynthConfig(), f"v{k}") for k in range(200)]
    for spec in specs:
        pairs = [(o.colour, o.shape) for o in spec.objects]
        assert len(set(pairs)) == len(pairs)
        assert len({c for c, _ in pairs}) < len(pairs) and len({s for _, s in pairs}) < len(pairs)
        keys = [(e.obj, e.kind) for e in spec.events]
        assert len(set(keys)) == len(keys)
        assert all(0 <= e.start < e.end <= spec.duration for e in spec.events)
    lengths = [e.end - e.start for s in specs for e in s.events]
    durations = [s.duration for s in specs]
    assert 6.5 < np.mean(lengths) < 9.5 and 27 < np.mean(durations) < 33  # Charades-STA-like
    # Distractors: many videos hold the same action twice, or one object acting twice.
    same_action = sum(len({e.kind for e in s.events}) < len(s.events) for s in specs)
    same_object = sum(len({e.obj for e in s.events}) < len(s.events) for s in specs)
    assert same_action > 40 and same_object > 40


def test_build_writes_real_formats_and_reuses_the_cache(tmp_path) -> None:
    data = build(TINY, cache_dir=tmp_path, progress=False)
    assert data.root.name == config_hash(TINY)
    recs = {s: read_jsonl(data.jsonl(s))[0] for s in ("train", "val", "test")}
    assert [len({r.vid for r in recs[s]}) for s in recs] == [6, 2, 3]
    sta, report = read_charades_sta(data.charades_txt("test"), data.durations)
    assert report.n_dropped == 0 and [r.query for r in sta] == [r.query for r in recs["test"]]
    import h5py

    with h5py.File(data.features) as f:
        assert sorted(f) == sorted({r.vid for rs in recs.values() for r in rs})
        r = recs["train"][0]
        assert f[r.vid].shape[0] == int(np.ceil(int(r.duration * TINY.fps) / TINY.fps))
    # Two worker processes render the same bytes as one (every video has its own seed).
    other = build(TINY, cache_dir=tmp_path / "two", progress=False, workers=2)
    assert other.jsonl("train").read_text() == data.jsonl("train").read_text()
    with h5py.File(data.features) as f, h5py.File(other.features) as g:
        assert all(np.array_equal(f[v][()], g[v][()]) for v in f)
    stamp = data.features.stat().st_mtime_ns
    assert build(TINY, cache_dir=tmp_path, progress=False).features.stat().st_mtime_ns == stamp
    assert config_hash(replace(TINY, n_test=4)) != config_hash(TINY)
    assert json.loads((data.root / "config.json").read_text())["n_train"] == 6


@pytest.mark.parametrize("kind", ["appear", "disappear"])
def test_fades_change_visibility_from_pixels(kind: str) -> None:
    from tvgkit.data.synthetic import Event, Obj, VideoSpec, object_state

    spec = VideoSpec("v", 10.0, [Obj("red", "circle", 30, 30, 8, visible=kind != "appear")], [])
    spec.events.append(Event(0, kind, 2.0, 6.0, 0.0))
    alphas = [object_state(spec, 0, t)[3] for t in (0.0, 4.0, 8.0)]
    assert alphas == ([0.0, 0.5, 1.0] if kind == "appear" else [1.0, 0.5, 0.0])
