"""Sweep specifications as data: a YAML file -> a validated `SweepSpec` -> one `TrialConfig` per grid point.

YAML format (every key below is optional unless marked *required*; see sweeps/presets/*.yaml for full examples):

    name: demo                      # *required*; letters, digits, '_', '-', '.'; names the sweep in the store
    description: one line           # shown by `memsweep presets`
    store: runs/demo/store          # *required*; local path, file://, s3://, gs://, hdfs://, abfs:// URI.
                                    #   Relative local paths resolve against the CWD at load time (made absolute,
                                    #   so Ray workers, whose CWD differs, write to the same place).
    mode: grid                      # grid | optuna-grid | optuna-boundary (see `optuna` below)
    grammar: {v: 16, n_c: 4, m: 4, s: 2, L: 3, seed: 0, root: {family: uniform}}   # RHM shape (fixed values)
    tail: {family: power, a: 1.0, levels: [0]}   # rule-probability tail; `levels` None = every level,
                                    #   negative levels count from the leaves (-1 = the level just above the tokens)
    data: {P: 32, unique: true, heldout: 256}   # training-set size, unique strings or i.i.d., held-out set size
    model: {process: masked, backbone: transformer, width: 64, depth: 2, heads: 4}   # models.ModelConfig fields
    train: {steps: 4000, batch_size: 32, lr: 1.0e-3, evals_per_decade: 8, first_eval: 10}   # models.TrainConfig
    eval: {n_gen: 256, sample_steps: null}      # generated samples per evaluation; sampler steps (null = the exact sampler: masked unmasks one position per network call, uniform walks all T steps)
    stop: {theta: 0.9, patience: 2}  # early stop once copy_frac >= theta at `patience` consecutive evaluations;
                                    #   omit the section to train every trial for its full budget
    seed: 0                         # fixed seed when `seed` is not an axis
    axes:                           # *required*, non-empty: the grid is the cartesian product, first axis slowest
      tail: [{family: uniform}, {family: power, a: 0.5}]
      L: [3]                        # shorthand for grammar.L
      P: [16, 32, 64]               # shorthand for data.P
      seed: [0, 1, 2]
      model.width: [64, 128]        # any other setting by its dotted name <section>.<key>
    resources: {cpu: 1, gpu: 0}     # per trial; gpu may be fractional below 1 (0.25 = four trials per GPU)
    optuna: {trials: 20, target_step: 2000, metric: mem_excess, theta: 0.5, journal: runs/demo/optuna.journal}

Seeds: `seed` drives the data sample and the model init (data_seed = train.seed = seed). The grammar itself is
fixed per (tail, L, ...) across seeds, drawn from `grammar.seed` (default 0), so seeds measure the spread over
training sets and inits on one grammar; make `grammar.seed` an axis to also vary the grammar.

Modes: `grid` runs every point. `optuna-grid` runs the same grid through Optuna's GridSampler (the study is
journaled to `optuna.journal`, so an interrupted sweep resumes). `optuna-boundary` lets Optuna pick points among
the axes' listed values (categorical) to locate the memorization boundary: each trial's objective is
(`metric` at `target_step` - `theta`)^2, so the study concentrates where memorization just reaches `theta` by
`target_step`; it runs `optuna.trials` trials.

Floats written like `1e-3` (which YAML 1.1 reads as a string) are accepted wherever a number is expected.
Every problem in a spec is reported at once in one `SpecError`, one line per problem: key path, bad value, what
would be valid.
"""
from __future__ import annotations

import dataclasses
import difflib
import hashlib
import itertools
import json
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

import yaml

from analysis.registry import DEFAULT_MEM_METRIC, OBJECTIVE_METRICS
from models import ModelConfig, TrainConfig
from rhm import GrammarSpec, RuleDist

PRESETS_DIR = Path(__file__).resolve().parent / "presets"
MODES = ("grid", "optuna-grid", "optuna-boundary")
FAMILIES = ("uniform", "power", "exp")
URI_SCHEMES = ("file", "s3", "gs", "gcs", "hdfs", "viewfs", "abfs", "abfss")
OPTUNA_METRICS = OBJECTIVE_METRICS
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")

TOP_KEYS = ("name", "description", "store", "mode", "grammar", "tail", "data", "model", "train", "eval", "stop",
            "seed", "axes", "resources", "optuna")
SECTIONS = ("grammar", "data", "model", "train", "eval", "stop")
TAIL_KEYS = ("family", "a", "xi", "levels")
ROOT_KEYS = ("family", "a", "xi")
RESOURCE_KEYS = ("cpu", "gpu")
OPTUNA_KEYS = ("trials", "target_step", "metric", "theta", "journal", "seed")
AXIS_ALIASES = {"L": "grammar.L", "P": "data.P", "tail": "tail", "seed": "seed"}
REQUIRED = ("grammar.v", "grammar.n_c", "grammar.m", "grammar.s", "grammar.L", "data.P", "train.steps")
# TrialConfig fields that are identity, not configuration: left out of the trial-id hash and of .flat().
IDENTITY = ("sweep", "trial_id", "store")

