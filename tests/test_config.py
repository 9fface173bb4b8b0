from dataclasses import dataclass, field

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
