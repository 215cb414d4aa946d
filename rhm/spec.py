"""Validated descriptions of RHM grammars: rule distributions by rank and the grammar's shape."""
from __future__ import annotations

import math
import numbers
from dataclasses import dataclass, field

import numpy as np

FAMILIES = ("uniform", "power", "exp")
# Largest v**s we accept: rules are drawn with rng.choice(v**s, ...) which needs an int64 population.
MAX_RHS = 2**62
MAX_LENGTH = 2**20  # s**L tokens per string: a million is far past any model here (and keeps s**L cheap)


def _check_int(name: str, value: object, lo: int) -> int:
    """Return `value` as a Python int, or raise ValueError naming it and the valid range [lo, inf)."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise ValueError(f"{name} must be an integer >= {lo}, got {value!r}")
    value = int(value)
    if value < lo:
        raise ValueError(f"{name} must be an integer >= {lo}, got {value}")
    return value


def _check_real(name: str, value: object) -> float:
    """Return `value` as a float, or raise ValueError when it is not a finite real number."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise ValueError(f"{name} must be a finite real number, got {value!r}")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{name} must be a finite real number, got {value}")
    return value


@dataclass(frozen=True)
class RuleDist:
    """Distribution of a level's rule probabilities over ranks k = 1..m (rank 1 most likely).

    family: "uniform"; "power" with p(k) ~ k**-a (a >= 0, a = 0 is uniform); "exp" with p(k) ~ exp(-k/xi), xi > 0.
    """

    family: str = "uniform"
    a: float = 0.0
    xi: float = 1.0

    def __post_init__(self) -> None:
        if self.family not in FAMILIES:
            raise ValueError(f"family must be one of {FAMILIES}, got {self.family!r}")
        a = _check_real("a", self.a)
        if a < 0:
            raise ValueError(f"a must be a finite real number >= 0, got {a}")
        xi = _check_real("xi", self.xi)
        if xi <= 0:
            raise ValueError(f"xi must be a finite real number > 0, got {xi}")
        object.__setattr__(self, "a", a)
        object.__setattr__(self, "xi", xi)

    def log_probs(self, m: int) -> np.ndarray:
        """Log-probabilities by rank, shape (m,), computed in log space so steep tails never give log(0)."""
        m = _check_int("m", m, 1)
        k = np.arange(1, m + 1, dtype=np.float64)
        if self.family == "uniform":
            w = np.zeros(m)
        elif self.family == "power":
            w = -self.a * np.log(k)
        else:
            w = -(k - 1.0) / self.xi
        w = w - w.max()
        return w - np.log(np.exp(w).sum())

    def probs(self, m: int) -> np.ndarray:
        """Probabilities by rank, shape (m,), non-increasing, summing to 1."""
        p = np.exp(self.log_probs(m))
        return p / p.sum()

    def entropy(self, m: int) -> float:
        """Entropy in nats of the rank distribution over m ranks (log m for uniform, 0 for a point mass)."""
        logp = self.log_probs(m)
        return float(-(np.exp(logp) * logp).sum())

    @property
    def label(self) -> str:
        """Short human-readable name, e.g. "power(a=1)"."""
        if self.family == "uniform":
            return "uniform"
        if self.family == "power":
            return f"power(a={self.a:g})"
        return f"exp(xi={self.xi:g})"


