"""Tails: which rule-probability law a trial's grammar has on which production levels, and the one parser of the
`{family: ...}` mappings YAML writes tails and root weights as.

Two conventions for a power law are accepted, normalized to one internal form (this project's `a`), so the trial id
and the store's `tail` label do not depend on which one a spec was written in:
  - `a` (this project, docs/science.md): p(k) ~ k**-a over the ranks k = 1..m;  `{family: power, a: 2}`
  - `zipf_a` (the Zipf-RHM of Cagnetta, Kang & Wyart, ICML 2025): f_k ~ k**-(1 + zipf_a), so a = 1 + zipf_a;
    `{family: power, zipf_a: 1.0}` is the same tail as `{family: power, a: 2}`.
"""
from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Callable

from rhm import RuleDist
from sweeps.spec.errors import unknown
from sweeps.spec.fields import PARSERS, to_plain

FAMILIES = ("uniform", "power", "exp")
ZIPF_KEY = "zipf_a"


@dataclass(frozen=True)
class TailSpec:
    """A rule-probability tail applied to some production levels, `rest` (uniform by default) elsewhere; the `tail`
    of a trial.

    `levels` None = every level; negative levels count from the leaves (-1 = level L-1), so one TailSpec means
    "the lowest level" at every depth L. `rest` puts another law on the other levels, e.g. a fat tail near the
    root and a thin one below it (`{family: power, a: 1, levels: [0, 1], rest: {family: power, a: 2.4}}`), as
    placement studies at matched entropy need. Parameters a family does not use are kept at their defaults (a
    power law's `xi`, an exponential's `a`), so two specs of one distribution are one trial.
    """

    family: str = "uniform"
    a: float = 0.0
    xi: float = 1.0
    levels: tuple[int, ...] | None = None
    rest: RuleDist | None = None

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
        if self.family != "power":
            object.__setattr__(self, "a", 0.0)
        if self.family != "exp":
            object.__setattr__(self, "xi", 1.0)
        if self.levels is not None:
            levels = tuple(self.levels)
            if not levels or any(isinstance(x, bool) or not isinstance(x, int) for x in levels):
                raise ValueError(f"levels must be null or a non-empty list of integers, got {list(levels)!r}")
            if len(set(levels)) != len(levels):
                raise ValueError(f"levels must not repeat, got {list(levels)}")
            if self.family == "uniform" and self.rest is None:
                raise ValueError("levels is meaningless for a uniform tail (uniform is the default elsewhere)")
            object.__setattr__(self, "levels", levels)
        if self.rest is not None:
            if not isinstance(self.rest, RuleDist):
                raise ValueError(f"rest must be a rule distribution like {{family: power, a: 2}}, got {self.rest!r}")
            if self.levels is None:
                raise ValueError("rest is the law of the levels the tail does not list; it needs `levels`")
            if self.rest == RuleDist():
                object.__setattr__(self, "rest", None)     # uniform elsewhere is the default: one trial, one id

    @classmethod
    def zipf(cls, zipf_a: float, levels: tuple[int, ...] | None = None) -> "TailSpec":
        """The power tail f_k ~ k**-(1 + zipf_a) of the Zipf-RHM convention (a = 1 + zipf_a)."""
        return cls(family="power", a=1.0 + float(zipf_a), levels=levels)

    @property
    def zipf_a(self) -> float | None:
        """This tail's exponent in the Zipf-RHM convention (a - 1), None unless it is a power law."""
        return self.a - 1.0 if self.family == "power" else None

    @property
    def label(self) -> str:
        """Short name for tables and the store's `tail` column: "uniform", "power(a=1)", "power(a=1)@0,1", and with a
        law elsewhere "power(a=1)@0,1/power(a=2.4)"."""
        base = self.rule_dist().label
        if self.levels is None:
            return base
        return f"{base}@{','.join(str(x) for x in self.levels)}" + (f"/{self.rest.label}" if self.rest else "")

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
        """One RuleDist per production level: the tail on the listed levels, `rest` (uniform) elsewhere."""
        on = set(self.resolved_levels(L))
        return tuple(self.rule_dist() if lvl in on else (self.rest or RuleDist()) for lvl in range(L))

    def to_dict(self) -> dict[str, Any]:
        d = to_plain(self)
        if self.rest is None:
            d.pop("rest")          # absent unless set, so tails written before `rest` existed keep their trial ids
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any] | str) -> "TailSpec":
        """From a mapping {family, a | zipf_a, xi, levels} or a bare family name ("uniform")."""
        value, problem = parse_tail("tail", d)
        if problem:
            raise ValueError(problem)
        return value