# Value kinds of the fixed (non-dataclass) sections; model.* and train.* kinds come from the dataclass defaults.
_KINDS: dict[str, str] = {
    "grammar.v": "int", "grammar.n_c": "int", "grammar.m": "int", "grammar.s": "int", "grammar.L": "int",
    "grammar.seed": "int", "grammar.root": "root",
    "data.P": "int", "data.unique": "bool", "data.heldout": "int",
    "eval.n_gen": "int", "eval.sample_steps": "int?",
    "stop.theta": "float", "stop.patience": "int",
    "tail": "tail", "seed": "int",
}
_DEFAULTS: dict[str, Any] = {
    "grammar.seed": 0, "grammar.root": {"family": "uniform"}, "data.unique": True, "data.heldout": 256,
    "eval.n_gen": 256, "eval.sample_steps": None, "stop.theta": None, "stop.patience": 2,
    "tail": {"family": "uniform"}, "seed": 0,
}
# Lower bounds checked here so the message names the YAML key; the dataclasses check the rest themselves.
_MIN: dict[str, int] = {"data.P": 1, "data.heldout": 0, "eval.n_gen": 1, "eval.sample_steps": 1,
                        "stop.patience": 1, "seed": 0, "grammar.seed": 0, "train.steps": 1}


class SpecError(ValueError):
    """Every problem found in a sweep spec, one per line (key path, bad value, what would be valid)."""

    def __init__(self, problems: list[str], source: str | None = None):
        self.problems = list(problems)
        self.source = source
        where = f" in {source}" if source else ""
        n = len(self.problems)
        head = f"{n} problem{'s' if n != 1 else ''}{where}:"
        super().__init__("\n".join([head] + [f"  - {p}" for p in self.problems]))


# ----------------------------------------------------------------------------------------------------- tails
@dataclass(frozen=True)
class TailSpec:
    """A rule-probability tail applied to some production levels (uniform elsewhere); the `tail` of a trial.

    `levels` None = every level; negative levels count from the leaves (-1 = level L-1), so one TailSpec means
    "the lowest level" at every depth L.
    """

    family: str = "uniform"
    a: float = 0.0
    xi: float = 1.0
    levels: tuple[int, ...] | None = None

    def __post_init__(self) -> None:
        if self.family not in FAMILIES:
            raise ValueError(f"family must be one of {', '.join(FAMILIES)}, got {self.family!r}")
        for name in ("a", "xi"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ValueError(f"{name} must be a finite number, got {value!r}")
            object.__setattr__(self, name, float(value))
        if self.a < 0:
            raise ValueError(f"a must be >= 0, got {self.a:g}")
        if self.xi <= 0:
            raise ValueError(f"xi must be > 0, got {self.xi:g}")
        if self.levels is not None:
            levels = tuple(self.levels)
            if not levels or any(isinstance(x, bool) or not isinstance(x, int) for x in levels):
                raise ValueError(f"levels must be null or a non-empty list of integers, got {list(levels)!r}")
            if len(set(levels)) != len(levels):
                raise ValueError(f"levels must not repeat, got {list(levels)}")
            if self.family == "uniform":
                raise ValueError("levels is meaningless for a uniform tail (uniform is the default elsewhere)")
            object.__setattr__(self, "levels", levels)

    @property
    def label(self) -> str:
        """Short name for tables and the store's `tail` column: "uniform", "power(a=1)", "power(a=1)@0,1"."""
        base = self.rule_dist().label
        return base if self.levels is None else f"{base}@{','.join(str(x) for x in self.levels)}"

    def rule_dist(self) -> RuleDist:
        """The tail's distribution by rank."""
        return RuleDist(family=self.family, a=self.a, xi=self.xi)

    def resolved_levels(self, L: int) -> tuple[int, ...]:
        """The production levels (0..L-1) the tail applies to at depth L; ValueError when one is out of range."""
        if self.levels is None:
            return tuple(range(L))
        out = []
        for lvl in self.levels:
            if not -L <= lvl < L:
                raise ValueError(f"tail level {lvl} does not exist at L={L}; valid levels are {-L}..{L - 1}")
            out.append(lvl % L)
        if len(set(out)) != len(out):
            raise ValueError(f"tail levels {list(self.levels)} name the same level twice at L={L}")
        return tuple(sorted(out))

    def level_dists(self, L: int) -> tuple[RuleDist, ...]:
        """One RuleDist per production level: the tail on the listed levels, uniform elsewhere."""
        on = set(self.resolved_levels(L))
        return tuple(self.rule_dist() if lvl in on else RuleDist() for lvl in range(L))

    def to_dict(self) -> dict[str, Any]:
        return {"family": self.family, "a": self.a, "xi": self.xi,
                "levels": None if self.levels is None else list(self.levels)}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any] | str) -> "TailSpec":
        """From a mapping {family, a, xi, levels} or a bare family name ("uniform")."""
        if isinstance(d, str):
            return cls(family=d)
        levels = d.get("levels")
        return cls(family=d.get("family", "uniform"), a=d.get("a", 0.0), xi=d.get("xi", 1.0),
                   levels=None if levels is None else tuple(levels))


# ------------------------------------------------------------------------------------------- serialisation
def _rule_to_dict(r: RuleDist) -> dict[str, Any]:
    return {"family": r.family, "a": float(r.a), "xi": float(r.xi)}


def _rule_from_dict(d: Mapping[str, Any]) -> RuleDist:
    return RuleDist(family=d.get("family", "uniform"), a=d.get("a", 0.0), xi=d.get("xi", 1.0))


