"""Planted-law tests of the censoring-aware fits: recovery, interval coverage, naive-fit bias, undetermined groups."""
from __future__ import annotations

import io

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from analysis.fits import fit_group, fit_laws, print_laws, tobit_fit
from analysis.onset import onsets_from_tables
from analysis.synthetic import planted_onsets, synthetic_tables

PS = [64, 128, 256, 512, 1024]


def test_newton_matches_scipy_minimize():
    d = planted_onsets(PS, 8, 1.0, 1.0, 0.4, 2000, rng=np.random.default_rng(3))
    assert d["censored"].any()
    f = fit_group(d["logP"], d["logtau"], d["censored"], d["left"], n_boot=0)
    s = tobit_fit(d["logP"], d["logtau"], d["censored"], d["left"])
    assert f["beta"] == pytest.approx(s["beta"], abs=1e-5)
    assert f["sigma"] == pytest.approx(s["sigma"], abs=1e-5)
    assert f["loglik"] == pytest.approx(s["loglik"], abs=1e-6)


def test_planted_beta_recovered_within_interval():
    d = planted_onsets(PS, 20, 0.8, 1.5, 0.3, 1500, rng=np.random.default_rng(1))
    f = fit_group(d["logP"], d["logtau"], d["censored"], d["left"], n_boot=300)
    assert f["status"] == "ok" and f["n_cens"] > 0 and f["n_obs"] + f["n_cens"] == 100
    assert f["beta_lo"] <= 0.8 <= f["beta_hi"] and f["beta_wald_lo"] <= 0.8 <= f["beta_wald_hi"]
    assert 0.2 < f["sigma"] < 0.4 and f["pseudo_r2"] > 0.5 and f["ks_p"] > 0.001


def test_coverage_and_naive_bias_over_repetitions():
    """200 planted repetitions (~15% censored): 95% intervals cover beta 90-99%; OLS on observed points is biased."""
    rng = np.random.default_rng(7)
    cov_b, cov_w, err_t, err_o = [], [], [], []
    for r in range(200):
        d = planted_onsets(PS, 16, 1.0, 1.0, 0.5, 2500, rng=rng)
        f = fit_group(d["logP"], d["logtau"], d["censored"], d["left"], n_boot=200, seed=r)
        cov_b.append(f["beta_lo"] <= 1.0 <= f["beta_hi"])
        cov_w.append(f["beta_wald_lo"] <= 1.0 <= f["beta_wald_hi"])
        err_t.append(f["beta"] - 1.0)
        err_o.append(f["ols_beta"] - 1.0)
    cb, cw = np.mean(cov_b), np.mean(cov_w)
    print(f"coverage bootstrap={cb:.3f} wald={cw:.3f} mean error tobit={np.mean(err_t):+.4f} "
          f"ols={np.mean(err_o):+.4f}")
    assert 0.90 <= cb <= 0.99 and 0.90 <= cw <= 0.99
    se = np.std(err_t) / np.sqrt(len(err_t))
    assert abs(np.mean(err_t)) < 3 * se + 0.01                     # censored fit unbiased
    assert np.mean(err_o) < -0.05 and abs(np.mean(err_o)) > 4 * abs(np.mean(err_t))   # naive fit visibly biased


def test_undetermined_groups_never_crash():
    x = np.log([64, 128, 256, 512.0])
    f = fit_group(x, np.log([100, 200, 400, 800.0]), [False, True, True, True])
    assert f["status"] == "undetermined" and np.isnan(f["beta"]) and "observed" in f["reason"]
    f = fit_group(x, np.log([1000.0] * 4), [True] * 4)
    assert f["status"] == "undetermined" and f["n_cens"] == 4
    f = fit_group(np.log([64, 64, 512.0]), np.log([100, 110, 1000.0]), [False, False, True])
    assert f["status"] == "undetermined" and "single P" in f["reason"]
    f = fit_group(np.array([]), np.array([]), np.array([], bool))
    assert f["status"] == "undetermined" and f["n_trials"] == 0


