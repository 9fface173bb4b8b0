from dataclasses import dataclass, field
from typing import ClassVar

import pytest

from tvgkit import config as cfg


@dataclass
class Optim:
    lr: float = 1e-3
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])


@dataclass
class Run:
    name: str = "demo"
    steps: int = 10
    head: str = "span"
    note: str | None = None
    optim: Optim = field(default_factory=Optim)


def test_defaults_then_yaml_then_overrides(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("steps: 20\noptim:\n  lr: 0.01\n")
    run = cfg.load(Run, path, ["optim.lr=3e-4", "name=big", "optim.betas=[0.8, 0.9]"])
    assert run.steps == 20 and run.name == "big"
    assert run.optim.lr == pytest.approx(3e-4) and run.optim.betas == [0.8, 0.9]
    assert isinstance(run.optim.lr, float)


def test_unknown_key_names_the_dotted_path():
    with pytest.raises(cfg.ConfigError, match=r"unknown config key optim\.lrr"):
        cfg.load(Run, overrides=["optim.lrr=0.1"])


def test_wrong_type_is_an_error():
    with pytest.raises(cfg.ConfigError, match="steps: expected int"):
        cfg.build(Run, {"steps": "many"})
    with pytest.raises(cfg.ConfigError, match="steps: expected int"):
        cfg.build(Run, {"steps": True})


def test_int_is_accepted_for_a_float_and_none_for_an_optional():
    run = cfg.build(Run, {"optim": {"lr": 1}, "note": None})
    assert run.optim.lr == 1.0 and isinstance(run.optim.lr, float) and run.note is None


def test_override_needs_an_equals_sign():
    with pytest.raises(cfg.ConfigError, match="key=value"):
        cfg.apply_overrides({}, ["steps"])


def test_yaml_round_trip(tmp_path):
    run = cfg.build(Run, {"steps": 5, "optim": {"lr": 0.5}})
    cfg.save(run, tmp_path / "c.yaml")
    assert cfg.load(Run, tmp_path / "c.yaml") == run


def test_bad_yaml_and_missing_file_name_the_file(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("steps: [1, 2\n")
    with pytest.raises(cfg.ConfigError, match="bad.yaml: not valid YAML"):
        cfg.read_yaml(bad)
    with pytest.raises(cfg.ConfigError, match="config file not found"):
        cfg.read_yaml(tmp_path / "absent.yaml")


def test_differing_keys_lists_only_what_changes():
    a = cfg.to_dict(Run())
    b = cfg.to_dict(cfg.build(Run, {"optim": {"lr": 0.1}, "steps": 10}))
    c = cfg.to_dict(cfg.build(Run, {"name": "x"}))
    assert cfg.differing_keys([a, b, c]) == ["name", "optim.lr"]
    assert cfg.flatten({"a": {"b": 1}, "c": [1, 2]}) == {"a.b": 1, "c": [1, 2]}


# --- declared ranges and rules (field metadata and CHECKS, checked by build) ---------------------------------------


@dataclass
class Ranged:
    count: int = field(default=1, metadata=cfg.at_least(1))
    rate: float = field(default=0.1, metadata=cfg.positive())
    share: float = field(default=0.0, metadata=cfg.between(0, 1, high_open=True))
    prob: float = field(default=0.5, metadata=cfg.between(0, 1))
    optional_rate: float | None = field(default=None, metadata=cfg.positive())
    low: float = 1.0
    high: float = 2.0
    free: float = 0.0  # no declared range: any finite number
    kind: str = field(default="a", metadata=cfg.one_of("a", "b"))

    CHECKS: ClassVar[tuple[cfg.Rule, ...]] = (cfg.not_above("low", "high"),)


@dataclass
class Outer:
    inner: Ranged = field(default_factory=Ranged)


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("count", 1),
        ("rate", 1e-12),
        ("share", 0.0),
        ("share", 0.999),
        ("prob", 0.0),
        ("prob", 1.0),
        ("optional_rate", None),
        ("optional_rate", 3e-4),
        ("low", 2.0),  # equal to high: allowed
        ("free", -1e30),
        ("kind", "b"),
    ],
)
def test_a_value_on_the_boundary_or_inside_is_accepted(key, value):
    assert getattr(cfg.build(Ranged, {key: value}), key) == value


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("count", 0, "count = 0: must be >= 1"),
        ("count", -5, "count = -5: must be >= 1"),
        ("rate", 0, "rate = 0.0: must be > 0"),
        ("rate", -1e-3, "rate = -0.001: must be > 0"),
        ("rate", float("nan"), "rate = nan: must be a finite number > 0"),
        ("rate", float("inf"), "rate = inf: must be a finite number > 0"),
        ("share", 1, "share = 1.0: must be in [0, 1)"),
        ("share", -0.01, "share = -0.01: must be in [0, 1)"),
        ("prob", 1.5, "prob = 1.5: must be in [0, 1]"),
        ("optional_rate", 0.0, "optional_rate = 0.0: must be > 0"),
        ("free", float("-inf"), "free = -inf: must be a finite number"),
        ("low", 2.5, "low = 2.5: must be <= high (2.0)"),
        ("count", True, "count: expected int, got True"),
        ("rate", False, "rate: expected float, got False"),
        ("kind", "c", "kind = 'c': must be one of a, b"),
    ],
)
def test_a_value_out_of_range_names_key_value_and_range(key, value, message):
    with pytest.raises(cfg.ConfigError) as caught:
        cfg.build(Ranged, {key: value})
    assert str(caught.value) == message