def grammar_to_dict(g: GrammarSpec) -> dict[str, Any]:
    """GrammarSpec -> plain JSON-able dict (levels always a list of L rule dicts)."""
    levels = g.levels if isinstance(g.levels, (tuple, list)) else (g.levels,) * g.L
    return {"v": g.v, "n_c": g.n_c, "m": g.m, "s": g.s, "L": g.L, "seed": g.seed,
            "levels": [_rule_to_dict(r) for r in levels], "root": _rule_to_dict(g.root)}


def grammar_from_dict(d: Mapping[str, Any]) -> GrammarSpec:
    """Inverse of grammar_to_dict."""
    return GrammarSpec(v=d["v"], n_c=d["n_c"], m=d["m"], s=d["s"], L=d["L"], seed=d.get("seed", 0),
                       levels=tuple(_rule_from_dict(r) for r in d["levels"]),
                       root=_rule_from_dict(d.get("root", {})))


def _dataclass_to_dict(obj: Any) -> dict[str, Any]:
    return {f.name: _jsonable(getattr(obj, f.name)) for f in dataclasses.fields(obj)}


def _jsonable(x: Any) -> Any:
    if isinstance(x, (tuple, list)):
        return [_jsonable(v) for v in x]
    if isinstance(x, Mapping):
        return {str(k): _jsonable(v) for k, v in x.items()}
    return x


def _flatten(prefix: str, x: Any, out: dict[str, Any]) -> None:
    """Nested dicts / lists of dicts -> dotted names; lists of scalars -> one comma-joined string."""
    if isinstance(x, Mapping):
        for k, v in x.items():
            _flatten(f"{prefix}.{k}" if prefix else str(k), v, out)
    elif isinstance(x, list) and any(isinstance(v, (Mapping, list)) for v in x):
        for i, v in enumerate(x):
            _flatten(f"{prefix}.{i}", v, out)
    elif isinstance(x, list):
        out[prefix] = ",".join(str(v) for v in x)
    else:
        out[prefix] = x


# ------------------------------------------------------------------------------------------------ trials
@dataclass(frozen=True, kw_only=True)
class TrialConfig:
    """Everything one trial needs, plain enough to cross Ray Tune's param_space via to_dict()/from_dict().

    `trial_id` is derived from every field but sweep/store/trial_id (left empty, it is computed), so
    re-expanding the same spec gives the same ids and a resumed sweep finds its trials in the store.
    """

    sweep: str
    trial_id: str = ""
    store: str
    grammar: GrammarSpec
    tail: TailSpec
    P: int
    unique: bool = True
    heldout: int = 256
    data_seed: int
    model: ModelConfig
    train: TrainConfig
    n_gen: int = 256
    sample_steps: int | None = None
    theta_stop: float | None = None
    stop_patience: int = 2
    seed: int

    def __post_init__(self) -> None:
        if not self.trial_id:
            object.__setattr__(self, "trial_id", f"{self.sweep}-{self.content_hash()}")

    def _content(self) -> dict[str, Any]:
        d = self.to_dict()
        for k in IDENTITY:
            d.pop(k)
        return d

    def content_hash(self) -> str:
        """10 hex digits of sha1 over the canonical JSON of every field but sweep/store/trial_id."""
        blob = json.dumps(self._content(), sort_keys=True, separators=(",", ":"), allow_nan=True)
        return hashlib.sha1(blob.encode()).hexdigest()[:10]

    @property
    def L(self) -> int:
        return self.grammar.L

    @property
    def d(self) -> int:
        return self.grammar.d

    @property
    def steps(self) -> int:
        """The trial's step budget."""
        return self.train.steps

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict (only str/int/float/bool/None, lists and dicts)."""
        return {
            "sweep": self.sweep, "trial_id": self.trial_id, "store": self.store,
            "grammar": grammar_to_dict(self.grammar), "tail": self.tail.to_dict(),
            "P": self.P, "unique": self.unique, "heldout": self.heldout, "data_seed": self.data_seed,
            "model": _dataclass_to_dict(self.model), "train": _dataclass_to_dict(self.train),
            "n_gen": self.n_gen, "sample_steps": self.sample_steps, "theta_stop": self.theta_stop,
            "stop_patience": self.stop_patience, "seed": self.seed,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "TrialConfig":
        """Inverse of to_dict (keeps the given trial_id)."""
        d = dict(d)
        d["grammar"] = grammar_from_dict(d["grammar"])
        d["tail"] = TailSpec.from_dict(d["tail"])
        d["model"] = ModelConfig(**d["model"])
        d["train"] = TrainConfig(**d["train"])
        return cls(**d)

    def flat(self) -> dict[str, Any]:
        """Every configuration value under a dotted name ("grammar.v", "model.width", "tail.levels", ...),
        scalars only; the identity fields sweep/trial_id/store are left out."""
        out: dict[str, Any] = {}
        _flatten("", self._content(), out)
        return out


# -------------------------------------------------------------------------------------- value checking
def _closest(name: str, valid: Iterable[str]) -> str:
    match = difflib.get_close_matches(name, list(valid), n=1, cutoff=0.5)
    return f"did you mean '{match[0]}'? " if match else ""


def _unknown(path: str, key: str, valid: Iterable[str]) -> str:
    valid = list(valid)
    return f"{path}: unknown key '{key}'; {_closest(key, valid)}valid keys: {', '.join(valid)}"


def _field_kinds(cls: type, skip: tuple[str, ...] = ()) -> dict[str, str]:
    """Kinds of a config dataclass's fields, from their defaults (no default: int for `steps`, else any)."""
    kinds = {}
    for f in dataclasses.fields(cls):
        if f.name in skip:
            continue
        default = f.default if f.default is not dataclasses.MISSING else None
        if isinstance(default, bool):
            kinds[f.name] = "bool"
        elif isinstance(default, int):
            kinds[f.name] = "int"
        elif isinstance(default, float):
            kinds[f.name] = "float"
        elif isinstance(default, str):
            kinds[f.name] = "str"
        else:
            kinds[f.name] = "int" if f.name == "steps" else "any"
    return kinds


