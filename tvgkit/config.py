"""Plain dataclass configs: YAML in, YAML out, ``--set key=value`` overrides, and no silent typos.

Every config in the kit is a (nested) dataclass. :func:`build` turns a mapping into one and raises
:class:`ConfigError` naming the full dotted key when a key is unknown or a value has the wrong type, because a
mistyped key that is silently ignored costs a whole run.

Ranges are declared where the fields are, as field metadata (``field(default=32, metadata=at_least(1))``), and
relations between fields as a ``CHECKS`` tuple of :class:`Rule` on the class; :func:`build` checks both, so a
file, a ``--set``, a preset and ``tvgkit synth`` are all checked in this one place, before anything is rendered or
written. A value out of range otherwise surfaces far away: a batch size of 0 or a negative rate as an error deep
inside torch, ``epochs=0`` as a missing ``best.pt``. Every float must be finite: NaN passes every ``<`` test.
"""

from __future__ import annotations

import dataclasses
import math
import operator
import types
import typing
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import yaml

C = TypeVar("C")


class ConfigError(ValueError):
    """A config key or value that cannot be used; the message names the dotted key."""


@dataclass(frozen=True)
class Range:
    """The interval a numeric field must lie in (None: unbounded on that side); its text is what errors say."""

    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False

    def __contains__(self, value: float) -> bool:
        if self.low is not None and (value <= self.low if self.low_open else value < self.low):
            return False
        return self.high is None or (value < self.high if self.high_open else value <= self.high)

    def __str__(self) -> str:
        if self.low is not None and self.high is not None:
            return f"in {'(' if self.low_open else '['}{self.low:g}, {self.high:g}{')' if self.high_open else ']'}"
        if self.low is not None:
            return f"{'>' if self.low_open else '>='} {self.low:g}"
        if self.high is not None:
            return f"{'<' if self.high_open else '<='} {self.high:g}"
        return "any finite number"


def positive() -> dict[str, Range]:
    """Field metadata: a number > 0 (rates, frame rates, lengths in seconds)."""
    return {"range": Range(0, low_open=True)}


def at_least(low: float) -> dict[str, Range]:
    """Field metadata: a number >= ``low`` (counts: ``at_least(0)`` or ``at_least(1)``)."""
    return {"range": Range(low)}


def between(low: float, high: float, high_open: bool = False) -> dict[str, Range]:
    """Field metadata: a number in ``[low, high]`` (``[low, high)`` with ``high_open``)."""
    return {"range": Range(low, high, high_open=high_open)}


def one_of(*choices: Any) -> dict[str, tuple]:
    """Field metadata: one of ``choices`` (a name the code looks up later: a metric, a loss)."""
    return {"choices": choices}


@dataclass(frozen=True)
class Rule:
    """A relation between fields, checked once they are all set: ``key`` is the field the error names, ``must``
    the requirement in words; it may name other fields as ``{field}`` (their values) and ``{prefix}`` (the dotted
    path of the config, so that the message names full keys)."""

    key: str
    holds: Callable[[Any], bool]
    must: str


def not_above(low: str, high: str) -> Rule:
    """The rule ``low <= high`` (a minimum and its maximum)."""
    return Rule(low, lambda c: getattr(c, low) <= getattr(c, high), f"<= {{prefix}}{high} ({{{high}}})")


def _check(value: Any, spec: dataclasses.Field, key: str) -> None:
    """Refuse a non-finite float anywhere, a number outside its field's declared range, a value not of its choices."""
    if isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(f"{key} = {value!r}: must be a finite number {spec.metadata.get('range', '')}".rstrip())
    bounds = spec.metadata.get("range")
    if bounds is not None and value is not None and value not in bounds:
        raise ConfigError(f"{key} = {value!r}: must be {bounds}")
    choices = spec.metadata.get("choices")
    if choices is not None and value not in choices:
        raise ConfigError(f"{key} = {value!r}: must be one of {', '.join(map(str, choices))}")


def check_rules(config: Any, prefix: str = "") -> None:
    """The ``CHECKS`` rules of a built config (see :class:`Rule`); the first that fails is a ConfigError."""
    for rule in getattr(type(config), "CHECKS", ()):
        if not rule.holds(config):
            values = {f.name: getattr(config, f.name) for f in dataclasses.fields(config)}
            must = rule.must.format(prefix=prefix, **values)
            raise ConfigError(f"{prefix}{rule.key} = {operator.attrgetter(rule.key)(config)!r}: must be {must}")


def to_dict(config: Any) -> dict[str, Any]:
    """A dataclass config as nested plain dicts (YAML- and JSON-ready)."""
    return dataclasses.asdict(config)


