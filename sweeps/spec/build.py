"""Validation: a YAML mapping -> a `SweepSpec`, or one `SpecError` with every problem found.

Each top-level key is checked against its SweepSpec field (sections key by key against their dataclass's fields,
see sweeps.spec.fields), each axis value like the key it sweeps, then every grid point is built: a problem that
depends on the point is reported once with its first point and a count, one that does not (a section no axis
touches) once under its section's name. Bounds (sweeps.spec.bounds) are checked per point too.
"""
from __future__ import annotations

import collections
import dataclasses
import json
import os
from pathlib import Path
from typing import Any, Mapping

import yaml

from sweeps.spec import bounds
from sweeps.spec.errors import SpecError, closest, unknown
from sweeps.spec.fields import MISSING, Fixed, Key, check_value, keys_of, to_plain
from sweeps.spec.storage import check_store, resolve_store
from sweeps.spec.sweep import (AXIS_ALIASES, PER_TRIAL_VALUES, Axis, SweepSpec, check_data, label, make_trial,
                               point_values, show, yaml_fields)
from sweeps.spec.yamlsafe import load_yaml


def read_yaml(path: str | os.PathLike) -> Any:
    """The parsed YAML of a spec file; SpecError when it cannot be read or parsed."""
    try:
        text = Path(path).read_text()
    except OSError as e:
        raise SpecError([f"cannot read spec file: {e}"], str(path)) from None
    try:
        return load_yaml(text)
    except yaml.YAMLError as e:
        raise SpecError([f"not valid YAML: {e}"], str(path)) from None


def build(d: Any, source: str | None = None) -> SweepSpec:
    """Validate the YAML mapping `d`; SpecError lists every problem."""
    return _Builder(d, source).build()