def section_keys() -> dict[str, dict[str, str]]:
    """Valid keys of every section, with their value kinds (model/train from the dataclasses)."""
    keys: dict[str, dict[str, str]] = {s: {} for s in SECTIONS}
    for name, kind in _KINDS.items():
        if "." in name:
            sec, key = name.split(".", 1)
            keys[sec][key] = kind
    keys["model"] = _field_kinds(ModelConfig)
    keys["train"] = _field_kinds(TrainConfig, skip=("seed",))
    return keys


def _coerce(path: str, value: Any, kind: str) -> tuple[Any, str | None]:
    """(value converted to `kind`, None) or (value, problem)."""
    if kind == "any":
        return value, None
    if kind == "int?" and value is None:
        return None, None
    if kind in ("int", "int?"):
        if isinstance(value, bool) or not isinstance(value, int):
            return value, f"{path}: {value!r} is not an integer"
        if path in _MIN:
            lo = _MIN[path]
            if value < lo:
                return value, f"{path}: {value!r} is too small; must be an integer >= {lo}"
        return value, None
    if kind == "float":
        if isinstance(value, str):
            try:
                value = float(value)
            except ValueError:
                return value, f"{path}: {value!r} is not a number"
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            return value, f"{path}: {value!r} is not a finite number"
        return float(value), None
    if kind == "bool":
        if not isinstance(value, bool):
            return value, f"{path}: {value!r} is not a boolean; use true or false"
        return value, None
    if kind == "str":
        if not isinstance(value, str):
            return value, f"{path}: {value!r} is not a string"
        return value, None
    if kind == "tail":
        return _parse_tail(path, value)
    if kind == "root":
        return _parse_root(path, value)
    raise AssertionError(kind)


def _parse_family(path: str, value: Any, keys: Any, what: str, example: str,
                  build: Callable[[dict], Any]) -> tuple[Any, str | None]:
    """A `{family: ..., ...}` mapping (or a bare family name) checked for unknown keys and built with `build`."""
    if isinstance(value, str):
        value = {"family": value}
    if not isinstance(value, Mapping):
        return value, f"{path}: {value!r} is not {what}; write {example}"
    for k in value:
        if k not in keys:
            return value, _unknown(path, str(k), keys)
    try:
        return build(dict(value)), None
    except (ValueError, TypeError) as e:
        return value, f"{path}: {dict(value)!r}: {e}"


def _tail_from_dict(v: dict) -> TailSpec:
    """A TailSpec from YAML: numeric strings for `a`/`xi` (YAML reads 1e-3 as text) and a bare level accepted."""
    for k in ("a", "xi"):
        if isinstance(v.get(k), str):
            try:
                v[k] = float(v[k])
            except ValueError:
                pass
    if v.get("levels") is not None and not isinstance(v["levels"], (list, tuple)):
        v["levels"] = [v["levels"]]
    return TailSpec.from_dict(v)


def _parse_tail(path: str, value: Any) -> tuple[Any, str | None]:
    return _parse_family(path, value, TAIL_KEYS, "a tail", "{family: power, a: 1.0, levels: [0]}", _tail_from_dict)


def _parse_root(path: str, value: Any) -> tuple[Any, str | None]:
    return _parse_family(path, value, ROOT_KEYS, "a rule distribution", "{family: power, a: 1.0}", _rule_from_dict)


def _canon(value: Any) -> str:
    """Canonical text of a value, to find duplicate axis values."""
    if isinstance(value, TailSpec):
        value = value.to_dict()
    if isinstance(value, RuleDist):
        value = _rule_to_dict(value)
    return json.dumps(value, sort_keys=True, default=str)


def _show(value: Any) -> str:
    if isinstance(value, TailSpec):
        return value.label
    if isinstance(value, RuleDist):
        return value.label
    return repr(value)


# ------------------------------------------------------------------------------------------- the store
def resolve_store(uri: str) -> str:
    """Local paths (and file:// URIs) made absolute against the CWD; other URIs unchanged."""
    if "://" in uri:
        scheme, rest = uri.split("://", 1)
        if scheme.lower() == "file":
            return "file://" + str(Path(rest).expanduser().absolute()) if not rest.startswith("/") else uri
        return uri
    return str(Path(uri).expanduser().absolute())