def test_fit_laws_joint_recovers_planted_shifts():
    tb = synthetic_tables(tails=("uniform", "power(a=1)"), Ls=(2, 3), n_seeds=6, beta=1.0, sigma=0.3,
                          tail_shift={"power(a=1)": 0.6}, L_shift=0.3, budget=4000, detail_trials=0, seed=2)
    on = onsets_from_tables(tb["trials"], tb["curves"], thetas=(0.5,))
    laws = fit_laws(on, theta=0.5, n_boot=100)
    mem = laws.filter(pc.equal(laws["onset"], "mem")).to_pylist()
    joint = [r for r in mem if r["scope"] == "joint"][0]
    assert joint["beta_lo"] <= 1.0 <= joint["beta_hi"] and joint["reference"] == "uniform L=2"
    assert joint["n_cens"] > 0
    truth = {("uniform", 2): 0.0, ("uniform", 3): 0.3, ("power(a=1)", 2): 0.6, ("power(a=1)", 3): 0.9}
    for r in mem:
        if r["scope"] == "shift" and (r["tail"], r["L"]) != ("uniform", 2):
            assert r["shift_lo"] - 0.05 <= truth[(r["tail"], r["L"])] <= r["shift_hi"] + 0.05, r
    groups = [r for r in mem if r["scope"] == "group"]
    assert len(groups) == 4 and all(r["status"] == "ok" for r in groups)
    buf = io.StringIO()
    from rich.console import Console
    print_laws(laws, Console(file=buf, width=250))
    assert "common beta" in buf.getvalue() and "power(a=1)" in buf.getvalue()


def test_print_laws_collapses_an_onset_without_any_law():
    """An onset never fitted at any theta (no generalization at this scale) is one line, not rows of dashes."""
    from rich.console import Console
    tb = synthetic_tables(tails=("uniform",), Ls=(2,), Ps=(64, 256, 1024), n_seeds=3, budget=3000, n_evals=20,
                          detail_trials=0)
    laws = fit_laws(onsets_from_tables(tb["trials"], tb["curves"], thetas=(0.1, 0.5)), theta=(0.1, 0.5), n_boot=20)
    is_gen = pc.equal(laws["onset"], "gen")
    laws = laws.set_column(laws.schema.get_field_index("status"), "status",
                           pc.if_else(is_gen, "undetermined", laws["status"]))
    n_obs = {round(r["theta"], 2): r["n_obs"] for r in laws.filter(is_gen).to_pylist() if r["scope"] == "group"}
    buf = io.StringIO()
    print_laws(laws, Console(file=buf, width=250))
    out = buf.getvalue()
    lines = [ln for ln in out.splitlines() if ln.startswith("gen onset")]
    assert len(lines) == 1 and "no law at any theta" in lines[0]
    assert f"{n_obs[0.1]}/9 at theta 0.1" in lines[0] and f"{n_obs[0.5]}/9 at theta 0.5" in lines[0]
    assert "│ gen" not in out and "│ mem" in out              # mem keeps its rows; gen has none


def test_fit_store_reads_a_synthetic_store(tmp_path):
    from analysis.fits import fit_store, write_laws
    from analysis.synthetic import write_synthetic_store

    tb = synthetic_tables(tails=("uniform",), Ls=(2,), Ps=(64, 256, 1024), n_seeds=3, budget=3000, n_evals=20,
                          detail_trials=0)
    write_synthetic_store(tmp_path / "store", tb, sweep="s1")
    laws = fit_store(str(tmp_path / "store"), sweep="s1", n_boot=50)
    assert set(laws["theta"].to_pylist()) == {0.1, 0.5, 0.9}
    assert set(laws["onset"].to_pylist()) == {"mem", "gen"}
    pq, csv = write_laws(laws, tmp_path / "out")
    assert pq.stat().st_size > 0 and csv.read_text().startswith('"scope"')


