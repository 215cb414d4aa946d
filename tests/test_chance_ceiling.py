"""Generalization against chance and against its ceiling (SCIENCE.md, "Nulls that match what they are compared
with"): the exact chance level of validity, gen_share of a grammar-faithful generator, and the regime count."""
from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from rhm import Grammar, GrammarSpec, RuleDist

# s = 2 and 3, L = 2 and 3, one with v*m = v**s (only the root constrains), chances from 0.3% to 67%.
CHANCE_SPECS = [
    dict(v=4, n_c=2, m=2, s=2, L=2),
    dict(v=4, n_c=3, m=3, s=2, L=3),
    dict(v=8, n_c=4, m=8, s=2, L=3),     # v*m = v**s: 0.5 (the grammar of issue 28)
    dict(v=4, n_c=2, m=8, s=3, L=2),
    dict(v=3, n_c=2, m=9, s=3, L=2),     # v*m = v**s at s = 3: 2/3
    dict(v=3, n_c=2, m=6, s=3, L=3),
    dict(v=5, n_c=3, m=4, s=2, L=1),
]


@pytest.mark.parametrize("kw", CHANCE_SPECS, ids=lambda kw: "v{v}c{n_c}m{m}s{s}L{L}".format(**kw))
def test_chance_valid_matches_uniform_random_strings(kw: dict) -> None:
    """The closed form against the valid fraction of 200,000 uniform random strings, within 3 standard errors."""
    g = Grammar.from_spec(GrammarSpec(**kw, seed=3, levels=RuleDist("power", a=1.0)))
    x = np.random.default_rng(11).integers(0, g.spec.v, size=(200_000, g.spec.d))
    frac = g.parse(x).valid.mean()
    p = g.spec.chance_valid
    se = math.sqrt(p * (1 - p) / x.shape[0])
    assert abs(frac - p) <= 3 * se + 1e-12, (kw, frac, p, se)


def test_chance_valid_by_enumeration() -> None:
    """Exact equality with the valid share of all v**d strings of a tiny grammar (brute force, no sampling)."""
    g = Grammar.from_spec(GrammarSpec(v=3, n_c=2, m=2, s=2, L=2, seed=1))
    every = np.array(list(itertools.product(range(3), repeat=g.spec.d)))
    assert g.parse(every).valid.mean() == pytest.approx(g.spec.chance_valid, abs=1e-15)


def test_chance_levels_of_the_issue() -> None:
    """The numbers SCIENCE.md quotes: 0.5 at v=8, n_c=4, m=8; the regime grammar 0.8%; the s=3 grammar 6e-5."""
    assert GrammarSpec(v=8, n_c=4, m=8, s=2, L=3).chance_valid == pytest.approx(0.5)
    assert GrammarSpec(v=8, n_c=8, m=4, s=2, L=3).chance_valid == pytest.approx(0.5**6 * 0.5)
    assert GrammarSpec(v=8, n_c=2, m=8, s=3, L=2).chance_valid == pytest.approx(0.125**3 * 16 / 512)


# The s = 3 grammar of probes.md, by tail: P values with p(T) below and above 0.4.
CEILING_CASES = [(RuleDist(), (512, 4096)), (RuleDist("power", a=1.0), (128, 1024)),
                 (RuleDist("power", a=2.0), (4, 512))]


@pytest.mark.parametrize("dist,Ps", CEILING_CASES, ids=["uniform", "power1", "power2"])
def test_grammar_faithful_generator_reaches_the_ceiling(dist: RuleDist, Ps: tuple[int, int]) -> None:
    """A grammar-faithful generator's novel_valid_frac is 1 - p(T) and its gen_share 1, within 4 standard errors
    of N = 20,000 draws, at a P where p(T) is below 0.4 and one where it is above."""
    from analysis.metrics import evaluate
    from rhm import sample_unique

    g = Grammar.from_spec(GrammarSpec(v=8, n_c=2, m=8, s=3, L=2, seed=0, levels=dist))
    masses = []
    for k, P in enumerate(Ps):
        train = sample_unique(g, P, seed=k)
        gen = g.sample(20_000, np.random.default_rng(100 + k))
        ev = evaluate(g, gen, train, hamming=False).scalars
        pt = ev["copy_baseline"]
        assert pt == pytest.approx(np.exp(g.loglik(train)).sum())
        masses.append(pt)
        se = math.sqrt(pt * (1 - pt) / 20_000)
        assert abs(ev["novel_valid_frac"] - (1 - pt)) <= 4 * se
        assert abs(ev["gen_share"] - 1.0) <= 4 * se / (1 - pt)
        assert ev["novel_valid_frac"] < 1 - pt / 2            # the raw metric sits at its ceiling, not at 1
    assert masses[0] < 0.4 < masses[1], masses


def test_gen_share_is_nan_when_T_is_the_whole_language() -> None:
    """p(T) = 1 leaves no novel string: gen_share is undefined (NaN), not a division by ~0."""
    from analysis.metrics import evaluate, gen_share

    g = Grammar.from_spec(GrammarSpec(v=3, n_c=2, m=2, s=2, L=1, seed=0))
    every = g.enumerate()
    ev = evaluate(g, every, every, hamming=False).scalars
    assert ev["copy_baseline"] == pytest.approx(1.0) and math.isnan(ev["gen_share"])
    np.testing.assert_allclose(gen_share(np.array([0.3, 0.3]), np.array([0.4, 1.0])), [0.5, np.nan])


def _onset_rows(rows: list[tuple]) -> "pa.Table":
    import pyarrow as pa
    cols = ["trial_id", "onset", "theta", "tau", "censored", "last_step"]
    return pa.table({c: [r[i] for r in rows] for i, c in enumerate(cols)})


def test_regime_counts_only_what_was_seen() -> None:
    """Hand-built onsets: a trial with tau_mem censored is not 'generalized, then memorized', it is counted apart
    as 'generalized, memorization censored' with its last step; memorize-first and never-generalized trials in
    neither."""
    from analysis.headline import regime_counts, regime_line

    t = _onset_rows([
        ("a", "gen", 0.5, 100.0, False, 9000.0), ("a", "mem", 0.5, 5000.0, False, 9000.0),   # the window
        ("b", "gen", 0.5, 200.0, False, 7000.0), ("b", "mem", 0.5, 7000.0, True, 7000.0),    # mem censored
        ("c", "gen", 0.5, 3000.0, False, 9000.0), ("c", "mem", 0.5, 1000.0, False, 9000.0),  # memorized first
        ("d", "gen", 0.5, 9000.0, True, 9000.0), ("d", "mem", 0.5, 800.0, False, 9000.0),    # never generalized
        ("a", "gen", 0.1, 50.0, False, 9000.0), ("b", "mem", 0.1, 900.0, False, 7000.0),     # other theta: ignored
    ])
    c = regime_counts(t, 0.5)
    assert (c["n"], c["window"], c["gen_censored_mem"], c["gen_seen"]) == (4, 1, 1, 3)
    assert c["censored_last_steps"] == [7000.0]
    line = regime_line(t, 0.5)
    assert line.startswith("Regime: 1 of 4 trials generalized, then memorized")
    assert "1 generalized, memorization censored" in line and "7000" in line
