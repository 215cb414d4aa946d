"""The report renders from a store written through analysis.store and embeds every figure."""
from __future__ import annotations

import base64
from html.parser import HTMLParser

import pytest

from analysis.report import FIGURES, OVEREST_FIGURES, write_report
from analysis.synthetic import synthetic_tables


class _Figs(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.section: str | None = None
        self.images: dict[str, bytes] = {}
        self.tables = 0

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "section" and (a.get("id") or "").startswith("fig-"):
            self.section = a["id"][4:]
        if tag == "img" and self.section:
            src = a.get("src") or ""
            assert src.startswith("data:image/png;base64,")
            self.images[self.section] = base64.b64decode(src.split(",", 1)[1])
        if tag == "table":
            self.tables += 1


def test_report_from_synthetic_store(tmp_path):
    from analysis.synthetic import write_synthetic_store

    tb = synthetic_tables(Ls=(2,), Ps=(64, 256, 1024), n_seeds=3, budget=3000, n_evals=24, detail_trials=1)
    store = write_synthetic_store(tmp_path / "store", tb, sweep="rep")
    index = write_report(store, tmp_path / "report", sweep="rep", thetas=(0.1, 0.5, 0.9))
    assert index.name == "index.html"
    p = _Figs()
    p.feed(index.read_text())
    assert set(p.images) == set(FIGURES) - set(OVEREST_FIGURES)    # no overest table: no overest figures
    for name, png in p.images.items():
        assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000, name
        assert (tmp_path / "report" / f"{name}.svg").stat().st_size > 1000
    html = index.read_text()
    assert p.tables == 4 and "memsweep report" in html  # laws, pooled order, pooled slop, nulls per trial
    assert "Memorization order beside its null, pooled" in html and "Slop beside its null, pooled" in html
    head = html[html.index('<section id="headline">'):html.index("</section>")]
    # the planted law (beta = 1) in words with its interval, the order beside its null, the slop verdict
    assert "tau_mem (mem_twin, theta=0.5) for uniform L=2: grows like P^1.0" in head or \
        "tau_mem (mem_twin, theta=0.5) for uniform L=2: grows like P^0.9" in head
    assert "vs volume-matched" in head and "vs grammar-faithful" in head and "vs empirical-grammar" in head
    assert "excess" in head and "Slop, uniform L=2" in head and "18 trials" in head
    assert "none was skipped" in html
    assert (tmp_path / "report" / "memorder.csv").exists() and (tmp_path / "report" / "slop.csv").exists()
    assert (tmp_path / "report" / "laws.csv").exists()


def test_memorder_rank_correlation_with_censored_ties():
    import numpy as np
    import scipy.stats

    from analysis.memorder import order_stats

    proto = np.array([3.0, 2.0, 1.0, 0.0, -1.0])
    first = np.array([0.0, 1.0, 2.0, 9.0, 9.0])        # last two never copied: censored, tied after every copy
    loglik = np.array([-1.0, -3.0, -2.0, -5.0, -4.0])
    s = order_stats(proto, loglik, first)
    # ranks 1,2,3,4.5,4.5 against 5,4,3,2,1 -> rho = -0.9747
    assert s["rho_proto"] == pytest.approx(-0.9746794, abs=1e-6)
    assert s["rho_loglik"] == pytest.approx(scipy.stats.spearmanr(loglik, first).statistic)
    r = lambda a, b: scipy.stats.spearmanr(a, b).statistic  # noqa: E731
    want = (r(proto, first) - r(proto, loglik) * r(loglik, first)) / np.sqrt(
        (1 - r(proto, loglik) ** 2) * (1 - r(loglik, first) ** 2))
    assert s["partial_proto"] == pytest.approx(want)
    # constant log-likelihoods (uniform rules): nothing to control for, the partial is the plain rho
    flat = order_stats(proto, np.zeros(5), first)
    assert flat["partial_proto"] == pytest.approx(flat["rho_proto"]) and np.isnan(flat["rho_loglik"])


def test_pooled_memorization_order_matches_per_trial_mean():
    """The pooled rho is the plain mean of the per-trial rhos of its group; its bootstrap interval brackets it,
    and a group whose trials all have rho < 0 has an interval below zero."""
    import numpy as np
    import pyarrow as pa

    from analysis.memorder import pool_order

    rng = np.random.default_rng(1)
    neg = -0.5 + 0.05 * rng.standard_normal(8)
    mixed = 0.3 * rng.standard_normal(8)
    null = np.full(16, -0.2)
    order = pa.table({"trial_id": [f"t{i}" for i in range(16)], "tail": ["thin"] * 8 + ["fat"] * 8, "L": [3] * 16,
                      "rho_proto": np.r_[neg, mixed], "rho_proto_null": null, "rho_proto_excess": np.r_[neg, mixed] - null,
                      "rho_loglik": np.r_[mixed, neg]})
    pooled = {(r["tail"], r["L"]): r for r in pool_order(order, n_boot=500).to_pylist()}
    thin, fat, every = pooled[("thin", 3)], pooled[("fat", 3)], pooled[("*", None)]
    assert thin["rho_proto_mean"] == pytest.approx(neg.mean()) and thin["n_rho_proto"] == 8
    assert fat["rho_proto_mean"] == pytest.approx(mixed.mean())
    assert every["rho_proto_mean"] == pytest.approx(np.r_[neg, mixed].mean()) and every["n_rho_proto"] == 16
    assert thin["rho_proto_hi"] < 0 and fat["rho_proto_lo"] < fat["rho_proto_mean"] < fat["rho_proto_hi"]
    # beside the null: thin's excess -0.3 is below it in every trial, fat's scatters around +0.2
    assert thin["rho_proto_null_mean"] == pytest.approx(-0.2)
    assert thin["rho_proto_excess_mean"] == pytest.approx(neg.mean() + 0.2) and thin["rho_proto_excess_hi"] < 0
    assert thin["frac_rho_proto_below_null"] == 1.0
    assert fat["rho_loglik_hi"] < 0 and "rho_loglik_null_mean" not in fat   # no null given: none reported


def test_pooled_slop_splits_at_tau_mem():
    """Each trial's overprod is averaged before and after its tau_mem (from tau_gen when observed), then over
    trials; a trial censored for tau_mem only contributes a 'before' value."""
    import numpy as np
    import pyarrow as pa

    from analysis.slop import pool_slop

    rows = []
    # t1: tau_gen censored, tau_mem = 100: before = steps 10, 50 (0.2, 0.4), after = 100, 200 (0.0, 0.1)
    for step, v in ((10, 0.2), (50, 0.4), (100, 0.0), (200, 0.1)):
        rows.append(dict(trial_id="t1", step=step, level=0, overprod=v, slop_n=100.0, tau_mem=100.0,
                         mem_censored=False, tau_gen=200.0, gen_censored=True, tail="thin", L=2))
    # t2: tau_gen = 50 observed, tau_mem censored: before = steps 50, 100 only (step 10 precedes tau_gen)
    for step, v in ((10, 9.0), (50, 0.3), (100, 0.5), (200, np.nan)):
        rows.append(dict(trial_id="t2", step=step, level=0, overprod=v, slop_n=50.0, tau_mem=200.0,
                         mem_censored=True, tau_gen=50.0, gen_censored=False, tail="thin", L=2))
    (r,) = pool_slop(pa.Table.from_pylist(rows), n_boot=100).to_pylist()
    assert (r["tail"], r["L"], r["level"], r["n_before"], r["n_after"]) == ("thin", 2, 0, 2, 1)
    assert r["overprod_before"] == pytest.approx(np.mean([0.3, 0.4]))   # trial means 0.3 and 0.4
    assert r["overprod_after"] == pytest.approx(0.05) and r["frac_overproduce_before"] == 1.0
    assert r["strings_before"] == pytest.approx(np.mean([100, 100, 50, 50]))   # the strings those values rest on


def test_pooled_slop_against_each_reference_and_its_null():
    """The excess is each trial's mean minus its own null mean, pooled over trials; the per-trial rows pool to the
    same numbers (what docs/findings/refit.py rests on); slop_nulls rows join by trial and level."""
    import numpy as np
    import pyarrow as pa

    from analysis.slop import pool_slop, pool_trial_slop, slop_from_tables, trial_slop

    curves, nulls = [], []
    # per trial: overprod before tau_mem (=100) at steps 10, 50; its empirical-grammar null mean; T-reference values
    plan = {"t1": (0.2, 0.4, 0.1, -0.3), "t2": (0.5, 0.7, 0.4, -0.1), "t3": (0.0, 0.2, 0.3, -0.2)}
    for tid, (a, b, null, train) in plan.items():
        for step, v in ((10, a), (50, b), (100, 9.0)):
            curves.append(dict(trial_id=tid, step=step, level=0, overprod=v, overprod_train=train, slop_n=10.0))
        nulls += [dict(trial_id=tid, reference="grammar", null="empirical", level=0, null_mean=null, null_sd=0.05),
                  dict(trial_id=tid, reference="train", null="grammar", level=0, null_mean=-0.25, null_sd=0.02)]
    windows = pa.Table.from_pylist([dict(trial_id=t, tau_mem=100.0, mem_censored=False, tau_gen=500.0,
                                         gen_censored=True) for t in plan])
    table = slop_from_tables(pa.Table.from_pylist(curves), None, windows, nulls=pa.Table.from_pylist(nulls))
    (r,) = pool_slop(table, n_boot=200).to_pylist()
    assert r["overprod_before"] == pytest.approx(np.mean([0.3, 0.6, 0.1]))
    assert r["overprod_before_null"] == pytest.approx(np.mean([0.1, 0.4, 0.3]))
    assert r["overprod_before_excess"] == pytest.approx(np.mean([0.2, 0.2, -0.2]))
    assert r["overprod_before_null_sd"] == pytest.approx(0.05)
    assert r["overprod_train_before_excess"] == pytest.approx(np.mean([-0.05, 0.15, 0.05]))
    assert r["overprod_after"] == pytest.approx(9.0) and r["n_overprod_before_null_undefined"] == 0
    assert pool_trial_slop(trial_slop(table), n_boot=200).to_pylist() == [r]


def test_failed_trials_are_noted_under_their_own_heading_not_as_skipped_fragments(tmp_path):
    import pyarrow as pa

    from analysis.synthetic import write_synthetic_store

    tb = synthetic_tables(tails=("uniform",), Ls=(2,), Ps=(64, 256), n_seeds=3, budget=3000, n_evals=12,
                          detail_trials=0)
    t = tb["trials"]
    status = ["failed" if i == 0 else "done" for i in range(t.num_rows)]
    tb["trials"] = t.set_column(t.column_names.index("status"), "status", pa.array(status)).append_column(
        "error", pa.array(["RuntimeError: planted" if i == 0 else None for i in range(t.num_rows)], pa.string()))
    store = write_synthetic_store(tmp_path / "store", tb, sweep="rep")
    html = write_report(store, tmp_path / "report", sweep="rep", thetas=(0.5,), n_boot=10).read_text()
    note = f"left out 1 failed trial(s): {t.column('trial_id')[0].as_py()} (RuntimeError: planted)"
    heading = html.index("<h2>Trials left out or kept apart: 1 note(s)</h2>")
    assert heading < html.index(note) < html.index("<h2>Store</h2>")
    assert "Every store fragment was read; none was skipped." in html and "fragment(s) skipped" not in html


def test_report_shows_overestimation_per_regime(tmp_path):
    """A store with a planted `overest` table: the report draws the overestimation curves and the AUC-vs-lead figure;
    the regimes come from the planted onsets (tau_gen observed or not), and a planted score that marks the strings
    copied at the last evaluation has AUC 1 there, 0 when reversed."""
    import numpy as np
    import pandas as pd
    import pyarrow as pa

    from analysis import onset
    from analysis.report import overest_frames
    from analysis.synthetic import write_synthetic_store

    tb = synthetic_tables(tails=("uniform",), Ls=(2,), Ps=(64, 256), n_seeds=2, budget=3000, n_evals=10,
                          detail_trials=2, gen_logC=2.0)
    cp = tb["copies"].to_pandas()
    rows = []
    for tid, c in cp.groupby("trial_id"):
        last = c.step.max()
        hit = set(c[(c.step == last) & (c["count"] > 0)].train_index)
        idx = np.sort(tb["samples"].to_pandas().query("trial_id == @tid").train_index.unique())
        for step in sorted(c.step.unique())[:2]:
            for t in (0.9, 0.5):
                for split in ("train", "heldout"):
                    o = np.array([1.0 if (split == "train" and i in hit) else 0.0 for i in idx])
                    rows.append(pd.DataFrame({"trial_id": tid, "step": step, "t": t, "split": split,
                                              "string_index": idx, "o": o, "model_logp": -o}))
    tb["overest"] = pa.Table.from_pandas(pd.concat(rows, ignore_index=True), preserve_index=False)
    store = write_synthetic_store(tmp_path / "store", tb, sweep="rep")
    index = write_report(store, tmp_path / "report", sweep="rep", thetas=(0.5,))
    p = _Figs()
    p.feed(index.read_text())
    assert set(OVEREST_FIGURES) <= set(p.images) and all(len(p.images[f]) > 5000 for f in OVEREST_FIGURES)
    table = pd.read_csv(tmp_path / "report" / "overest_prediction.csv")
    last = table[table.step_late == table.groupby("trial_id").step_late.transform("max")]
    both = last[(last.n_copied > 0) & (last.n_copied < last.n)]
    assert len(both) and (both.auc_o == 1.0).all() and (both.auc_model_logp == 0.0).all()
    ons = onset.onsets_from_tables(tb["trials"], tb["curves"], (0.5,), "mem_twin", "novel_valid_frac")
    _, pred, leads = overest_frames(tb, tb["curves"], tb["trials"], ons, 0.5)
    gen = {r["trial_id"] for r in ons.to_pylist() if r["onset"] == "gen" and not r["censored"]}
    assert set(pred.regime) <= {"memorize-only", "generalize-then-memorize"}
    assert all((r == "generalize-then-memorize") == (t in gen) for t, r in zip(pred.trial_id, pred.regime))
