"""Independent grammar seeds and intervals over clusters of trials that share a grammar and data draw
(SCIENCE.md, "Nulls that match what they are compared with": Independence)."""
from __future__ import annotations

import numpy as np
import pytest

from rhm import draw_seed, rank_trees


def _two_grammar_seeds(draw: str) -> list:
    from sweeps.spec import SweepSpec, load_spec
    from sweeps.trial import build_data

    spec = load_spec("tiny", overrides=["axes.grammar.seed=[0,1]", "axes.P=[8]", "axes.seed=[0]",
                                        "axes.tail=[{family: power, a: 1.0}]", f"data.draw={draw}"])
    trials = spec.trials()
    assert sorted(t.grammar.seed for t in trials) == [0, 1] and {t.data_seed for t in trials} == {0}
    return trials, [build_data(t) for t in trials]


def test_two_grammar_seeds_draw_different_rank_trees() -> None:
    """The default draw seeds T by grammar seed and data seed: the two grammars' training rank trees differ (with
    the legacy draw they are identical: one sample counted twice) and the trial ids say which draw was used."""
    trials, data = _two_grammar_seeds("grammar+data")
    ranks = [rank_trees(d.grammar, d.train).flat() for d in data]
    assert not np.array_equal(ranks[0], ranks[1])
    assert data[0].index.copy_baseline != pytest.approx(data[1].index.copy_baseline)
    old_trials, old = _two_grammar_seeds("data")
    old_ranks = [rank_trees(d.grammar, d.train).flat() for d in old]
    np.testing.assert_array_equal(old_ranks[0], old_ranks[1])
    assert {t.data_draw for t in trials} == {"grammar+data"} and {t.data_draw for t in old_trials} == {"data"}
    assert not {t.trial_id for t in trials} & {t.trial_id for t in old_trials}


def test_draw_seed() -> None:
    """Legacy draw: the data seed itself; the default: a function of both seeds, different per grammar seed."""
    assert draw_seed(5, 3, "data") == 3
    assert draw_seed(0, 3) != draw_seed(1, 3) and draw_seed(0, 3) == draw_seed(0, 3)
    assert 0 <= draw_seed(7, 2**40) < 2**62
    with pytest.raises(ValueError, match="draw must be one of"):
        draw_seed(0, 0, "both")


def test_cluster_keys_follow_the_grammar_and_the_draw() -> None:
    """Legacy draw: two grammar seeds with one data seed are one unit; the default draw: two; the tail and P never
    split a unit (same rules, same draw stream); another data seed or another grammar shape is another unit."""
    import pyarrow as pa

    from analysis.stats import cluster_keys

    rows = [  # (trial, grammar seed, data seed, draw, tail, P, L)
        ("a", 0, 0, "data", "uniform", 64, 3), ("b", 1, 0, "data", "uniform", 64, 3),
        ("c", 0, 0, "data", "power(a=1)", 128, 3), ("d", 0, 1, "data", "uniform", 64, 3),
        ("e", 0, 0, "grammar+data", "uniform", 64, 3), ("f", 1, 0, "grammar+data", "uniform", 64, 3),
        ("g", 0, 0, "grammar+data", "power(a=2)", 16, 3), ("h", 0, 0, "grammar+data", "uniform", 64, 2),
    ]
    cols = ["trial_id", "cfg.grammar.seed", "seed", "data_draw", "tail", "P", "L"]
    t = pa.table({c: [r[i] for r in rows] for i, c in enumerate(cols)})
    t = t.append_column("cfg.grammar.v", pa.array([8] * len(rows)))
    k = dict(zip(t.column("trial_id").to_pylist(), cluster_keys(t)))
    assert k["a"] == k["b"] == k["c"] != k["d"]
    assert k["e"] == k["g"] != k["f"] and k["e"] != k["h"] and k["e"] != k["a"]
    assert len(set(cluster_keys(t.drop_columns(["seed"])))) == len(rows)     # nothing known: each its own


def test_cluster_bootstrap_counts_a_duplicated_trial_once() -> None:
    """Trials duplicated in pairs that share a draw (one sample counted twice): the cluster bootstrap gives exactly
    the interval of the undoubled trials; treating the copies as independent narrows it by about sqrt(2)."""
    from analysis.stats import bootstrap_mean

    x = np.random.default_rng(1).normal(size=12)
    dup, pairs = np.repeat(x, 2), np.repeat(np.arange(12), 2)
    once = bootstrap_mean(x, 4000, np.random.default_rng(0))
    clustered = bootstrap_mean(dup, 4000, np.random.default_rng(0), clusters=pairs)
    np.testing.assert_allclose(clustered, once, rtol=1e-12)
    naive = bootstrap_mean(dup, 4000, np.random.default_rng(0))
    ratio = (naive[2] - naive[1]) / (once[2] - once[1])
    assert 0.6 < ratio < 0.8, ratio
    assert np.isnan(bootstrap_mean(dup[:4], 100, np.random.default_rng(0), clusters=pairs[:4])[1])   # 2 clusters