def check_store(uri: Any, path: str = "store") -> list[str]:
    """Problems with a store URI: empty, unsupported scheme, or a local directory that cannot be created."""
    if not isinstance(uri, str) or not uri.strip():
        return [f"{path}: {uri!r} is missing or empty; give a local path or a URI ({', '.join(URI_SCHEMES)})"]
    if "://" in uri:
        scheme, rest = uri.split("://", 1)
        if scheme.lower() not in URI_SCHEMES:
            return [f"{path}: {uri!r} has unsupported scheme '{scheme}'; valid schemes: {', '.join(URI_SCHEMES)} "
                    "(or a plain local path)"]
        if scheme.lower() != "file":
            return [] if rest.strip("/") else [f"{path}: {uri!r} names no bucket or path"]
        uri = rest
    p = Path(uri).expanduser().absolute()
    if p.exists():
        if not p.is_dir():
            return [f"{path}: {str(p)!r} exists and is not a directory"]
        if not os.access(p, os.W_OK | os.X_OK):
            return [f"{path}: {str(p)!r} is not writable"]
        return []
    parent = p.parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        return [f"{path}: {str(p)!r} cannot be created: {str(parent)!r} is a file, not a directory"]
    if not os.access(parent, os.W_OK | os.X_OK):
        return [f"{path}: {str(p)!r} cannot be created: {str(parent)!r} is not writable"]
    return []


# ------------------------------------------------------------------------------------------ the sweep
@dataclass(frozen=True)
class OptunaSpec:
    """Settings of the Optuna modes (see the module docstring)."""

    trials: int | None = None          # None: the grid size (optuna-grid)
    target_step: int | None = None     # optuna-boundary: the step at which `metric` is compared with `theta`
    metric: str = DEFAULT_MEM_METRIC
    theta: float = 0.5
    journal: str | None = None         # JournalStorage file; None: <store>/../optuna-<name>.journal for local stores
    seed: int = 0


@dataclass(frozen=True, eq=False)
class SweepSpec:
    """A validated sweep: fixed settings + axes (cartesian grid) + per-trial resources + run mode.

    `fixed` maps canonical dotted names ("grammar.v", "data.P", "model.width", "tail", "seed", ...) to values;
    `axes` is a tuple of (canonical name, values) in YAML order. Build with from_yaml/from_dict.
    """

    name: str
    store: str
    mode: str
    fixed: dict[str, Any]
    axes: tuple[tuple[str, tuple[Any, ...]], ...]
    resources: dict[str, float]
    optuna: OptunaSpec = field(default_factory=OptunaSpec)
    description: str = ""
    source: str | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False)

    # ---- construction
    @classmethod
    def from_yaml(cls, path: str | os.PathLike) -> "SweepSpec":
        """Read and validate a YAML spec; SpecError lists every problem."""
        path = Path(path)
        try:
            text = path.read_text()
        except OSError as e:
            raise SpecError([f"cannot read spec file: {e}"], str(path)) from None
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as e:
            raise SpecError([f"not valid YAML: {e}"], str(path)) from None
        return cls.from_dict(data, source=str(path))

    @classmethod
    def from_dict(cls, d: Any, source: str | None = None) -> "SweepSpec":
        """Validate a spec given as a dict (the parsed YAML); SpecError lists every problem."""
        return _Builder(d, source).build()

    def with_store(self, store: str) -> "SweepSpec":
        """The same sweep writing to another store (validated)."""
        raw = dict(self.raw)
        raw["store"] = store
        return SweepSpec.from_dict(raw, source=self.source)

    def to_dict(self) -> dict[str, Any]:
        """The spec as the (validated) YAML dict it came from, with the store made absolute."""
        return dict(self.raw, store=self.store)

    # ---- the grid
    @property
    def axis_names(self) -> tuple[str, ...]:
        return tuple(name for name, _ in self.axes)

    @property
    def n_trials(self) -> int:
        return math.prod(len(values) for _, values in self.axes)

    def points(self) -> list[dict[str, Any]]:
        """Every grid point as {canonical axis name: value}, first axis varying slowest."""
        names = self.axis_names
        return [dict(zip(names, combo)) for combo in itertools.product(*(v for _, v in self.axes))]

    def trial_for(self, point: Mapping[str, Any]) -> TrialConfig:
        """The TrialConfig of one point (axis values override fixed settings); raises ValueError if impossible."""
        return _make_trial(self.name, self.store, {**self.fixed, **point})

    def trials(self) -> list[TrialConfig]:
        """One TrialConfig per grid point (validation already proved each one constructible)."""
        return [self.trial_for(p) for p in self.points()]

    def grid_summary(self) -> list[tuple[str, list[str]]]:
        """(axis name as written, shown values) per axis, for `memsweep validate`."""
        inverse = {v: k for k, v in AXIS_ALIASES.items()}
        return [(inverse.get(name, name), [_show(v) for v in values]) for name, values in self.axes]


def _grammar(s: Mapping[str, Any], levels: Any = None) -> GrammarSpec:
    return GrammarSpec(v=s["grammar.v"], n_c=s["grammar.n_c"], m=s["grammar.m"], s=s["grammar.s"], L=s["grammar.L"],
                       seed=s["grammar.seed"], levels=RuleDist() if levels is None else levels,
                       root=s["grammar.root"])


