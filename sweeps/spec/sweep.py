"""`SweepSpec`: a validated sweep, one frozen dataclass whose fields are the YAML's top-level keys, and its grid.

The field list below is the declaration of the YAML layout: `sweeps.spec.build` validates a YAML mapping against
it, `to_dict` writes it back. A section of per-trial settings is a `Fixed` view of its dataclass (grammar ->
rhm.GrammarSpec, model -> models.ModelConfig, train -> models.TrainConfig, data/eval/stop -> sweeps.spec.sections)
holding what the YAML fixes; each grid point overrides it with its axis values and builds the dataclasses (which
check themselves) and from them the point's TrialConfig. A section of per-sweep settings (resources, pack, optuna)
is its dataclass itself. Adding a section is one dataclass plus one line here.
"""
from __future__ import annotations

import dataclasses
import functools
import itertools
import math
import os
from dataclasses import dataclass, field
from typing import Any, Mapping, NamedTuple, Sequence

import yaml

from models import ModelConfig, TrainConfig
from rhm import GrammarSpec
from sweeps.spec.config import TrialConfig
from sweeps.spec.errors import SpecError
from sweeps.spec.fields import Fixed, Section, to_plain
from sweeps.spec.sections import (DataSection, EvalSection, Mode, Name, NonNegInt, OptunaSpec, PackSection,
                                  Resources, StopSection)
from sweeps.spec.tail import TailSpec

# Short axis names for the settings swept most.
AXIS_ALIASES = {"L": "grammar.L", "P": "data.P"}
# Top-level keys that hold one per-trial value (not a section), so they may be axes too.
PER_TRIAL_VALUES = ("tail", "seed")


def per_trial(name: str, kind: type, **derived: str) -> Any:
    """A section of per-trial settings; `derived` = {field of `kind` set elsewhere: where, for the message}."""
    section = Section(name, kind, derived)
    return field(default=Fixed(section), metadata={"section": section, "per_trial": True})


def per_sweep(name: str, kind: type) -> Any:
    """A section of settings of the whole sweep (not per trial, so not an axis)."""
    return field(default_factory=kind, metadata={"section": Section(name, kind), "per_trial": False})


class Axis(NamedTuple):
    """One axis of the grid: its canonical setting ("tail", "seed" or "<section>.<key>") and values."""

    name: str
    values: tuple[Any, ...]

    @property
    def alias(self) -> str:
        """The name as a spec writes it most shortly ("P" for data.P)."""
        return {v: k for k, v in AXIS_ALIASES.items()}.get(self.name, self.name)

    @property
    def labels(self) -> list[Any]:
        """Readable labels of the values (a tail's label, e.g. "power(a=1)@0"; primitives as they are): what
        Optuna stores as the parameter, and what `memsweep validate` prints."""
        return [label(v) for v in self.values]


def label(value: Any) -> Any:
    """A value as a short readable primitive: its `.label` (tails, rule distributions), else itself."""
    return getattr(value, "label", value)


def show(value: Any) -> str:
    shown = label(value)
    return shown if isinstance(shown, str) and shown is not value else repr(shown)