class _Builder:
    """Collects every problem of a raw spec dict, then builds the SweepSpec (or raises one SpecError)."""

    def __init__(self, d: Any, source: str | None):
        self.d, self.source = d, source
        self.problems: list[str] = []
        self.failed: set[str] = set()  # dotted keys whose value was rejected
        self.fields = {f.name: f for f in yaml_fields()}
        self.hints = keys_of(SweepSpec)

    def fail(self, msg: str) -> None:
        self.problems.append(msg)

    def build(self) -> SweepSpec:
        d = self.d
        if not isinstance(d, Mapping):
            raise SpecError([f"the spec must be a mapping of keys ({', '.join(self.fields)}), got "
                             f"{type(d).__name__}"], self.source)
        for k in d:
            if k not in self.fields:
                self.fail(unknown("(top level)", str(k), self.fields))
        values = {name: self._top(name, d[name]) for name in self.fields if name in d and name != "axes"}
        values = {k: v for k, v in values.items() if v is not MISSING}
        for name in ("name", "store"):
            if name not in d:
                self.fail(check_store(None)[0] if name == "store" else
                          f"name: missing; give the sweep a name ({self.hints['name'].help})")
        axes = [a for a in self._axes(d.get("axes")) if a.values]
        # Every point is checked even when other parts of the spec are wrong, so one run of the validator also
        # reports impossible grammars; values that failed to parse are left out (and not reported as missing).
        spec = SweepSpec(**{"name": "check", "store": "", **values}, axes=tuple(axes), source=self.source,
                         raw=dict(d))
        skip = self._incomplete(spec)
        self._optuna(spec)
        too_many = bounds.count_problems(spec.n_trials, spec.optuna.trials)
        self.problems += too_many
        if not too_many:
            self._check_points(spec, skip)
        if self.problems:
            raise SpecError(self.problems, self.source)
        store = resolve_store(spec.store)
        journal = spec.optuna.journal and resolve_store(spec.optuna.journal)
        return dataclasses.replace(spec, store=store, optuna=dataclasses.replace(spec.optuna, journal=journal))

    # ---- top-level keys
    def _top(self, name: str, value: Any) -> Any:
        f = self.fields[name]
        section = f.metadata.get("section")
        if name == "store":
            self.problems += check_store(value)
            return value
        if section is None:
            key = self.hints[name]
            value, problem = check_value(name, key.hint, value, key.help)
            if problem:
                self.fail(problem)
                self.failed.add(name)
                return MISSING
            return value
        values, problems = section.check(value)
        self.problems += problems
        if isinstance(value, Mapping):
            self.failed |= {f"{name}.{k}" for k in value if k not in values}
        if f.metadata["per_trial"]:
            return Fixed(section, values)
        try:
            return section.kind(**values)
        except (ValueError, TypeError) as e:
            self.fail(f"{name}: {e}")
            return MISSING

    # ---- axes
    def _axis_key(self, raw_name: str) -> tuple[str | None, Key | None]:
        """(canonical name, the Key it sweeps) of an axis key, or (None, None) after reporting why not."""
        canon = AXIS_ALIASES.get(raw_name, raw_name)
        if canon in PER_TRIAL_VALUES:
            return canon, self.hints[canon]
        sec, _, key = canon.partition(".")
        f = self.fields.get(sec)
        section = f.metadata.get("section") if f is not None and f.metadata.get("per_trial") else None
        if section is not None and key in section.keys:
            return canon, section.keys[key]
        if section is not None and key in section.derived:
            self.fail(f"axes.{raw_name}: {section.derived[key]}")
            return None, None
        valid = list(AXIS_ALIASES) + list(PER_TRIAL_VALUES) + [
            f"{s.name}.{k}" for s in self._per_trial_sections() for k in s.keys]
        self.fail(f"axes: unknown axis '{raw_name}'; {closest(raw_name, valid)}axes are "
                  f"{', '.join(list(AXIS_ALIASES) + list(PER_TRIAL_VALUES))} or <section>.<key> with section in "
                  + ", ".join(s.name for s in self._per_trial_sections()))
        return None, None

    def _per_trial_sections(self) -> list[Any]:
        return [f.metadata["section"] for f in self.fields.values() if f.metadata.get("per_trial")]

    def _axes(self, axes: Any) -> list[Axis]:
        if axes is None or (isinstance(axes, Mapping) and not axes):
            self.fail("axes: missing or empty; give at least one axis, e.g. axes: {P: [16, 32], seed: [0, 1]}")
            return []
        if not isinstance(axes, Mapping):
            self.fail(f"axes: {axes!r} is not a mapping of axis name -> list of values")
            return []
        out, seen = [], {}
        for raw_name, values in axes.items():
            canon, key = self._axis_key(str(raw_name))
            if canon is None:
                continue
            path = f"axes.{raw_name}"
            if canon in seen:
                self.fail(f"{path}: the same setting as axes.{seen[canon]}; give each axis once")
                continue
            seen[canon] = raw_name
            if not isinstance(values, list) or not values:
                self.fail(f"{path}: {values!r} is not a non-empty list of values")
                continue
            if self._fixed_in_yaml(canon):
                self.fail(f"{path}: '{canon}' is also set as a fixed value; remove one of them")
            out.append(Axis(canon, tuple(self._axis_values(path, key, values))))
        return out

    def _axis_values(self, path: str, key: Key, values: list) -> list[Any]:
        parsed, first = [], {}
        for i, v in enumerate(values):
            value, problem = check_value(f"{path}[{i}]", key.hint, v, key.help)
            if problem:
                self.fail(problem)
                continue
            canon = json.dumps(to_plain(value), sort_keys=True, default=str)
            if canon in first:
                self.fail(f"{path}[{i}]: {show(value)} repeats {path}[{first[canon]}]; axis values must be distinct")
                continue
            first[canon] = i
            parsed.append(value)
        labels = [label(v) for v in parsed]
        for lab, n in collections.Counter(labels).items():
            for _ in range(n - 1):    # once per value that repeats an earlier label (a dict: linear in the values)
                self.fail(f"{path}: two values share the label {lab!r} (what tables and Optuna call them); make them "
                          "differ in a printed digit")
        return parsed

    def _fixed_in_yaml(self, canon: str) -> bool:
        """Whether the YAML itself (not a default) fixes this setting."""
        if canon in PER_TRIAL_VALUES:
            return canon in self.d
        sec, _, key = canon.partition(".")
        return isinstance(self.d.get(sec), Mapping) and key in self.d[sec]

    # ---- whole-spec checks
    def _incomplete(self, spec: SweepSpec) -> set[str]:
        """Report required per-trial settings neither fixed nor an axis; return the sections (and per-trial values)
        a point cannot be built from: those with a missing or rejected key."""
        names = set(spec.axis_names)
        skip = {p.split(".")[0] for p in self.failed} | {k for k in PER_TRIAL_VALUES if k in self.failed}
        for section in self._per_trial_sections():
            fixed = getattr(spec, section.name)
            for k in section.keys:
                path = f"{section.name}.{k}"
                if getattr(fixed, k) is MISSING and path not in names:
                    skip.add(section.name)
                    if path not in self.failed:
                        short = {v: a for a, v in AXIS_ALIASES.items()}.get(path)
                        alt = f" or an axis '{short}'" if short else ""
                        self.fail(f"{path}: missing; set it under `{section.name}:`{alt}")
        return skip

    def _optuna(self, spec: SweepSpec) -> None:
        o, raw = spec.optuna, self.d.get("optuna") or {}
        if spec.mode != "grid" and spec.pack.size > 1:
            self.fail(f"pack.size: {spec.pack.size} packs trials of a grid; mode {spec.mode} lets Optuna propose one "
                      "trial at a time, so it trains them one at a time: use pack.size: 1 (or mode: grid)")
        if spec.mode != "optuna-boundary":
            return
        if o.target_step is None:
            self.fail("optuna.target_step: missing; optuna-boundary compares the metric with theta at that step")
        steps = dict(spec.axes).get("train.steps", (spec.train.steps,))
        if o.target_step and MISSING not in steps and o.target_step > min(steps):
            self.fail(f"optuna.target_step: {o.target_step} exceeds the step budget {min(steps)}; "
                      "must be <= train.steps")
        if o.trials is None and "trials" not in raw:
            self.fail("optuna.trials: missing; optuna-boundary needs the number of trials to run")

    def _check_points(self, spec: SweepSpec, skip: set[str]) -> None:
        """Build every point's trial (the sections not in `skip`); report each distinct failure once with its first
        point and a count, or under its section's name when no axis touches what it depends on."""
        touched = {name.partition(".")[0] for name in spec.axis_names}
        failures: dict[str, tuple[str, list[dict[str, Any]]]] = {}
        fixed: list[str] = []
        ids: dict[str, dict[str, Any]] = {}
        for point in spec.points():
            problems = point_problems(spec, point, skip)
            for scope, group, msg in problems:
                if touched.isdisjoint(scope):
                    fixed.append(f"{scope[0] if len(scope) == 1 else 'every trial'}: {msg}")
                else:
                    failures.setdefault(group, (msg, []))[1].append(point)
            if problems or skip:
                continue
            trial_id = make_trial(spec, point).trial_id
            if trial_id in ids:
                msg = "two grid points give the same trial (an axis value has no effect)"
                failures.setdefault(msg, (msg, []))[1].append(point)
            ids[trial_id] = point
        self.problems += list(dict.fromkeys(fixed))
        for msg, points in failures.values():
            if len(points) == spec.n_trials > 1:
                self.fail(f"all {len(points)} grid points, e.g. {{{_where(points[0])}}}: {msg}")
                continue
            n = len(points) - 1
            more = f" (and {n} more point{'s' if n > 1 else ''})" if n else ""
            self.fail(f"axes point {{{_where(points[0])}}}{more}: {msg}")