def test_law_intervals_resample_clusters() -> None:
    """fit_group on every trial doubled into a shared cluster gives the undoubled law's interval; as independent
    trials the interval of beta shrinks (the defect the cluster bootstrap removes)."""
    from analysis.fits import fit_group
    from analysis.synthetic import planted_onsets

    d = planted_onsets([16, 32, 64, 128], n_seeds=4, logC=1.0, beta=1.0, sigma=0.3, budget=1e9,
                       rng=np.random.default_rng(3))
    x, y, cen = d["logP"], d["logtau"], d["censored"]
    once = fit_group(x, y, cen, n_boot=400, seed=1)
    two = lambda a: np.repeat(a, 2)   # noqa: E731
    clustered = fit_group(two(x), two(y), two(cen), n_boot=400, seed=1, clusters=two(np.arange(x.size)))
    assert clustered["beta"] == pytest.approx(once["beta"], rel=1e-6)
    assert clustered["beta_lo"] == pytest.approx(once["beta_lo"], rel=1e-4)
    assert clustered["beta_hi"] == pytest.approx(once["beta_hi"], rel=1e-4)
    naive = fit_group(two(x), two(y), two(cen), n_boot=400, seed=1)
    assert naive["beta_hi"] - naive["beta_lo"] < 0.85 * (once["beta_hi"] - once["beta_lo"])


def test_headline_never_prints_an_empty_or_zero_width_interval() -> None:
    """Laws, order and slop rows whose intervals are NaN or of zero width read "interval not estimated: <why>"."""
    import pyarrow as pa

    from analysis.headline import law_lines, order_lines, slop_lines

    nan = float("nan")
    laws = pa.Table.from_pylist([
        dict(theta=0.5, onset="mem", metric="mem_twin", status="ok", scope="group", tail="uniform", L=2, beta=1.1,
             beta_lo=nan, beta_hi=nan, n_obs=2, n_cens=0, n_trials=2, n_clusters=2, n_boot_ok=0),
        dict(theta=0.5, onset="mem", metric="mem_twin", status="ok", scope="group", tail="power(a=1)", L=2, beta=0.9,
             beta_lo=0.9, beta_hi=0.9, n_obs=4, n_cens=0, n_trials=4, n_clusters=4, n_boot_ok=200)])
    order = pa.Table.from_pylist([dict(tail="uniform", L=2, n_rho_proto=2, n_clusters_rho_proto=1,
                                       rho_proto_mean=-0.2, rho_proto_null_mean=-0.1, rho_proto_excess_mean=-0.1,
                                       rho_proto_excess_lo=nan, rho_proto_excess_hi=nan)])
    slop = pa.Table.from_pylist([dict(tail="uniform", L=2, level=-1, overprod_before=0.1, overprod_before_lo=nan,
                                      overprod_before_hi=nan, n_before=1, n_clusters_before=1, strings_before=200.0,
                                      overprod_after=nan, n_after=0)])
    text = "\n".join(law_lines(laws) + order_lines(order) + slop_lines(slop))
    assert "n/a to n/a" not in text and "0.90 to 0.90" not in text
    assert "interval not estimated: 2 trial(s) in 2 cluster(s)" in text
    assert "interval not estimated: every resample gave the same value" in text
    assert "interval not estimated: 2 trial(s) in 1 cluster(s)" in text and "1 trial(s) in 1 cluster(s)" in text


