"""Nulls that match what they are compared with (SCIENCE.md): generators whose behaviour is known, run through the
trial's real evaluation loop and store (the stand-in of `tests.test_nulls`), scored by the analysis code.

- a copier whose copies follow p(x) at a volume that grows over training (much more than a grammar-faithful
  generator copies): the volume-matched order excess is 0 within noise, the grammar-faithful one is not;
- the empirical-grammar generator (T's production frequencies, no string stored): the order excess against the
  empirical-grammar null and slop against its references' nulls are 0 within noise, while its slop against the
  grammar alone reads as over-production.
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd

from analysis import memorder, slop
from tests.test_nulls import Generator, run_trial

N_TRIALS = 6


class ProportionalCopier(Generator):
    """At evaluation e, each draw is a copy of T with probability q_e (q growing linearly from `q0` to `q1`), the
    copied string drawn proportionally to p(x); otherwise a grammar sample (whose copies also follow p(x))."""

    def __init__(self, grammar, train, schedule, prob, q0=0.05, q1=0.5):
        super().__init__(grammar, train, schedule)
        self.prob, self.q0, self.q1 = prob / prob.sum(), q0, q1

    def sample(self, n, steps, seed):
        rng = np.random.default_rng(seed)
        x = self.grammar.sample(n, rng)
        q = self.q0 + (self.q1 - self.q0) * self.schedule.index(self.step) / (len(self.schedule) - 1)
        hit = rng.random(n) < q
        x[hit] = self.train[rng.choice(len(self.train), size=int(hit.sum()), p=self.prob)]
        import torch
        return torch.from_numpy(x)


class EmpiricalGenerator(Generator):
    """Samples the empirical grammar of T: learned the parts' frequencies, stored no string."""

    def sample(self, n, steps, seed):
        import torch
        return torch.from_numpy(self.grammar.sample(n, np.random.default_rng(seed)))


def _trials(tmp_path, monkeypatch, make, tail, P=64, n=N_TRIALS):
    for seed in range(n):
        run_trial(tmp_path, monkeypatch, tail, P, seed=seed, make=make)


def _excess(order, column):
    e = order.column(column).to_numpy(zero_copy_only=False).astype(float)
    e = e[np.isfinite(e)]
    return e.mean(), e.std(ddof=1) / math.sqrt(e.size), e.size


def test_volume_matched_null_absorbs_a_proportional_copier(tmp_path, monkeypatch):
    _trials(tmp_path, monkeypatch, lambda data, schedule: ProportionalCopier(
        data.grammar, data.train, schedule, np.exp(data.index.loglik)), "fat")
    order = memorder.memorder(tmp_path / "store", n_null=200)
    assert order.num_rows == N_TRIALS and set(order.column("vol_note").to_pylist()) == {""}
    # the copier copies far more of T than a grammar-faithful generator does: volumes differ
    n_copied = order.column("n_copied").to_numpy().astype(float)
    assert (n_copied > 2 * order.column("n_copied_null").to_numpy()).all()
    mean, se, n = _excess(order, "rho_proto_vol_excess")
    assert n == N_TRIALS and abs(mean) < 4 * se, (mean, se)
    g_mean, g_se, _ = _excess(order, "rho_proto_excess")
    assert abs(g_mean) > 4 * g_se and abs(g_mean) > 3 * abs(mean), (g_mean, g_se, mean)
    (row,) = [r for r in memorder.pool_order(order).to_pylist() if r["tail"] == "*"]
    assert row["rho_proto_vol_excess_lo"] <= 0 <= row["rho_proto_vol_excess_hi"], row
    assert not (row["rho_proto_excess_lo"] <= 0 <= row["rho_proto_excess_hi"]), row
    assert row["n_rho_proto_vol_undefined"] == 0


def test_empirical_grammar_generator_sits_on_its_nulls(tmp_path, monkeypatch):
    _trials(tmp_path, monkeypatch, lambda data, schedule: EmpiricalGenerator(data.index.empirical, data.train,
                                                                             schedule), "uniform", P=32, n=8)
    order = memorder.memorder(tmp_path / "store", n_null=200)
    for name in ("rho_proto", "partial_proto"):
        mean, se, n = _excess(order, f"{name}_emp_excess")
        assert n == 8 and abs(mean) < 4 * se + 1e-9, (name, mean, se)
    # uniform rules: the grammar gives no order at all, the empirical grammar copies strings of common parts first
    g_mean, g_se, _ = _excess(order, "rho_proto_excess")
    assert g_mean < -3 * g_se and g_mean < -2 * abs(mean), (g_mean, g_se, mean)
    from analysis.store import Store

    st = Store(tmp_path / "store")
    nulls = st.read("slop_nulls").to_pandas().set_index(["trial_id", "reference", "level"])
    curves = st.read("level_curves", columns=["trial_id", "step", "level", "overprod", "overprod_train"]).to_pandas()
    whole = st.read("curves", columns=["trial_id", "step", "overprod", "overprod_train"]).to_pandas()
    whole["level"] = slop.ALL_LEVELS
    both = pd.concat([curves, whole])
    z_emp, z_gram = [], []
    for (tid, level), g in both.groupby(["trial_id", "level"]):
        ref = nulls.loc[(tid, "grammar", level)]
        assert ref["null"] == "empirical" and ref["n_strings"] > 0
        v = g["overprod"].dropna()
        if ref["null_sd"] == 0:   # every node the generator can make is common: the value is its null, exactly
            assert np.allclose(v, ref["null_mean"])
            continue
        z_emp.append((v.mean() - ref["null_mean"]) / (ref["null_sd"] / math.sqrt(v.size)))
        z_gram.append(v.mean() / (ref["null_sd"] / math.sqrt(v.size)))
    z_emp = np.array(z_emp)
    # against its own null the generator is noise at every level; against the grammar alone it reads as slop
    assert np.abs(z_emp).max() < 4.5 and abs(z_emp.mean()) < 4.5 / math.sqrt(z_emp.size), z_emp
    assert np.mean(z_gram) > 3, z_gram