@dataclass(frozen=True, eq=False, kw_only=True)
class SweepSpec:
    """A validated sweep: fixed settings + axes (cartesian grid) + per-trial resources + run mode.

    Build with from_yaml / from_dict (sweeps.spec.load_spec for presets); see the sweeps.spec docstring for the
    YAML format. `raw` is the YAML mapping it was built from, with overrides applied.
    """

    name: Name
    description: str = ""
    store: str
    mode: Mode = "grid"
    grammar: Fixed = per_trial("grammar", GrammarSpec, levels="set by `tail` (a tail and the levels it is on)")
    tail: TailSpec = TailSpec()
    data: Fixed = per_trial("data", DataSection)
    model: Fixed = per_trial("model", ModelConfig)
    train: Fixed = per_trial("train", TrainConfig,
                             seed="set the top-level `seed` (or a `seed` axis); it drives data and init")
    eval: Fixed = per_trial("eval", EvalSection)
    stop: Fixed = per_trial("stop", StopSection)
    seed: NonNegInt = 0
    axes: tuple[Axis, ...] = ()
    resources: Resources = per_sweep("resources", Resources)
    pack: PackSection = per_sweep("pack", PackSection)
    optuna: OptunaSpec = per_sweep("optuna", OptunaSpec)
    source: str | None = field(default=None, metadata={"yaml": False})
    raw: dict[str, Any] = field(default_factory=dict, repr=False, metadata={"yaml": False})

    # ---- construction
    @classmethod
    def from_yaml(cls, path: str | os.PathLike, overrides: Sequence[str] = ()) -> "SweepSpec":
        """Read and validate a YAML spec, with Hydra-style overrides applied; SpecError lists every problem."""
        from sweeps.spec.build import read_yaml

        return cls.from_dict(read_yaml(path), source=str(path), overrides=overrides)

    @classmethod
    def from_dict(cls, d: Any, source: str | None = None, overrides: Sequence[str] = ()) -> "SweepSpec":
        """Validate a spec given as a dict (the parsed YAML), with overrides ("train.steps=2000", "axes.P=[8,16]",
        "~stop") applied first; SpecError lists every problem."""
        from sweeps.spec.build import build
        from sweeps.spec.overrides import apply_overrides

        if overrides:
            d, problems = apply_overrides(d, overrides)
            source = f"{source or 'the spec'} with overrides {' '.join(overrides)}"
            if problems:
                raise SpecError(problems, source)
        return build(d, source)

    def with_overrides(self, overrides: Sequence[str]) -> "SweepSpec":
        """The same spec with overrides applied (validated)."""
        return SweepSpec.from_dict(self.raw, source=self.source, overrides=overrides)

    def with_store(self, store: str) -> "SweepSpec":
        """The same sweep writing to another store (validated)."""
        return SweepSpec.from_dict({**self.raw, "store": store}, source=self.source)

    # ---- back to YAML
    def to_dict(self) -> dict[str, Any]:
        """The effective spec as YAML data, derived from the fields: what the spec sets (per-trial sections: only
        the keys it fixes), with the store and journal made absolute. from_dict(to_dict()) gives the same trials."""
        out: dict[str, Any] = {}
        for f in yaml_fields():
            value = getattr(self, f.name)
            if f.name == "axes":
                out["axes"] = {a.alias: [to_plain(v, defaults=False) for v in a.values] for a in self.axes}
            elif isinstance(value, Fixed):
                if value.values:
                    out[f.name] = value.to_dict()
            elif f.name in ("name", "store") or value != _default(f):
                out[f.name] = to_plain(value, defaults=False)
        return out

    def to_yaml(self) -> str:
        """to_dict() as compact YAML: one line per section and per axis."""
        d = self.to_dict()
        d = {k: ({a: _Flow(v) for a, v in d["axes"].items()} if k == "axes" else _Flow(v)) for k, v in d.items()}
        return yaml.dump(d, Dumper=_CompactDumper, sort_keys=False, width=10**6)

    @functools.cached_property
    def digests(self) -> tuple[str, str]:
        """(spec key, copy digest) that every trial of this spec carries (`sweeps.spec.storage.spec_key`,
        `copy_digest`): computed once per spec, not per grid point."""
        from sweeps.spec.storage import copy_digest, spec_key

        return spec_key(self), copy_digest(self)

    # ---- the grid
    @property
    def axis_names(self) -> tuple[str, ...]:
        return tuple(a.name for a in self.axes)

    @property
    def n_trials(self) -> int:
        return math.prod(len(a.values) for a in self.axes)

    @property
    def packed(self) -> bool:
        """Whether the sweep trains its trials in packs (grid mode with pack.size > 1)."""
        return self.mode == "grid" and self.pack.size > 1

    def points(self) -> list[dict[str, Any]]:
        """Every grid point as {canonical axis name: value}, first axis varying slowest."""
        names = self.axis_names
        return [dict(zip(names, combo)) for combo in itertools.product(*(a.values for a in self.axes))]

    def trial_for(self, point: Mapping[str, Any]) -> TrialConfig:
        """The TrialConfig of one point (axis values override fixed settings); raises ValueError if impossible."""
        return make_trial(self, point)

    def trials(self) -> list[TrialConfig]:
        """One TrialConfig per grid point (validation already proved each one constructible)."""
        return [self.trial_for(p) for p in self.points()]

    def point_of_labels(self, labels: Mapping[str, Any]) -> dict[str, Any]:
        """The grid point whose axis labels (Axis.labels, as Optuna stores them) are `labels`."""
        return {a.name: a.values[a.labels.index(labels[a.name])] for a in self.axes}

    def labels_of(self, point: Mapping[str, Any]) -> dict[str, Any]:
        """Inverse of point_of_labels: {axis name: label of the point's value}."""
        return {a.name: a.labels[a.values.index(point[a.name])] for a in self.axes}

    def grid_summary(self) -> list[tuple[str, list[str]]]:
        """(axis name as written, shown values) per axis, for `memsweep validate`."""
        return [(a.alias, [show(v) for v in a.values]) for a in self.axes]


