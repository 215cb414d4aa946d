"""Onset extraction on hand-made curves (exact values by hand), censoring, vectorization and first-copy steps."""
from __future__ import annotations

import math

import numpy as np
import pyarrow as pa
import pytest

from analysis.onset import extract_onsets, first_copy_from_tables, onsets_from_tables
from analysis.synthetic import synthetic_tables


def one(steps, y, thetas=(0.5,), consecutive=1):
    """Onsets of one curve; the first-crossing rule unless `consecutive` says otherwise."""
    r = extract_onsets(np.zeros(len(steps), int), steps, y, thetas, consecutive=consecutive)
    return r["tau"][0], r["censored"][0], r["left_censored"][0]


def test_exact_crossing_at_an_evaluation():
    tau, cen, left = one([10, 100, 1000], [0.0, 0.5, 1.0])
    assert tau[0] == pytest.approx(100.0) and not cen[0] and not left[0]


def test_crossing_between_evaluations_is_log_interpolated():
    tau, cen, _ = one([10, 100], [0.2, 0.8])
    # log tau = log 10 + (0.5 - 0.2) / (0.8 - 0.2) * (log 100 - log 10) = 1.5 decades
    assert tau[0] == pytest.approx(10 ** 1.5) and not cen[0]
    tau, _, _ = one([10, 1000], [0.0, 0.4], thetas=(0.1,))
    assert tau[0] == pytest.approx(math.exp(math.log(10) + 0.25 * math.log(100)))


def test_never_crossing_is_right_censored_at_last_step():
    tau, cen, left = one([10, 100, 1000], [0.1, 0.2, 0.3])
    assert tau[0] == 1000 and cen[0] and not left[0]


def test_non_monotone_curve_takes_first_crossing():
    steps, y = [10, 100, 1000, 10000], [0.1, 0.6, 0.2, 0.9]
    tau, cen, _ = one(steps, y, thetas=(0.5, 0.7))
    assert tau[0] == pytest.approx(10 ** (1 + 0.4 / 0.5))          # crossed between 10 and 100; the dip is ignored
    assert tau[1] == pytest.approx(10 ** (3 + 0.5 / 0.7))          # 0.7 first reached between 1000 and 10000
    assert not cen.any()


def test_left_censored_when_above_at_first_evaluation_and_nan_rows_skipped():
    tau, cen, left = one([10, 100], [0.7, 0.9])
    assert tau[0] == 10 and left[0] and not cen[0]
    tau, cen, _ = one([10, 100, 1000], [0.2, np.nan, 0.8])           # interpolate across the NaN evaluation
    assert tau[0] == pytest.approx(10 ** 2) and not cen[0]


def test_two_evaluation_rule_skips_a_lone_crossing_and_censors_a_last_one():
    """The default rule needs theta at 2 evaluations in a row: a lone spike is not an onset; the onset is
    interpolated into the interval before the first run of two; a crossing at the last evaluation is censored."""
    steps, y = [10, 100, 1000, 10000, 100000], [0.0, 0.6, 0.2, 0.7, 0.9]
    tau, cen, _ = one(steps, y, consecutive=2)
    assert tau[0] == pytest.approx(10 ** (3 + 0.3 / 0.5)) and not cen[0]   # run 0.7, 0.9 from 10000; 0.2 -> 0.7
    tau, cen, _ = one(steps, y, consecutive=1)
    assert tau[0] == pytest.approx(10 ** (1 + 0.5 / 0.6)) and not cen[0]   # first crossing: the spike
    tau, cen, _ = one([10, 100, 1000], [0.0, 0.1, 0.8], consecutive=2)
    assert tau[0] == 1000 and cen[0]
    tau, cen, _ = one([10, 100, 1000], [0.0, 0.6, 0.8], consecutive=3)
    assert cen[0]
    r = extract_onsets(np.array([0, 0, 1, 1]), np.array([10, 100, 10, 100]), np.array([0.0, 0.9, 0.9, 0.0]),
                       (0.5,), consecutive=2)
    assert r["censored"][:, 0].all()                              # a run never spans two trials
    with pytest.raises(ValueError, match="consecutive must be an integer >= 1"):
        one([10], [0.0], consecutive=0)


def test_vectorized_over_shuffled_trials_matches_single():
    rng = np.random.default_rng(0)
    steps = np.unique(np.geomspace(10, 1e4, 30).astype(int))
    ys = [np.clip(np.cumsum(rng.uniform(-0.05, 0.1, steps.size)), 0, 1) for _ in range(50)]
    codes = np.repeat(np.arange(50), steps.size)
    perm = rng.permutation(codes.size)
    r = extract_onsets(codes[perm], np.tile(steps, 50)[perm], np.concatenate(ys)[perm], (0.1, 0.5, 0.9))
    for k in range(50):
        tau, cen, left = one(steps, ys[k], (0.1, 0.5, 0.9), consecutive=2)
        np.testing.assert_allclose(r["tau"][k], tau)
        np.testing.assert_array_equal(r["censored"][k], cen)