def _coerce(value: Any, hint: Any, key: str) -> Any:
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if dataclasses.is_dataclass(hint):
        if not isinstance(value, Mapping):
            raise ConfigError(f"{key}: expected a mapping for {hint.__name__}, got {value!r}")
        return build(hint, value, prefix=f"{key}.")
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in (a for a in args if a is not type(None)):
            try:
                return _coerce(value, arg, key)
            except ConfigError as err:
                errors.append(str(err))
        raise ConfigError(errors[0] if errors else f"{key}: cannot use {value!r}")
    if origin is typing.Literal:
        if value not in args:
            raise ConfigError(f"{key}: must be one of {list(args)}, got {value!r}")
        return value
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key}: expected a list, got {value!r}")
        inner = args[0] if args else Any
        items = [_coerce(v, inner, f"{key}[{i}]") for i, v in enumerate(value)]
        return items if origin is list else tuple(items)
    if origin is dict:
        if not isinstance(value, Mapping):
            raise ConfigError(f"{key}: expected a mapping, got {value!r}")
        return dict(value)
    if hint is Any:
        return value
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if hint in (int, float, str, bool) and not (
        isinstance(value, hint) and not (hint is int and isinstance(value, bool))
    ):
        raise ConfigError(f"{key}: expected {hint.__name__}, got {value!r}")
    return value


def build(cls: type[C], data: Mapping[str, Any] | None = None, prefix: str = "") -> C:
    """Instantiate dataclass ``cls`` from ``data``; unknown keys, wrongly typed values, values out of their declared
    range and broken ``CHECKS`` rules raise ConfigError naming the dotted key and the range."""
    data = dict(data or {})
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ConfigError(f"unknown config key {prefix}{unknown[0]} (known keys: {', '.join(sorted(names))})")
    specs = {f.name: f for f in dataclasses.fields(cls)}
    kwargs = {}
    for name, value in data.items():
        kwargs[name] = _coerce(value, hints[name], f"{prefix}{name}")
        _check(kwargs[name], specs[name], f"{prefix}{name}")
    built = cls(**kwargs)
    check_rules(built, prefix)
    return built


def parse_override(text: str) -> tuple[list[str], Any]:
    """``"train.lr=3e-4"`` -> (["train", "lr"], 0.0003); the value is parsed as YAML (numbers, bools, lists)."""
    if "=" not in text:
        raise ConfigError(f"override {text!r} must look like key=value (for example train.lr=3e-4)")
    key, raw = text.split("=", 1)
    key = key.strip()
    if not key:
        raise ConfigError(f"override {text!r} has an empty key")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    if isinstance(value, str) and _looks_like_float(value):
        value = float(value)
    return key.split("."), value


def _looks_like_float(text: str) -> bool:
    # YAML 1.1 reads "3e-4" as a string; people mean a number.
    try:
        float(text)
    except ValueError:
        return False
    return True


def merge(base: Mapping[str, Any], update: Mapping[str, Any]) -> dict[str, Any]:
    """Deep-merge ``update`` into a copy of ``base``."""
    out = dict(base)
    for key, value in update.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out


def apply_overrides(data: Mapping[str, Any], overrides: Iterable[str]) -> dict[str, Any]:
    """Apply ``key.sub=value`` overrides to a nested mapping."""
    out = dict(data)
    for text in overrides:
        path, value = parse_override(text)
        nested: dict[str, Any] = value
        for part in reversed(path):
            nested = {part: nested}
        out = merge(out, nested)
    return out


def read_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML mapping with the safe loader; errors name the file."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8-sig")) or {}  # -sig: a BOM from a Windows editor
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not UTF-8 text (a binary file given as a config?)") from None
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML ({err})") from None
    if not isinstance(data, Mapping):
        raise ConfigError(f"{path}: the top level must be a mapping")
    return dict(data)


def load(cls: type[C], path: str | Path | None = None, overrides: Iterable[str] = ()) -> C:
    """Defaults of ``cls``, then the YAML file at ``path``, then ``key=value`` overrides."""
    data = read_yaml(path) if path else {}
    return build(cls, apply_overrides(data, overrides))


def save(config: Any, path: str | Path) -> None:
    Path(path).write_text(yaml.safe_dump(to_dict(config), sort_keys=False))


def flatten(data: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}``; lists stay values."""
    out: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, Mapping):
            out.update(flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def differing_keys(configs: Iterable[Mapping[str, Any]]) -> list[str]:
    """Dotted keys whose values are not the same in every config (the columns of a runs table)."""
    flats = [flatten(c) for c in configs]
    keys = sorted(set().union(*flats)) if flats else []
    return [k for k in keys if len({repr(f.get(k)) for f in flats}) > 1]
