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