def test_nested_keys_and_rules_name_the_full_dotted_path():
    with pytest.raises(cfg.ConfigError) as caught:
        cfg.load(Outer, overrides=["inner.count=0"])
    assert str(caught.value) == "inner.count = 0: must be >= 1"
    with pytest.raises(cfg.ConfigError) as caught:
        cfg.load(Outer, overrides=["inner.low=3"])
    assert str(caught.value) == "inner.low = 3.0: must be <= inner.high (2.0)"
    with pytest.raises(cfg.ConfigError, match=r"^inner\.rate = nan: must be a finite number > 0$"):
        cfg.load(Outer, overrides=["inner.rate=.nan"])


def test_range_text():
    assert [str(r["range"]) for r in (cfg.positive(), cfg.at_least(0), cfg.between(0, 1))] == [
        "> 0",
        ">= 0",
        "in [0, 1]",
    ]
    assert str(cfg.between(0.5, 2, high_open=True)["range"]) == "in [0.5, 2)"
    assert str(cfg.Range(high=3)) == "<= 3" and str(cfg.Range(high=3, high_open=True)) == "< 3"


def test_every_preset_and_the_defaults_pass_their_own_checks():
    """Each preset, written out and read back, passes every range and rule (a preset added later is checked too)."""
    from tvgkit.data.synthetic import SynthConfig
    from tvgkit.grounding.presets import PRESETS, RunConfig, preset

    for name in [*PRESETS, None]:
        run = preset(name) if name else RunConfig()
        assert cfg.build(RunConfig, cfg.to_dict(run)) == run
    assert cfg.build(SynthConfig, cfg.to_dict(SynthConfig())) == SynthConfig()


#: Numeric fields whose bounds are relations to other fields (CHECKS rules), not ranges of their own.
RELATED_ONLY = {"SynthConfig.duration_max", "SynthConfig.moment_max", "SynthConfig.events_max"}


def test_every_numeric_config_field_declares_its_range():
    """A numeric field added later without a range fails here: decide its range (or add it to RELATED_ONLY)."""
    import dataclasses
    import typing

    from tvgkit.grounding.presets import RunConfig

    seen, todo, missing = set(), [RunConfig], []
    while todo:
        cls = todo.pop()
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            hint = hints[f.name]
            if dataclasses.is_dataclass(hint) and hint not in seen:
                seen.add(hint)
                todo.append(hint)
            numeric = {int, float} & set(typing.get_args(hint) or (hint,))
            if numeric and "range" not in f.metadata and f"{cls.__name__}.{f.name}" not in RELATED_ONLY:
                missing.append(f"{cls.__name__}.{f.name}")
    assert missing == []