def _point_problems(s: Mapping[str, Any]) -> list[str]:
    """Every reason the merged settings `s` of one grid point cannot make a trial (each part checked alone)."""
    problems = []
    for part in (lambda: _check_data(s, _grammar(s)), lambda: s["tail"].resolved_levels(s["grammar.L"]),
                 lambda: ModelConfig(**{k[6:]: v for k, v in s.items() if k.startswith("model.")}),
                 lambda: TrainConfig(steps=s["train.steps"], seed=s["seed"],  # KeyError: missing, reported
                                     **{k[6:]: v for k, v in s.items() if k.startswith("train.") and k != "train.steps"})):
        try:
            part()
        except KeyError:
            pass  # a missing required setting, already reported
        except (ValueError, TypeError) as e:
            problems.append(str(e))
    if not problems and all(key in s for key in REQUIRED):
        try:
            _make_trial("check", "", s)
        except (ValueError, TypeError) as e:
            problems.append(str(e))
    return problems


def _make_trial(sweep: str, store: str, s: Mapping[str, Any]) -> TrialConfig:
    """Build a TrialConfig from merged canonical settings."""
    tail: TailSpec = s["tail"]
    L = s["grammar.L"]
    grammar = _grammar(s, tail.level_dists(L))
    _check_data(s, grammar)
    seed = s["seed"]
    model = ModelConfig(**{k[6:]: v for k, v in s.items() if k.startswith("model.")})
    train = TrainConfig(**{k[6:]: v for k, v in s.items() if k.startswith("train.")}, seed=seed)
    return TrialConfig(sweep=sweep, store=store, grammar=grammar, tail=tail, P=s["data.P"], unique=s["data.unique"],
                       heldout=s["data.heldout"], data_seed=seed, model=model, train=train, n_gen=s["eval.n_gen"],
                       sample_steps=s["eval.sample_steps"], theta_stop=s["stop.theta"],
                       stop_patience=s["stop.patience"], seed=seed)


def _check_data(s: Mapping[str, Any], grammar: GrammarSpec) -> None:
    """ValueError when the grammar cannot supply the training (and held-out) set."""
    P, L = s["data.P"], grammar.L
    if s["data.unique"] and P > grammar.P_max:
        raise ValueError(f"P={P} unique strings exceed P_max={grammar.P_max} of this grammar "
                         f"(v={grammar.v}, n_c={grammar.n_c}, m={grammar.m}, s={grammar.s}, L={L}); need P <= P_max "
                         "or data.unique: false")
    if s["data.heldout"] > 0 and P >= grammar.P_max:
        raise ValueError(f"P={P} uses every string of the grammar (P_max={grammar.P_max}), none are left for the "
                         "held-out set; lower P or set data.heldout: 0")