def _where(point: Mapping[str, Any]) -> str:
    return ", ".join(f"{Axis(k, ()).alias}={show(v)}" for k, v in point.items())


# The settings each check of a point depends on: a problem no axis can change is reported once, without a point.
_SCOPES = {"grammar": ("grammar",), "tail": ("tail", "grammar"), "data": ("data", "grammar"),
           "model": ("model",), "train": ("train", "seed"), "eval": ("eval",), "stop": ("stop",)}
_EVERYTHING = tuple(_SCOPES) + ("seed",)


def point_problems(spec: SweepSpec, point: Mapping[str, Any], skip: set[str] = frozenset()
                   ) -> list[tuple[tuple[str, ...], str, str]]:
    """(scope, group, message) for every reason `point` cannot make a trial. Each section is built on its own
    (those in `skip`, and checks depending on them, are left out) so one bad section does not hide another;
    messages of one group are reported together (bounds group by the limit broken, as their numbers differ)."""
    v = point_values(spec, point)
    out = []
    for name, build_one in _single_builders(v).items():
        if skip.intersection(_SCOPES[name]):
            continue
        try:
            build_one()
        except (ValueError, TypeError) as e:
            out.append((_SCOPES[name], str(e), str(e)))
    if out or skip:
        return out
    try:
        trial = make_trial(spec, point)
    except (ValueError, TypeError) as e:
        return [(_EVERYTHING, str(e), str(e))]
    return [(_EVERYTHING, f"bounds: {kind}", msg) for kind, msg in bounds.problems(trial, spec.resources.gpu)]


def _single_builders(v: Mapping[str, Any]) -> dict[str, Any]:
    """One zero-argument builder per section of a point's values `v` (grammar-dependent ones skip themselves
    when the grammar itself is invalid: that is reported once, by the grammar's builder)."""
    from models import ModelConfig, TrainConfig
    from rhm import GrammarSpec
    from sweeps.spec.sections import DataSection, EvalSection, StopSection

    def grammar() -> Any:
        try:
            return GrammarSpec(**v["grammar"])
        except (ValueError, TypeError):
            return None

    def data() -> None:
        section = DataSection(**v["data"])
        if grammar() is not None:
            check_data(section, grammar())

    return {"grammar": lambda: GrammarSpec(**v["grammar"]),
            "tail": lambda: v["tail"].resolved_levels(v["grammar"]["L"]), "data": data,
            "model": lambda: ModelConfig(**v["model"]), "train": lambda: TrainConfig(**v["train"], seed=v["seed"]), "eval": lambda: EvalSection(**v["eval"]),
            "stop": lambda: StopSection(**v["stop"])}