@dataclass(frozen=True)
class GrammarSpec:
    """Shape, seed and rule distributions of an RHM grammar; validated on construction.

    `levels` is one RuleDist for every production level, or a tuple of L of them (level 0 = root productions);
    it is stored as a tuple of length L. `root` weights the n_c root classes by rank.
    """

    v: int
    n_c: int
    m: int
    s: int
    L: int
    seed: int = 0
    levels: RuleDist | tuple[RuleDist, ...] = field(default_factory=RuleDist)
    root: RuleDist = field(default_factory=RuleDist)

    def __post_init__(self) -> None:
        v = _check_int("v", self.v, 1)
        n_c = _check_int("n_c", self.n_c, 1)
        m = _check_int("m", self.m, 1)
        s = _check_int("s", self.s, 2)
        L = _check_int("L", self.L, 1)
        seed = _check_int("seed", self.seed, 0)
        if L * math.log2(s) > math.log2(MAX_LENGTH) + 1e-9:  # before computing s**L (L=1000 would not end)
            raise ValueError(f"strings of s**L = {s}**{L} tokens are too long; s**L must be <= 2**20 = {MAX_LENGTH:,} "
                             f"(L <= {int(math.log2(MAX_LENGTH) // math.log2(s))} for s={s})")
        if s * math.log2(v) > math.log2(MAX_RHS) + 1e-9:
            raise ValueError(f"v**s = {v}**{s} is too large; it must be <= 2**62")
        rhs = v**s
        if rhs > MAX_RHS:
            raise ValueError(f"v**s = {v}**{s} = {rhs} is too large; it must be <= 2**62")
        if n_c * m > rhs:
            raise ValueError(
                f"impossible grammar: n_c*m = {n_c}*{m} = {n_c * m} root productions need distinct right-hand sides "
                f"but only v**s = {rhs} exist; need n_c*m <= v**s (m <= {rhs // n_c} for n_c={n_c})"
            )
        if L >= 2 and v * m > rhs:
            raise ValueError(
                f"impossible grammar: v*m = {v}*{m} = {v * m} productions per level need distinct right-hand sides "
                f"but only v**s = {rhs} exist; need v*m <= v**s (m <= {v ** (s - 1)})"
            )
        levels = self.levels
        if isinstance(levels, RuleDist):
            levels = (levels,) * L
        elif isinstance(levels, (tuple, list)):
            levels = tuple(levels)
            if len(levels) != L:
                raise ValueError(f"levels must be one RuleDist or a sequence of L={L} of them, got {len(levels)}")
            for i, dist in enumerate(levels):
                if not isinstance(dist, RuleDist):
                    raise ValueError(f"levels[{i}] must be a RuleDist, got {dist!r}")
        else:
            raise ValueError(f"levels must be a RuleDist or a sequence of L={L} RuleDists, got {levels!r}")
        if not isinstance(self.root, RuleDist):
            raise ValueError(f"root must be a RuleDist, got {self.root!r}")
        for name, value in (("v", v), ("n_c", n_c), ("m", m), ("s", s), ("L", L), ("seed", seed), ("levels", levels)):
            object.__setattr__(self, name, value)

    @property
    def d(self) -> int:
        """String length s**L."""
        return self.s**self.L

    @property
    def n_productions(self) -> int:
        """Productions used by one string: nodes of production levels 0..L-1, (s**L - 1)/(s - 1)."""
        return (self.s**self.L - 1) // (self.s - 1)

    @property
    def P_max(self) -> int:
        """Number of distinct strings, n_c * m**((s**L - 1)/(s - 1)), as an exact Python int."""
        return self.n_c * self.m**self.n_productions

    @property
    def chance_valid(self) -> float:
        """Probability that a uniformly random string of length d is valid: (m / v**(s-1))**B * n_c*m / v**s.

        Exact: a uniform block of s symbols is a right-hand side with probability v*m / v**s, and given that, its
        parent is uniform over the v symbols (each has m productions), so a valid level's parent string is uniform
        again; B = (s**L - s)/(s - 1) blocks lie below the root, whose block is valid with probability n_c*m / v**s.
        The chance level of `valid_frac` and `novel_valid_frac` (SCIENCE.md, "Generalization against chance")."""
        blocks = (self.s**self.L - self.s) // (self.s - 1)
        return math.exp(blocks * math.log(self.m / self.v ** (self.s - 1))
                        + math.log(self.n_c * self.m / self.v**self.s))

    def level_entropies(self) -> np.ndarray:
        """Each production level's share of the string entropy, in nats, shape (L,): s**l nodes at level l, each
        choosing its production independently from that level's rank distribution, so s**l * H(p_l)."""
        return np.array([self.n_nodes(lvl) * self.levels[lvl].entropy(self.m) for lvl in range(self.L)])

    @property
    def entropy_tilt(self) -> float:
        """Where the diversity sits, in nats: the mean per-node rule entropy H(p_l) of the upper half of the
        production levels (l < L/2) minus that of the lower half. > 0: more diverse near the root (a fat tail at
        high levels); < 0: near the leaves; 0: the same at every level. 0 when L = 1."""
        h = np.array([self.levels[lvl].entropy(self.m) for lvl in range(self.L)])
        up = np.arange(self.L) < self.L / 2
        return float(h[up].mean() - h[~up].mean()) if self.L > 1 else 0.0

    @property
    def root_entropy(self) -> float:
        """Entropy in nats of the root class."""
        return self.root.entropy(self.n_c)

    @property
    def entropy(self) -> float:
        """Exact string entropy H(x) in nats: H(root) + sum_l s**l H(p_l). Exact because every string has exactly
        one derivation, so H(x) is the entropy of the derivation, whose choices are independent."""
        return self.root_entropy + float(self.level_entropies().sum())

    def n_parents(self, level: int) -> int:
        """Parent symbols at a production level: n_c at level 0, else v."""
        return self.n_c if level == 0 else self.v

    def n_nodes(self, level: int) -> int:
        """Nodes (productions) per string at a production level: s**level."""
        return self.s**level