class _Builder:
    """Collects every problem of a raw spec dict, then builds the SweepSpec (or raises one SpecError)."""

    def __init__(self, d: Any, source: str | None):
        self.d = d
        self.source = source
        self.problems: list[str] = []
        self.keys = section_keys()

    def fail(self, msg: str) -> None:
        self.problems.append(msg)

    def build(self) -> SweepSpec:
        d = self.d
        if not isinstance(d, Mapping):
            raise SpecError([f"the spec must be a mapping of keys ({', '.join(TOP_KEYS)}), got {type(d).__name__}"],
                            self.source)
        for k in d:
            if k not in TOP_KEYS:
                self.fail(_unknown("(top level)", str(k), TOP_KEYS))
        name = self._name(d.get("name"))
        store = d.get("store")
        self.problems += check_store(store)
        mode = d.get("mode", "grid")
        if mode not in MODES:
            self.fail(f"mode: {mode!r} is not a mode; {_closest(str(mode), MODES)}valid modes: {', '.join(MODES)}")
        description = d.get("description", "")
        if not isinstance(description, str):
            self.fail(f"description: {description!r} is not a string")
        fixed = self._fixed(d)
        axes = self._axes(d.get("axes"), fixed)
        self._required(fixed, axes)
        # Every point is checked even when other parts of the spec are wrong, so one run of the validator also
        # reports impossible grammars; values that failed to parse (or are missing) are left out of the check.
        self._check_points(fixed, [(n, v) for n, v in axes if v])
        resources = self._resources(d.get("resources", {}))
        optuna = self._optuna(d.get("optuna"), mode, fixed, axes)
        if self.problems:
            raise SpecError(self.problems, self.source)
        store = resolve_store(store)
        return SweepSpec(name=name, store=store, mode=mode, fixed=fixed, axes=tuple(axes), resources=resources,
                         optuna=optuna, description=description, source=self.source, raw=dict(d))

    def _name(self, name: Any) -> str:
        if not isinstance(name, str) or not NAME_RE.match(name):
            self.fail(f"name: {name!r} is missing or invalid; use letters, digits, '_', '-', '.' (e.g. demo)")
            return str(name)
        return name

    def _fixed(self, d: Mapping[str, Any]) -> dict[str, Any]:
        fixed: dict[str, Any] = {}
        for sec in SECTIONS:
            body = d.get(sec)
            if body is None:
                continue
            if not isinstance(body, Mapping):
                self.fail(f"{sec}: {body!r} is not a mapping of keys ({', '.join(self.keys[sec])})")
                continue
            for k, v in body.items():
                path = f"{sec}.{k}"
                if sec == "train" and k == "seed":
                    self.fail("train.seed: set the top-level `seed` (or a `seed` axis); it drives data and init")
                    continue
                if k not in self.keys[sec]:
                    self.fail(_unknown(sec, str(k), self.keys[sec]))
                    continue
                value, problem = _coerce(path, v, self.keys[sec][k])
                if problem:
                    self.fail(problem)
                else:
                    self._range(path, path, value)
                    fixed[path] = value
        for key in ("tail", "seed"):
            if key in d:
                value, problem = _coerce(key, d[key], _KINDS[key])
                if problem:
                    self.fail(problem)
                else:
                    fixed[key] = value
        for key, default in _DEFAULTS.items():
            if key not in fixed:
                fixed[key] = _coerce(key, default, _KINDS[key])[0] if key in ("tail", "grammar.root") else default
        return fixed

    def _range(self, canon: str, path: str, value: Any) -> None:
        if canon == "stop.theta" and value is not None and not 0 < value <= 1:
            self.fail(f"{path}: {value!r} is outside (0, 1]; it is the copy fraction that stops a trial")

    def _axis_name(self, name: Any) -> tuple[str | None, str]:
        """(canonical name or None, kind) of an axis key."""
        name = str(name)
        if name in AXIS_ALIASES:
            canon = AXIS_ALIASES[name]
            return canon, _KINDS[canon]
        sec, _, key = name.partition(".")
        valid = list(AXIS_ALIASES) + [f"{s}.{k}" for s in SECTIONS for k in self.keys[s]]
        if sec in self.keys and key in self.keys[sec]:
            return name, self.keys[sec][key]
        if name == "train.seed":
            self.fail("axes.train.seed: use the `seed` axis; it drives data and init")
        else:
            self.fail(f"axes: unknown axis '{name}'; {_closest(name, valid)}axes are L, P, tail, seed or "
                      "<section>.<key> with section in " + ", ".join(SECTIONS))
        return None, "any"

    def _axes(self, axes: Any, fixed: dict[str, Any]) -> list[tuple[str, tuple[Any, ...]]]:
        if axes is None or (isinstance(axes, Mapping) and not axes):
            self.fail("axes: missing or empty; give at least one axis, e.g. axes: {P: [16, 32], seed: [0, 1]}")
            return []
        if not isinstance(axes, Mapping):
            self.fail(f"axes: {axes!r} is not a mapping of axis name -> list of values")
            return []
        out, seen = [], {}
        for raw_name, values in axes.items():
            canon, kind = self._axis_name(raw_name)
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
            parsed, canon_seen = [], {}
            for i, v in enumerate(values):
                value, problem = _coerce(f"{path}[{i}]", v, kind)
                if problem:
                    self.fail(problem)
                    continue
                if canon in _MIN and isinstance(value, int) and value < _MIN[canon]:
                    self.fail(f"{path}[{i}]: {value!r} is too small; must be >= {_MIN[canon]}")
                    continue
                self._range(canon, f"{path}[{i}]", value)
                key = _canon(value)
                if key in canon_seen:
                    self.fail(f"{path}[{i}]: {_show(value)} repeats {path}[{canon_seen[key]}]; axis values must "
                              "be distinct")
                    continue
                canon_seen[key] = i
                parsed.append(value)
            explicit = self._explicit_fixed(canon)
            if explicit:
                self.fail(f"{path}: '{canon}' is also set as a fixed value; remove one of them")
            out.append((canon, tuple(parsed)))
        return out

    def _explicit_fixed(self, canon: str) -> bool:
        """Whether the YAML itself (not a default) fixes this setting."""
        d = self.d
        if canon in ("tail", "seed"):
            return canon in d
        sec, _, key = canon.partition(".")
        return isinstance(d.get(sec), Mapping) and key in d[sec]

    def _required(self, fixed: Mapping[str, Any], axes: list[tuple[str, tuple[Any, ...]]]) -> bool:
        """Report missing required settings; True when every one is present."""
        names = {n for n, _ in axes}
        n_problems = len(self.problems)
        for key in REQUIRED:
            if key not in fixed and key not in names:
                short = {v: k for k, v in AXIS_ALIASES.items()}.get(key)
                alt = f" or an axis '{short}'" if short else ""
                self.fail(f"{key}: missing; set it under `{key.split('.')[0]}:`{alt}")
        for sec in ("model", "train"):
            cls = ModelConfig if sec == "model" else TrainConfig
            for f in dataclasses.fields(cls):
                no_default = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
                key = f"{sec}.{f.name}"
                if no_default and f.name != "seed" and key not in fixed and key not in names and key not in REQUIRED:
                    self.fail(f"{key}: missing; {cls.__name__} needs it")
        return len(self.problems) == n_problems

    def _resources(self, res: Any) -> dict[str, float]:
        out = {"cpu": 1.0, "gpu": 0.0}
        if not isinstance(res, Mapping):
            self.fail(f"resources: {res!r} is not a mapping like {{cpu: 1, gpu: 0.25}}")
            return out
        for k, v in res.items():
            if k not in RESOURCE_KEYS:
                self.fail(_unknown("resources", str(k), RESOURCE_KEYS))
                continue
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
                self.fail(f"resources.{k}: {v!r} is invalid; must be a number >= 0")
                continue
            out[k] = float(v)
        if out["gpu"] > 1 and out["gpu"] != int(out["gpu"]):
            self.fail(f"resources.gpu: {out['gpu']:g} is invalid; fractions are only allowed below 1 "
                      "(e.g. 0.25, 0.5), above 1 use a whole number of GPUs")
        if out["cpu"] == 0 and out["gpu"] == 0:
            self.fail("resources: cpu and gpu are both 0; a trial needs at least one (e.g. cpu: 1)")
        return out

    def _optuna(self, opt: Any, mode: str, fixed: Mapping[str, Any],
                axes: list[tuple[str, tuple[Any, ...]]]) -> OptunaSpec:
        if opt is None:
            opt = {}
        if not isinstance(opt, Mapping):
            self.fail(f"optuna: {opt!r} is not a mapping of ({', '.join(OPTUNA_KEYS)})")
            return OptunaSpec()
        vals: dict[str, Any] = {}
        kinds = {"trials": "int?", "target_step": "int?", "metric": "str", "theta": "float", "journal": "str",
                 "seed": "int"}
        for k, v in opt.items():
            if k not in OPTUNA_KEYS:
                self.fail(_unknown("optuna", str(k), OPTUNA_KEYS))
                continue
            if k == "journal" and v is None:
                continue
            value, problem = _coerce(f"optuna.{k}", v, kinds[k])
            if problem:
                self.fail(problem)
                continue
            vals[k] = value
        for k in ("trials", "target_step"):
            if vals.get(k) is not None and vals[k] < 1:
                self.fail(f"optuna.{k}: {vals[k]!r} must be an integer >= 1")
        if "metric" in vals and vals["metric"] not in OPTUNA_METRICS:
            self.fail(f"optuna.metric: {vals['metric']!r} is not one of {', '.join(OPTUNA_METRICS)}")
        if "theta" in vals and not 0 < vals["theta"] <= 1:
            self.fail(f"optuna.theta: {vals['theta']!r} is outside (0, 1]")
        if mode == "optuna-boundary":
            if vals.get("target_step") is None:
                self.fail("optuna.target_step: missing; optuna-boundary compares the metric with theta at that step")
            steps = [fixed["train.steps"]] if "train.steps" in fixed else dict(axes).get("train.steps", ())
            if vals.get("target_step") and steps and vals["target_step"] > min(steps):
                self.fail(f"optuna.target_step: {vals['target_step']} exceeds the step budget {min(steps)}; "
                          "must be <= train.steps")
            if vals.get("trials") is None:
                self.fail("optuna.trials: missing; optuna-boundary needs the number of trials to run")
        if vals.get("journal"):
            vals["journal"] = resolve_store(vals["journal"])
        return OptunaSpec(**vals)

    def _check_points(self, fixed: Mapping[str, Any], axes: list[tuple[str, tuple[Any, ...]]]) -> None:
        """Construct every point's trial; report each distinct failure once with its first point and count."""
        failures: dict[str, list[dict[str, Any]]] = {}
        names = [n for n, _ in axes]
        ids: dict[str, dict[str, Any]] = {}
        for combo in itertools.product(*(v for _, v in axes)):
            point = dict(zip(names, combo))
            settings = {**fixed, **point}
            problems = _point_problems(settings)
            for msg in problems:
                failures.setdefault(msg, []).append(point)
            if problems or not all(key in settings for key in REQUIRED):
                continue
            trial = _make_trial("check", "", settings)
            if trial.trial_id in ids:
                failures.setdefault("two grid points give the same trial (an axis value has no effect)", []).append(
                    point)
            ids[trial.trial_id] = point
        inverse = {v: k for k, v in AXIS_ALIASES.items()}
        for msg, points in failures.items():
            where = ", ".join(f"{inverse.get(k, k)}={_show(v)}" for k, v in points[0].items())
            n = len(points) - 1
            more = f" (and {n} more point{'s' if n > 1 else ''})" if n else ""
            self.fail(f"axes point {{{where}}}{more}: {msg}")