# ------------------------------------------------------------------------------------------------- parsing
def _numbers(v: dict, keys: tuple[str, ...]) -> None:
    """Numeric strings for `keys` (YAML 1.1 reads 1e-3 as text) made floats, in place."""
    for k in keys:
        if isinstance(v.get(k), str):
            try:
                v[k] = float(v[k])
            except ValueError:
                pass


def _zipf(v: dict) -> None:
    """`zipf_a` (Zipf-RHM convention) turned into this project's `a = 1 + zipf_a`, in place; ValueError when both
    are given, when the family is not a power law, or when the resulting a is negative."""
    if ZIPF_KEY not in v:
        return
    z = v.pop(ZIPF_KEY)
    if "a" in v:
        raise ValueError(f"give either a (p(k) ~ k**-a) or {ZIPF_KEY} (f_k ~ k**-(1+{ZIPF_KEY}), a = 1 + {ZIPF_KEY}),"
                         " not both")
    if v.get("family", "uniform") != "power":
        raise ValueError(f"{ZIPF_KEY} is the exponent of a power law; it needs family: power")
    if isinstance(z, bool) or not isinstance(z, (int, float)) or not math.isfinite(z):
        raise ValueError(f"{ZIPF_KEY} must be a finite number, got {z!r}")
    if z < -1:
        raise ValueError(f"{ZIPF_KEY}={z:g} gives a = 1 + {ZIPF_KEY} = {1 + z:g} < 0; {ZIPF_KEY} must be >= -1")
    v["a"] = 1.0 + float(z)


def parse_family(path: str, value: Any, keys: tuple[str, ...], what: str, example: str,
                 build: Callable[[dict], Any]) -> tuple[Any, str | None]:
    """A `{family: ..., ...}` mapping (or a bare family name) checked for unknown keys and built with `build`."""
    if isinstance(value, str):
        value = {"family": value}
    if not isinstance(value, Mapping):
        return value, f"{path}: {value!r} is not {what}; write {example}"
    for k in value:
        if k not in keys:
            return value, unknown(path, str(k), keys)
    v = dict(value)
    _numbers(v, ("a", "xi", ZIPF_KEY))
    try:
        _zipf(v)
        return build(v), None
    except (ValueError, TypeError) as e:
        return value, f"{path}: {dict(value)!r}: {e}"


def _tail(v: dict) -> TailSpec:
    if v.get("levels") is not None and not isinstance(v["levels"], (list, tuple)):
        v["levels"] = [v["levels"]]  # a bare level
    levels = v.get("levels")
    rest = v.get("rest")
    if rest is not None and not isinstance(rest, RuleDist):
        rest, problem = parse_rule("rest", rest)
        if problem:
            raise ValueError(problem)
    return TailSpec(family=v.get("family", "uniform"), a=v.get("a", 0.0), xi=v.get("xi", 1.0),
                    levels=None if levels is None else tuple(levels), rest=rest)


def _rule(v: dict) -> RuleDist:
    return RuleDist(family=v.get("family", "uniform"), a=v.get("a", 0.0), xi=v.get("xi", 1.0))


def parse_tail(path: str, value: Any) -> tuple[Any, str | None]:
    """A TailSpec from YAML: `{family, a | zipf_a, xi, levels}` or a bare family name."""
    return parse_family(path, value, ("family", "a", ZIPF_KEY, "xi", "levels", "rest"), "a tail",
                        "{family: power, a: 1.0, levels: [0]}", _tail)


def parse_rule(path: str, value: Any) -> tuple[Any, str | None]:
    """A RuleDist (e.g. grammar.root) from YAML: `{family, a | zipf_a, xi}` or a bare family name."""
    return parse_family(path, value, ("family", "a", ZIPF_KEY, "xi"), "a rule distribution",
                        "{family: power, a: 1.0}", _rule)


PARSERS[TailSpec] = parse_tail
PARSERS[RuleDist] = parse_rule