def _covariate_onsets(seed: int, coef_tilt: float, coef_h: float, n_seeds: int = 6) -> pa.Table:
    """Onsets drawn from log tau = 1 + coef_h * entropy + coef_tilt * tilt + log P + 0.25 eps over six groups whose
    (entropy, tilt) vary independently, right-censored at a budget of 20,000 steps."""
    rng = np.random.default_rng(seed)
    groups = [("a", 6.0, -0.5), ("b", 6.0, 0.5), ("c", 7.0, -0.5), ("d", 7.0, 0.5), ("e", 6.5, 0.0), ("f", 7.5, 0.3)]
    rows = []
    for tail, h, tilt in groups:
        for P in (32, 64, 128, 256):
            for _ in range(n_seeds):
                lt = 1 + coef_h * h + coef_tilt * tilt + np.log(P) + 0.25 * rng.standard_normal()
                cens = lt > np.log(20_000)
                rows.append(dict(onset="mem", metric="mem_twin", theta=0.5, tail=tail, L=3, P=P,
                                 tau=float(min(np.exp(lt), 20_000)), censored=bool(cens), left_censored=False,
                                 entropy=h, entropy_tilt=tilt))
    return pa.Table.from_pylist(rows)


def test_covariate_law_recovers_planted_coefficients():
    on = _covariate_onsets(0, coef_tilt=0.8, coef_h=0.5)
    laws = fit_laws(on, theta=0.5, n_boot=100, covariates=("entropy", "entropy_tilt")).to_pylist()
    law = next(r for r in laws if r["scope"] == "covariate_law")
    assert law["status"] == "ok" and law["n_cens"] > 0 and law["beta_lo"] - 0.05 <= 1.0 <= law["beta_hi"] + 0.05
    terms = {r["term"]: r for r in laws if r["scope"] == "covariate"}
    assert set(terms) == {"intercept", "entropy", "entropy_tilt"}
    for name, truth in (("entropy", 0.5), ("entropy_tilt", 0.8)):
        t = terms[name]
        assert t["coef_lo"] - 0.05 <= truth <= t["coef_hi"] + 0.05, t
        assert t["coef_wald_lo"] - 0.05 <= truth <= t["coef_wald_hi"] + 0.05, t
    # the intercepts really are linear in the covariates: the LR test against free intercepts does not reject
    assert law["lr_df"] == 6 - 1 - 2 and law["lr_p"] > 0.01
    # no cluster column and no trial ids: every row is its own cluster, and the law says how many it resampled
    assert law["n_clusters"] == law["n_trials"] == on.num_rows
    grouped = on.append_column("cluster", pa.array([f"g{i % 4}" for i in range(on.num_rows)]))
    law4 = next(r for r in fit_laws(grouped, theta=0.5, n_boot=20, covariates=("entropy", "entropy_tilt")).to_pylist()
                if r["scope"] == "covariate_law")
    assert law4["n_clusters"] == 4
    # with no placement effect planted, the tilt's interval covers 0
    null = fit_laws(_covariate_onsets(1, coef_tilt=0.0, coef_h=0.5), theta=0.5, n_boot=100,
                    covariates=("entropy", "entropy_tilt")).to_pylist()
    tilt = next(r for r in null if r["scope"] == "covariate" and r["term"] == "entropy_tilt")
    assert tilt["coef_lo"] < 0 < tilt["coef_hi"]


def test_covariate_law_refuses_unidentified_covariates():
    on = _covariate_onsets(0, 0.8, 0.5)
    on = on.set_column(on.schema.get_field_index("entropy_tilt"), "entropy_tilt", on["entropy"])   # collinear
    laws = fit_laws(on, theta=0.5, n_boot=0, covariates=("entropy", "entropy_tilt")).to_pylist()
    law = next(r for r in laws if r["scope"] == "covariate_law")
    assert law["status"] == "undetermined" and "collinear" in law["reason"]
    with pytest.raises(KeyError, match="not columns of the onsets table"):
        fit_laws(on, theta=0.5, n_boot=0, covariates=("placement",))