def test_onsets_table_recovers_planted_onsets_and_keeps_censored():
    tb = synthetic_tables(n_seeds=3, budget=3000, n_evals=40, detail_trials=0)
    on = onsets_from_tables(tb["trials"], tb["curves"], thetas=(0.5,), consecutive=1)   # a crossing at the last
    assert on.num_rows == 2 * tb["trials"].num_rows                 # mem and gen rows, nothing dropped
    mem = on.filter(pa.compute.equal(on["onset"], "mem")).join(tb["trials"].select(["trial_id", "true_tau"]), "trial_id")
    d = mem.to_pydict()
    tau, true, cen = np.array(d["tau"]), np.array(d["true_tau"]), np.array(d["censored"])
    assert cen.any() and (~cen).any()
    np.testing.assert_array_equal(cen, true > 3000)
    np.testing.assert_allclose(np.log(tau[~cen]), np.log(true[~cen]), atol=0.02)
    assert np.all(tau[cen] == 3000)


def test_first_copy_steps_with_never_copied_censored():
    copies = pa.table({"trial_id": ["a", "a", "a", "b"], "step": [100, 10, 100, 50], "train_index": [0, 0, 1, 0],
                       "count": [2, 1, 1, 1]})
    samples = pa.table({"trial_id": ["a", "a", "a", "b"], "train_index": [0, 1, 2, 0]})
    last = pa.table({"trial_id": ["a", "b"], "last_step": [1000, 500]})
    d = first_copy_from_tables(copies, samples, last).to_pydict()
    assert d["first_step"] == [10, 100, 1000, 50]
    assert d["censored"] == [False, False, True, False]


def _q_exact(pT: float, pTw: float, N: int, theta: float) -> float:
    """P(mem_twin >= theta) for a grammar-faithful sampler, exactly: copies c ~ Bin(N, p(T)), then twin hits
    t | c ~ Bin(N - c, p(T') / (1 - p(T))), and mem_twin = c/N - t/N * p(T)/p(T')."""
    from scipy import stats
    c = np.arange(N + 1)
    tmax = np.floor((c / N - theta) * N * pTw / pT + 1e-9)
    pt = np.where(tmax >= 0, stats.binom.cdf(tmax, N - c, pTw / (1 - pT)), 0.0)
    return float((stats.binom.pmf(c, N, pT) * pt).sum())


def _run_prob(q: float, E: int, k: int) -> float:
    """P(some k evaluations in a row succeed among E independent ones, each with probability q): a Markov chain
    over the current run length."""
    state, hit = np.eye(k)[0], 0.0
    for _ in range(E):
        hit += state[-1] * q
        state = np.r_[state.sum() * (1 - q), state[:-1] * q]
    return hit


def test_onsets_of_a_grammar_faithful_sampler_against_the_exact_null():
    """L = 2, thin rules (power(a=2), the depth sweep's grammar), P = 64: p(T) above 0.5. A grammar-faithful
    sampler's mem_twin over 25 evaluations at N = 256, 4,000 replicates (multinomial draws: exact for it), through
    extract_onsets: the share of replicates with an onset matches the exact probability (a run of k evaluations at
    or above theta) within 4 standard errors, for both rules and theta = 0.1 and 0.5.

    Measured here: at theta = 0.1 the first crossing gives an onset in 99.8% of replicates (SCIENCE.md: 0.96 or
    more) and the 2-evaluation rule in 64%: the rule alone does not make theta = 0.1 readable at this p(T) (the
    issue hoped for at most 5%); the null-sd flag (sd 0.13 > theta/4) is what keeps such a trial out of the laws.
    At theta = 0.5 the 2-evaluation rule gives at most 5% (below 0.1% here)."""
    from analysis.flags import twin_null_sd
    from rhm import Grammar, GrammarSpec, RuleDist, draw_seed, sample_unique, twin_set

    g = Grammar.from_spec(GrammarSpec(v=16, n_c=4, m=4, s=2, L=2, seed=0, levels=RuleDist("power", a=2.0)))
    ts = twin_set(g, sample_unique(g, 64, draw_seed(0, 0)))
    pT, pTw, N, E, R = ts.train_mass, ts.mass, 256, 25, 4000
    assert pT > 0.5
    assert twin_null_sd(pT, pTw, N) > 0.1 / 4                       # flagged at theta = 0.1 (and at 0.5: p(T))
    counts = np.random.default_rng(7).multinomial(N, [pT, pTw, 1 - pT - pTw], size=(R, E))
    mem_twin = counts[..., 0] / N - counts[..., 1] / N * pT / pTw
    codes, steps = np.repeat(np.arange(R), E), np.tile(np.geomspace(10, 1e5, E), R)
    rate = {}
    for k in (1, 2):
        r = extract_onsets(codes, steps, mem_twin.ravel(), (0.1, 0.5), consecutive=k)
        for j, theta in enumerate((0.1, 0.5)):
            seen = float((~r["censored"][:, j]).mean())
            exact = _run_prob(_q_exact(pT, pTw, N, theta), E, k)
            assert abs(seen - exact) <= 4 * np.sqrt(max(exact * (1 - exact), 1e-4) / R), (k, theta, seen, exact)
            rate[k, theta] = seen
    assert rate[1, 0.1] >= 0.96 and rate[2, 0.1] < 0.8 * rate[1, 0.1]
    assert rate[2, 0.5] <= 0.05 and rate[2, 0.5] <= rate[1, 0.5]
