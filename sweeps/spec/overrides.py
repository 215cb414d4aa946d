"""Command-line overrides in the Hydra style, applied to a spec's YAML mapping before it is validated, so an
override is checked exactly like the YAML (did-you-mean on a wrong key included):

    train.steps=2000          set a key (the value is parsed as YAML: 2000, 1e-3, [8, 16], {family: power, a: 2})
    axes.P=[8,16]             set an axis (replacing the same setting's fixed value or axis under another name)
    data.P=16                 fix a setting (replacing its axis, if it was one)
    ~stop  /  ~axes.seed      remove a key (Hydra's delete syntax)
    +train.ema=0.99           Hydra's "add a key": the same as train.ema=0.99 (`++` too)
    model.width=64,128        Hydra's sweep syntax: an axis, the same as axes.model.width=[64,128] (`-m` optional)

Under `axes.` the rest of the key is the axis name, dots included (`axes.model.width=[64,128]`). A comma splits
values only outside brackets, braces and quotes, and only for per-trial settings: `name=a,b` stays one string.
"""
from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from typing import Any

import yaml

from sweeps.spec.sweep import AXIS_ALIASES
from sweeps.spec.yamlsafe import load_yaml

_DELETE = object()
# Top-level keys set once per sweep: a comma in their value never makes an axis.
PER_SWEEP = ("name", "description", "store", "mode", "resources", "optuna", "pack")


def _split_commas(raw: str) -> list[str] | None:
    """The parts of `raw` between commas outside brackets, braces and quotes; None when there is no such comma."""
    parts, depth, quote, start = [], 0, "", 0
    for i, ch in enumerate(raw):
        if quote:
            quote = "" if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch in "[{(":
            depth += 1
        elif ch in "]})":
            depth -= 1
        elif ch == "," and depth == 0:
            parts.append(raw[start:i])
            start = i + 1
    return parts + [raw[start:]] if parts else None


def parse_override(text: str) -> tuple[tuple[str, ...], Any]:
    """(key path, value or _DELETE) of one override; ValueError saying what the syntax is."""
    example = "e.g. train.steps=2000, axes.P=[8,16] or ~stop"
    text = text[2:] if text.startswith("++") else text[1:] if text.startswith("+") else text   # Hydra's add
    if text.startswith("~"):
        key, value = text[1:], _DELETE
        if "=" in key:
            raise ValueError(f"override {text!r}: a deletion takes no value; write ~KEY ({example})")
    elif "=" in text:
        key, raw = text.split("=", 1)
        parts = _split_commas(raw) if key.strip().partition(".")[0] not in PER_SWEEP else None
        try:
            value = [load_yaml(p) for p in parts] if parts else load_yaml(raw) if raw.strip() else None
        except yaml.YAMLError as e:
            raise ValueError(f"override {text!r}: the value is not valid YAML ({' '.join(str(e).split())})") from None
        if parts and not key.strip().startswith("axes."):
            key = f"axes.{key.strip()}"        # Hydra's sweep `KEY=a,b`: an axis over those values
    else:
        raise ValueError(f"override {text!r}: expected KEY=VALUE or ~KEY ({example})")
    key = key.strip()
    if not key or any(not part for part in key.split(".")):
        raise ValueError(f"override {text!r}: {key!r} is not a key path ({example})")
    head, _, rest = key.partition(".")
    path = (head, rest) if head == "axes" and rest else tuple(key.split("."))
    return path, value


def _canon(axis: str) -> str:
    return AXIS_ALIASES.get(axis, axis)


def apply_overrides(raw: Mapping[str, Any], overrides: Sequence[str]) -> tuple[dict[str, Any], list[str]]:
    """(a copy of `raw` with the overrides applied in order, problems with the overrides themselves)."""
    if not isinstance(raw, Mapping):
        return raw, []  # reported by validation
    d = copy.deepcopy(dict(raw))
    problems = []
    for text in overrides:
        try:
            path, value = parse_override(text)
            _apply(d, path, value)
        except ValueError as e:
            problems.append(str(e))
    return d, problems


def _apply(d: dict[str, Any], path: tuple[str, ...], value: Any) -> None:
    if path[0] == "axes" and len(path) == 2:
        axes = d.get("axes")
        axes = dict(axes) if isinstance(axes, Mapping) else {}
        for other in [a for a in axes if _canon(a) == _canon(path[1])]:
            del axes[other]
        if value is not _DELETE:
            axes[path[1]] = value
            _unfix(d, _canon(path[1]))
        d["axes"] = axes
        return
    _set(d, path, value)
    if value is not _DELETE and isinstance(d.get("axes"), Mapping):
        dotted = ".".join(path)
        d["axes"] = {a: v for a, v in d["axes"].items() if _canon(a) != dotted}


def _unfix(d: dict[str, Any], canon: str) -> None:
    """Drop the fixed value of a setting that becomes an axis."""
    sec, _, key = canon.partition(".")
    if key and isinstance(d.get(sec), Mapping):
        d[sec] = {k: v for k, v in d[sec].items() if k != key}
    elif not key:
        d.pop(canon, None)


def _set(d: dict[str, Any], path: tuple[str, ...], value: Any) -> None:
    node = d
    for i, part in enumerate(path[:-1]):
        child = node.get(part)
        if child is None:
            child = {}
        elif isinstance(child, str) and part == "tail" and i == 0:
            child = {"family": child}  # `tail: uniform` shorthand
        elif not isinstance(child, Mapping):
            where = ".".join(path[: i + 1])
            raise ValueError(f"override {'.'.join(path)}: '{where}' is {child!r}, not a section with keys")
        node[part] = child = dict(child)
        node = child
    if value is _DELETE:
        if path[-1] not in node:
            raise ValueError(f"override ~{'.'.join(path)}: there is no such key to remove")
        del node[path[-1]]
    else:
        node[path[-1]] = value