# ----------------------------------------------------------------------------------------------- presets
def preset_names() -> list[str]:
    """Names of the shipped presets (sweeps/presets/*.yaml)."""
    return sorted(p.stem for p in PRESETS_DIR.glob("*.yaml"))


def preset_path(name: str) -> Path:
    """Path of a shipped preset; SpecError listing the presets when there is none of that name."""
    path = PRESETS_DIR / f"{name}.yaml"
    if not path.is_file():
        raise SpecError([f"no preset named {name!r}; presets: {', '.join(preset_names())}"])
    return path


def preset_descriptions() -> dict[str, str]:
    """{preset name: its one-line `description`}."""
    out = {}
    for name in preset_names():
        try:
            data = yaml.safe_load((PRESETS_DIR / f"{name}.yaml").read_text()) or {}
            out[name] = str(data.get("description", "")).strip()
        except (OSError, yaml.YAMLError) as e:
            out[name] = f"(unreadable: {e})"
    return out


def load_spec(name_or_path: str | os.PathLike) -> SweepSpec:
    """A spec from a YAML file path, or else from the preset of that name; SpecError when neither exists."""
    path = Path(name_or_path)
    if path.is_file():
        return SweepSpec.from_yaml(path)
    if (PRESETS_DIR / f"{name_or_path}.yaml").is_file():
        return SweepSpec.from_yaml(preset_path(str(name_or_path)))
    raise SpecError([f"{str(name_or_path)!r} is neither a spec file nor a preset; presets: "
                     f"{', '.join(preset_names())}"])
