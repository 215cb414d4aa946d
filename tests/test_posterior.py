"""Exact posteriors of partially observed strings against brute force: every string of a tiny grammar with its
probability from a recursive expansion of the rules (tests/test_rhm.brute_strings, none of the grammar's
algorithms), conditioned by direct summation."""
from __future__ import annotations

import numpy as np
import pytest

from rhm import Grammar, GrammarSpec, RuleDist
from rhm.posterior import (GrammarPosterior, channel_evidence, grammar_posterior, masked_evidence,
                           memorizer_posterior)
from test_rhm import brute_strings

# Tiny grammars: L 2..4, s 2 and 3, tails at several levels, weighted roots (P_max <= a few thousand).
SPECS = [
    dict(v=4, n_c=3, m=2, s=2, L=2, levels=RuleDist("power", a=1.5), root=RuleDist("power", a=0.8)),
    dict(v=3, n_c=2, m=2, s=3, L=2, levels=(RuleDist("exp", xi=0.7), RuleDist()), root=RuleDist("exp", xi=0.5)),
    dict(v=4, n_c=2, m=2, s=2, L=3, levels=(RuleDist(), RuleDist("power", a=2.0), RuleDist("exp", xi=0.6)),
         root=RuleDist("power", a=1.2)),
    dict(v=3, n_c=2, m=2, s=2, L=4, levels=(RuleDist("power", a=1.0),) * 2 + (RuleDist(),) * 2,
         root=RuleDist()),
    dict(v=5, n_c=2, m=3, s=2, L=2, levels=(RuleDist(), RuleDist("power", a=3.0)), root=RuleDist("power", a=2)),
]
IDS = [f"v{k['v']}s{k['s']}L{k['L']}" for k in SPECS]


_TABLES: dict[GrammarSpec, dict] = {}


def _brute_strings(g: Grammar) -> dict[tuple[int, ...], float]:
    """brute_strings, once per grammar (the L = 4 one has 2**16 strings)."""
    if g.spec not in _TABLES:
        _TABLES[g.spec] = brute_strings(g)
    return _TABLES[g.spec]