class _Flow:
    """A value YAML writes in flow style ({a: 1, b: [2, 3]}) on one line."""

    def __init__(self, value: Any):
        self.value = value


class _CompactDumper(yaml.SafeDumper):
    pass


_CompactDumper.add_representer(_Flow, lambda dumper, x: (
    dumper.represent_mapping("tag:yaml.org,2002:map", x.value, flow_style=True) if isinstance(x.value, dict) else
    dumper.represent_sequence("tag:yaml.org,2002:seq", x.value, flow_style=True) if isinstance(x.value, list) else
    dumper.represent_data(x.value)))


def yaml_fields() -> list[dataclasses.Field]:
    """The SweepSpec fields that are YAML keys, in order."""
    return [f for f in dataclasses.fields(SweepSpec) if f.metadata.get("yaml", True)]


def _default(f: dataclasses.Field) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    return f.default_factory() if f.default_factory is not dataclasses.MISSING else dataclasses.MISSING


# ------------------------------------------------------------------------------------------------ points
def point_values(spec: SweepSpec, point: Mapping[str, Any]) -> dict[str, Any]:
    """{section or per-trial value name: its values at `point`}: each section's fixed values with the point's
    axis values over them (a dict per section), and the tail and seed."""
    out: dict[str, Any] = {name: getattr(spec, name) for name in PER_TRIAL_VALUES}
    for f in yaml_fields():
        if f.metadata.get("per_trial"):
            out[f.name] = dict(getattr(spec, f.name).values)
    for name, value in point.items():
        section, _, key = name.partition(".")
        if key:
            out[section][key] = value
        else:
            out[name] = value
    return out


def build_sections(spec: SweepSpec, v: Mapping[str, Any]) -> dict[str, Any]:
    """The dataclass of every per-trial section at one point's values `v` (each raises its own ValueError)."""
    tail, seed = v["tail"], v["seed"]
    grammar = GrammarSpec(**v["grammar"], levels=tail.level_dists(v["grammar"]["L"]))
    return {"grammar": grammar, "tail": tail, "seed": seed, "data": DataSection(**v["data"]),
            "model": ModelConfig(**v["model"]), "train": TrainConfig(**v["train"], seed=seed),
            "eval": EvalSection(**v["eval"]), "stop": StopSection(**v["stop"])}


def check_data(data: DataSection, grammar: GrammarSpec) -> None:
    """ValueError when the grammar cannot supply the training (and held-out) set."""
    P, g = data.P, grammar
    if data.unique and P > g.P_max:
        raise ValueError(f"P={P} unique strings exceed P_max={g.P_max} of this grammar (v={g.v}, n_c={g.n_c}, "
                         f"m={g.m}, s={g.s}, L={g.L}); need P <= P_max or data.unique: false")
    if data.heldout > 0 and P >= g.P_max:
        raise ValueError(f"P={P} uses every string of the grammar (P_max={g.P_max}), none are left for the "
                         "held-out set; lower P or set data.heldout: 0")


def make_trial(spec: SweepSpec, point: Mapping[str, Any]) -> TrialConfig:
    """The TrialConfig of one grid point."""
    s = build_sections(spec, point_values(spec, point))
    check_data(s["data"], s["grammar"])
    data, ev, stop, seed = s["data"], s["eval"], s["stop"], s["seed"]
    if ev.overest_every and s["model"].process != "masked":
        raise ValueError(f"eval.overest_every={ev.overest_every} needs model.process: masked (the overestimation "
                         f"probe masks strings), got {s['model'].process!r}; set eval.overest_every: 0")
    return TrialConfig(sweep=spec.name, store=spec.store, grammar=s["grammar"], tail=s["tail"], P=data.P,
                       unique=data.unique, heldout=data.heldout, data_seed=seed, data_draw=data.draw,
                       model=s["model"],
                       train=s["train"], n_gen=ev.n_gen, sample_steps=ev.sample_steps,
                       overest_every=ev.overest_every, overest_strings=ev.overest_strings, theta_stop=stop.theta,
                       stop_patience=stop.patience, stop_metric=stop.metric, seed=seed,
                       spec=spec.digests[0], spec_copy=spec.digests[1])