def test_each_order_null_pools_on_the_same_trials_over_clusters() -> None:
    """pool_order pools every null (volume-matched, grammar-faithful) on the trials where the observed value and
    that null are both defined, resamples clusters (4 trials in 2 clusters give no interval), and counts and names
    the trials where a null is undefined; the headline says so with the volume-matched null first."""
    import numpy as np
    import pyarrow as pa

    from analysis.headline import order_lines
    from analysis.memorder import pool_order

    nan = float("nan")
    obs = np.array([-0.5, -0.4, -0.3, -0.2, -0.1, 0.3])
    vol = np.array([-0.2, -0.2, -0.2, -0.2, nan, nan])            # undefined where a trial copied nothing
    order = pa.table({"trial_id": [f"t{i}" for i in range(6)], "cluster": ["a", "a", "b", "b", "c", "d"],
                      "rho_proto": obs, "rho_proto_vol_null": vol, "rho_proto_vol_excess": obs - vol,
                      "rho_proto_null": np.zeros(6), "rho_proto_excess": obs})
    (r,) = pool_order(order, n_boot=200).to_pylist()
    assert (r["n_rho_proto_vol"], r["n_clusters_rho_proto_vol"]) == (4, 2)
    assert r["rho_proto_vol_obs_mean"] == pytest.approx(obs[:4].mean())
    assert r["rho_proto_vol_null_mean"] == pytest.approx(-0.2)
    assert r["rho_proto_vol_excess_mean"] == pytest.approx(obs[:4].mean() + 0.2)
    assert np.isnan(r["rho_proto_vol_excess_lo"]) and np.isnan(r["rho_proto_vol_excess_hi"])
    assert r["n_rho_proto_vol_undefined"] == 2 and r["rho_proto_vol_undefined"] == "t4 t5"
    assert r["n_rho_proto_vol_no_null"] == 2
    # the grammar-faithful null is defined everywhere: 6 trials in 4 clusters, an interval around the mean
    assert (r["n_rho_proto"], r["n_clusters_rho_proto"], r["n_rho_proto_no_null"]) == (6, 4, 0)
    assert r["rho_proto_excess_mean"] == pytest.approx(obs.mean())
    assert r["rho_proto_excess_lo"] < obs.mean() < r["rho_proto_excess_hi"]
    (line,) = [x for x in order_lines(pa.Table.from_pylist([r])) if x.startswith("  rho(prototypicality, first")]
    assert line.index("vs volume-matched") < line.index("vs grammar-faithful")
    assert "interval not estimated: 4 trial(s) in 2 cluster(s)" in line and "undefined in 2: t4 t5" in line
    assert "2 trial(s) without this null left out" in line


def test_slop_against_both_references_resamples_clusters() -> None:
    """pool_slop and pool_trial_slop (the per-trial rows the findings commit) resample clusters for both slop
    references and their excess over the trial's null: 4 trials in 2 clusters give no interval, 4 in 4 do."""
    import numpy as np
    import pyarrow as pa

    from analysis.slop import pool_slop, pool_trial_slop, slop_from_tables, trial_slop

    curves, nulls = [], []
    for k in range(4):
        tid = f"t{k}"
        for step, v in ((10, 0.1 * k), (50, 0.1 * k + 0.2)):
            curves.append(dict(trial_id=tid, step=step, level=0, overprod=v, overprod_train=-v, slop_n=10.0))
        nulls += [dict(trial_id=tid, reference="grammar", null="empirical", level=0, null_mean=0.05, null_sd=0.01),
                  dict(trial_id=tid, reference="train", null="grammar", level=0, null_mean=-0.1, null_sd=0.01)]
    windows = pa.Table.from_pylist([dict(trial_id=f"t{k}", tau_mem=100.0, mem_censored=False, tau_gen=5.0,
                                         gen_censored=False) for k in range(4)])
    for seeds, estimated in (([0, 0, 1, 1], False), ([0, 1, 2, 3], True)):    # one grammar seed, data seeds
        trials = pa.table({"trial_id": [f"t{k}" for k in range(4)], "tail": ["uniform"] * 4, "L": [2] * 4,
                           "seed": seeds, "cfg.grammar.seed": [7] * 4, "data_draw": ["grammar+data"] * 4})
        table = slop_from_tables(pa.Table.from_pylist(curves), trials, windows, nulls=pa.Table.from_pylist(nulls))
        per_trial = trial_slop(table)
        assert len(set(per_trial.column("cluster").to_pylist())) == len(set(seeds))
        (r,) = pool_slop(table, n_boot=200).to_pylist()
        (again,) = pool_trial_slop(per_trial, n_boot=200).to_pylist()
        assert again.keys() == r.keys() and all(again[k] == r[k] or again[k] != again[k] and r[k] != r[k] for k in r)
        assert (r["n_before"], r["n_clusters_before"]) == (4, len(set(seeds)))
        assert r["overprod_before_excess"] == pytest.approx(np.mean([0.1 * k + 0.1 for k in range(4)]) - 0.05)
        for key in ("overprod_before", "overprod_before_excess", "overprod_train_before_excess"):
            assert np.isfinite(r[f"{key}_lo"]) == estimated, (seeds, key, r[f"{key}_lo"])
