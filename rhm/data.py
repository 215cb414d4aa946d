"""Training and held-out sets drawn from a grammar: i.i.d., unique (distinct strings), and disjoint held-out sets."""
from __future__ import annotations

import math

import numpy as np

from .grammar import Grammar
from .spec import _check_int
from .strings import as_strings, encode_strings

# Unique/held-out draws give up once the projected number of draws exceeds this budget (see _draw_until).
DRAW_FACTOR = 50
MIN_DRAW_BUDGET = 1_000_000


#: How a trial's training and held-out sets are seeded: "grammar+data" from both the grammar seed and the data seed
#: (two grammar seeds are two independent samples), "data" from the data seed alone (stores written before
#: 2026-12-07: two grammar seeds then draw the same rank trees; kept reachable to reproduce them).
DATA_DRAWS: tuple[str, ...] = ("grammar+data", "data")


def draw_seed(grammar_seed: int, data_seed: int, draw: str = "grammar+data") -> int:
    """The seed of a trial's data draw (SCIENCE.md, "Independence"); the held-out set uses this + 1."""
    grammar_seed, data_seed = _check_int("grammar_seed", grammar_seed, 0), _check_int("data_seed", data_seed, 0)
    if draw not in DATA_DRAWS:
        raise ValueError(f"draw must be one of {DATA_DRAWS}, got {draw!r}")
    if draw == "data":
        return data_seed
    return int(np.random.SeedSequence([data_seed, grammar_seed]).generate_state(1, np.uint64)[0] >> 2)


def _check_grammar(g: object) -> Grammar:
    if not isinstance(g, Grammar):
        raise ValueError(f"g must be a Grammar, got {type(g).__name__}")
    return g


def sample_iid(g: Grammar, P: int, seed: int) -> np.ndarray:
    """P i.i.d. strings (P, d) from the grammar (duplicates allowed)."""
    g = _check_grammar(g)
    P = _check_int("P", P, 0)
    seed = _check_int("seed", seed, 0)
    return g.sample(P, np.random.default_rng(seed))


def sample_unique(g: Grammar, P: int, seed: int, max_draws: int | None = None) -> np.ndarray:
    """P distinct strings (P, d), in order of first appearance in an i.i.d. stream from the grammar.

    Raises ValueError if P > P_max, or when reaching P distinct strings would take more than `max_draws` draws
    (default max(50*P, 1e6)), saying how many distinct strings were found.
    """
    g = _check_grammar(g)
    P = _check_int("P", P, 0)
    seed = _check_int("seed", seed, 0)
    if P > g.spec.P_max:
        raise ValueError(f"P = {P} exceeds P_max = {g.spec.P_max}: a unique set needs P <= P_max")
    return _draw_until(g, P, np.random.default_rng(seed), exclude=None, unique=True, max_draws=max_draws)


def sample_heldout(
    g: Grammar, n: int, exclude: object, seed: int, unique: bool = False, max_draws: int | None = None
) -> np.ndarray:
    """n strings (n, d) from the grammar conditioned on not being in `exclude` (e.g. the training set).

    i.i.d. given that condition by default; distinct from each other too with unique=True.
    """
    g = _check_grammar(g)
    n = _check_int("n", n, 0)
    seed = _check_int("seed", seed, 0)
    exclude = as_strings(exclude, g.spec.v, g.spec.d, name="exclude")
    n_excl = len(np.unique(encode_strings(exclude, g.spec.v)))
    room = g.spec.P_max - n_excl
    if n > 0 and room <= 0:
        raise ValueError(f"exclude holds all P_max = {g.spec.P_max} strings; no held-out string exists")
    if unique and n > room:
        raise ValueError(f"n = {n} unique held-out strings requested but only P_max - |exclude| = {room} exist")
    return _draw_until(g, n, np.random.default_rng(seed), exclude=exclude, unique=unique, max_draws=max_draws)


def _draw_until(
    g: Grammar, n: int, rng: np.random.Generator, exclude: np.ndarray | None, unique: bool, max_draws: int | None
) -> np.ndarray:
    """Draw i.i.d. batches until n accepted strings; accepted = not excluded (and, if unique, not seen before).

    Gives up early when the acceptance rate of the last batch projects past the draw budget: the rate can only
    fall as strings are accepted, so the projection is optimistic and raising is safe.
    """
    v, d = g.spec.v, g.spec.d
    if n == 0:
        return np.zeros((0, d), dtype=np.int64)
    budget = max(DRAW_FACTOR * n, MIN_DRAW_BUDGET) if max_draws is None else _check_int("max_draws", max_draws, 1)
    excl_keys = np.unique(encode_strings(exclude, v)) if exclude is not None and len(exclude) else None
    kept: list[np.ndarray] = []
    kept_keys = encode_strings(np.zeros((0, d), dtype=np.int64), v)
    have, drawn, rate = 0, 0, 0.5
    while have < n:
        batch = int(min(max(math.ceil(1.2 * (n - have) / rate), 1024), budget - drawn, 2**20))
        if batch <= 0:
            break
        x = g.sample(batch, rng)
        drawn += batch
        keys = encode_strings(x, v)
        ok = np.ones(batch, dtype=bool)
        if excl_keys is not None:
            ok &= ~np.isin(keys, excl_keys)
        if unique:
            _, first = np.unique(keys, return_index=True)
            first_mask = np.zeros(batch, dtype=bool)
            first_mask[first] = True
            ok &= first_mask
            if have:
                ok &= ~np.isin(keys, kept_keys)
        new = int(ok.sum())
        take = np.flatnonzero(ok)[: n - have]
        kept.append(x[take])
        if unique:
            kept_keys = np.concatenate([kept_keys, keys[take]])
        have += len(take)
        rate = max(new, 1) / batch  # optimistic when no new string came: assume one nearly did
        if have < n and drawn + (n - have) / rate > budget:
            break
    if have < n:
        what = "distinct strings" if unique else "strings outside `exclude`"
        raise ValueError(
            f"could only find {have} of the {n} requested {what} after {drawn} draws (budget {budget}); the "
            f"grammar's distribution is too concentrated to reach n = {n} in reasonable time: lower n, use a "
            f"lighter tail, or raise max_draws"
        )
    return np.concatenate(kept)[:n]