def brute_posterior(g: Grammar, evidence: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(marginals (n, d, v), log p(z) (n,)) by summing p(x) prod_i e_i(x_i) over every string x."""
    table = _brute_strings(g)
    X = np.array(list(table), dtype=np.int64)
    p = np.array(list(table.values()))
    n, d, v = evidence.shape
    lik = np.ones((n, len(X)))
    for i in range(d):
        lik *= evidence[:, i, X[:, i]]
    w = lik * p
    Z = w.sum(1)
    onehot = (X[:, :, None] == np.arange(v)).astype(float).reshape(len(X), d * v)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (w @ onehot).reshape(n, d, v) / Z[:, None, None], np.log(Z)


def _grammar(kw: dict) -> Grammar:
    return Grammar.from_spec(GrammarSpec(**kw, seed=5))


def _masks(g: Grammar, rng: np.random.Generator, n: int, rates: tuple[float, ...]) -> np.ndarray:
    """Valid strings masked at several rates, plus fully masked and fully observed rows."""
    x = g.sample(n, rng)
    rate = np.resize(np.asarray(rates), n)[:, None]
    z = np.where(rng.random(x.shape) < rate, g.spec.v, x)
    z[0] = g.spec.v                                          # fully masked: the prior marginals
    z[1] = x[1]                                              # fully observed: a point mass
    return z


@pytest.mark.parametrize("kw", SPECS, ids=IDS)
def test_masked_posterior_matches_brute_force(kw):
    g = _grammar(kw)
    rng = np.random.default_rng(0)
    z = _masks(g, rng, 60, (0.2, 0.5, 0.8, 0.95))
    e = masked_evidence(z, g.spec.v)
    got = GrammarPosterior(g).masked(z)
    want, want_logz = brute_posterior(g, e)
    np.testing.assert_allclose(got.marginals, want, rtol=0, atol=1e-9)
    np.testing.assert_allclose(got.log_evidence, want_logz, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(got.marginals.sum(-1), 1.0, atol=1e-12)
    observed = z < g.spec.v
    assert np.all(got.marginals[observed, z[observed]] == pytest.approx(1.0, abs=1e-12))
    x1 = z[1]                                                # fully observed: p(z) = p(x)
    assert got.log_evidence[1] == pytest.approx(np.log(_brute_strings(g)[tuple(x1.tolist())]), rel=1e-9)


@pytest.mark.parametrize("kw", SPECS, ids=IDS)
def test_channel_posterior_matches_brute_force(kw):
    """Uniform diffusion: every token through the symmetric channel, including noisy tokens off the language and
    the two ends abar = 0 (no information: the prior) and abar = 1 (observed)."""
    g = _grammar(kw)
    rng = np.random.default_rng(1)
    n, v = 40, g.spec.v
    x = g.sample(n, rng)
    abar = np.concatenate([[0.0, 1.0], rng.uniform(0.01, 0.99, n - 2)])
    keep = rng.random(x.shape) < abar[:, None]
    z = np.where(keep, x, rng.integers(0, v, x.shape))
    z[1] = x[1]
    e = channel_evidence(z, abar, v)
    got = grammar_posterior(g, e)
    want, want_logz = brute_posterior(g, e)
    np.testing.assert_allclose(got.marginals, want, rtol=0, atol=1e-9)
    np.testing.assert_allclose(got.log_evidence, want_logz, rtol=1e-9)
    prior, _ = brute_posterior(g, np.ones((1, g.spec.d, v)))
    np.testing.assert_allclose(got.marginals[0], prior[0], atol=1e-9)


def test_impossible_observation_is_nan_not_a_guess():
    g = _grammar(SPECS[0])
    E = set(_brute_strings(g))
    bad = next(np.array(x) for x in np.ndindex(*(g.spec.v,) * g.spec.d) if tuple(x) not in E)
    for got in (GrammarPosterior(g).masked(bad[None]), grammar_posterior(g, masked_evidence(bad[None], g.spec.v))):
        assert np.isnan(got.marginals).all() and got.log_evidence[0] == -np.inf


def test_underflow_is_rescaled_on_long_strings():
    """d = 2**10 positions observed through a weak channel: p(z) underflows float64 by far, the posterior must not."""
    g = Grammar.from_spec(GrammarSpec(v=6, n_c=2, m=3, s=2, L=10, seed=1))
    rng = np.random.default_rng(2)
    x = g.sample(3, rng)
    got = grammar_posterior(g, channel_evidence(x, 0.9, g.spec.v))
    assert np.isfinite(got.log_evidence).all() and got.log_evidence.max() < -745
    np.testing.assert_allclose(got.marginals.sum(-1), 1.0, atol=1e-9)
    assert (got.marginals.argmax(-1) == x).mean() > 0.99


@pytest.mark.parametrize("kw", SPECS[:3], ids=IDS[:3])
def test_memorizer_posterior_matches_brute_force(kw):
    g = _grammar(kw)
    rng = np.random.default_rng(3)
    train = g.sample(12, rng)
    z = _masks(g, rng, 30, (0.3, 0.6, 0.9))
    z[2:8] = np.where(rng.random((6, g.spec.d)) < 0.5, g.spec.v, train[:6])   # consistent with some training rows
    e = masked_evidence(z, g.spec.v)
    got = memorizer_posterior(train, e)
    for r in range(len(z)):
        ok = [np.all((z[r] == g.spec.v) | (z[r] == t)) for t in train]
        if not any(ok):
            assert np.isnan(got.marginals[r]).all() and got.log_evidence[r] == -np.inf
            continue
        rows = train[np.array(ok)]
        want = np.stack([(rows[:, i, None] == np.arange(g.spec.v)).mean(0) for i in range(g.spec.d)])
        np.testing.assert_allclose(got.marginals[r], want, atol=1e-12)
        assert got.log_evidence[r] == pytest.approx(np.log(len(rows) / len(train)), rel=1e-12)
    # the channel: weights prod_i e_i(train_p[i]) over the training rows
    ce = channel_evidence(g.sample(5, rng), 0.7, g.spec.v)
    got = memorizer_posterior(train, ce)
    w = np.prod(ce[:, np.arange(g.spec.d), train], axis=-1)                      # (n, P)
    onehot = (train[:, :, None] == np.arange(g.spec.v)).astype(float)
    np.testing.assert_allclose(got.marginals, np.einsum("np,pdv->ndv", w / w.sum(1, keepdims=True), onehot),
                               atol=1e-12)


def test_bad_input_is_named():
    g = _grammar(SPECS[0])
    with pytest.raises(ValueError, match="token 5 outside"):
        masked_evidence(np.full((1, g.spec.d), 5), g.spec.v)
    with pytest.raises(ValueError, match="abar must lie in"):
        channel_evidence(np.zeros((1, g.spec.d), int), 1.5, g.spec.v)
    with pytest.raises(ValueError, match="evidence must have shape"):
        GrammarPosterior(g).marginals(np.ones((2, g.spec.d, g.spec.v + 1)))


@pytest.mark.parametrize("kw", SPECS, ids=IDS)
def test_masked_fast_path_equals_general_propagation(kw, monkeypatch):
    """The block-table path (`masked`) and the general one (`marginals` of masked_evidence) are the same numbers;
    with the tables disabled `masked` falls back to the general path."""
    g = _grammar(kw)
    z = _masks(g, np.random.default_rng(4), 80, (0.1, 0.5, 0.9))
    bp = GrammarPosterior(g)
    fast, slow = bp.masked(z), bp.marginals(masked_evidence(z, g.spec.v))
    np.testing.assert_allclose(fast.marginals, slow.marginals, atol=1e-12)
    np.testing.assert_allclose(fast.log_evidence, slow.log_evidence, rtol=1e-12)
    import rhm.posterior as posterior
    monkeypatch.setattr(posterior, "MASKED_TABLE_MAX", 0)
    np.testing.assert_array_equal(GrammarPosterior(g).masked(z).marginals, slow.marginals)
