"""Early overestimation in the findings' sweeps (SCIENCE.md, "Early overestimation"; issue 22's questions), by arm
(docs/findings/window.py: generalizing vs memorize-only), each statistic beside its null:

- (i, iv) `overest_auc.csv`: per arm and lead-time bin (later step / probed step), the mean AUC with which a
  training string's early overestimation o(x, t) at the highest noise level (against the exact grammar posterior),
  the model's own log-probability (reference-free) and prototypicality pick the strings copied at the later
  evaluation; null 0.5 (a score unrelated to copying); `o_minus_logp` the exact reference's gain over the
  reference-free score. Intervals resample clusters (grammar x data draw).
- (ii) `overest_phase.csv`: per arm, at the probe nearest tau_gen and the last probe before tau_mem (first probe
  for memorize-only trials): overest_gap (train minus held-out strings: null 0), entropy_excess (grammar posterior
  minus model entropy of the exact sampler's unmaskings: null 0, > 0 = surer than the language allows) and
  collapse_model - collapse_grammar (the step, as a fraction of d, at which the trajectory leaves one consistent
  training string, the model's minus the grammar-faithful generator's: < 0 = collapses earlier).
- (iii) `overest_severity.csv`: across trials, Spearman rho between early overest_gap (first probe at or after
  EARLY steps) and memorization severity (mem_twin LEAD times later, or at the trial's last evaluation), overall
  and within P (ranks centred per P, since P drives both); cluster-bootstrap intervals.

Per-trial rows committed beside them (`overest_cells.csv`: the prediction table; `overest_trials.csv`: the probe
curves at each probed step with the trial's arm and onsets); `refit.py` recomputes the three pooled files from them.

    .venv/bin/python docs/findings/overest.py runs/regime/store docs/findings/regime
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.stats import rankdata

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
import window  # noqa: E402
from analysis.overest_predict import SCORES  # noqa: E402
from analysis.stats import bootstrap_mean, cluster_weights  # noqa: E402

N_BOOT, SEED = 1000, 0
EARLY, LEAD = 1000, 10.0
BINS_PER_DECADE = 2        # lead bins as `memsweep overest` prints them
PROBE_CURVES = ("overest_train", "overest_heldout", "overest_gap", "entropy_excess", "collapse_model",
                "collapse_grammar", "collapse_model_frac", "collapse_grammar_frac")


def _codes(clusters: pd.Series) -> np.ndarray:
    return pd.factorize(clusters.astype(str))[0]


def auc_pooled(cells: pd.DataFrame, trials: pd.DataFrame) -> pd.DataFrame:
    """(i, iv) per arm and lead bin: cells, trials, mean AUC per score and o minus model_logp, cluster CIs."""
    arm = trials.drop_duplicates("trial_id").set_index("trial_id")[["arm", "cluster"]]
    t = cells.join(arm, on="trial_id")
    t = t.assign(auc_o_minus_logp=t.auc_o - t.auc_model_logp)
    t["lead_bin"] = 10 ** (np.floor(np.log10(t.lead) * BINS_PER_DECADE) / BINS_PER_DECADE)
    rows, rng = [], np.random.default_rng(SEED)
    for (a, b), g in t.dropna(subset=["auc_o"]).groupby(["arm", "lead_bin"]):
        row = {"arm": a, "lead_bin": float(b), "cells": len(g), "trials": g.trial_id.nunique(),
               "clusters": g.cluster.nunique()}
        for k in [f"auc_{s}" for s in SCORES] + ["auc_o_minus_logp"]:
            row[k], row[f"{k}_lo"], row[f"{k}_hi"] = bootstrap_mean(g[k].to_numpy(), N_BOOT, rng, _codes(g.cluster))
        rows.append(row)
    return pd.DataFrame(rows)


def _moments(g: pd.DataFrame) -> dict[str, pd.Series]:
    """A trial's probed rows at the moments of the phase table (by its onsets)."""
    g = g.sort_values("step")
    tg, tm = g.tau_gen.iloc[0], g.tau_mem.iloc[0]
    out = {}
    if np.isfinite(tg):
        out["at tau_gen"] = g.iloc[int(np.argmin(np.abs(np.log(g.step / tg))))]
    else:
        out["first probe"] = g.iloc[int(np.searchsorted(g.step.to_numpy(), EARLY).clip(0, len(g) - 1))]
    before = g[g.step < tm] if np.isfinite(tm) else g
    if len(before):
        out["last probe before tau_mem"] = before.iloc[-1]
    return out


def phase(trials: pd.DataFrame) -> pd.DataFrame:
    """(ii) per arm and moment: mean overest_gap, entropy_excess, collapse difference, with cluster CIs."""
    rows = []
    for _, g in trials.groupby("trial_id"):
        for moment, r in _moments(g).items():
            rows.append({"arm": r.arm, "moment": moment, "cluster": r.cluster, "step_over_tau": r.step / r.tau_mem,
                         "overest_gap": r.overest_gap, "entropy_excess": r.entropy_excess,
                         "collapse_diff": r.collapse_model - r.collapse_grammar})
    per, out, rng = pd.DataFrame(rows), [], np.random.default_rng(SEED)
    for (a, m), g in per.groupby(["arm", "moment"]):
        row = {"arm": a, "moment": m, "trials": len(g), "clusters": g.cluster.nunique(),
               "median_step_over_tau_mem": float(np.nanmedian(g.step_over_tau)) if g.step_over_tau.notna().any()
               else np.nan}
        for k in ("overest_gap", "entropy_excess", "collapse_diff"):
            row[k], row[f"{k}_lo"], row[f"{k}_hi"] = bootstrap_mean(g[k].to_numpy(), N_BOOT, rng, _codes(g.cluster))
        out.append(row)
    return pd.DataFrame(out)


def _spearman(x: np.ndarray, y: np.ndarray, w: np.ndarray | None = None) -> float:
    """Weighted Pearson correlation of the ranks (weights = bootstrap multiplicities)."""
    rx, ry = rankdata(x), rankdata(y)
    w = np.ones_like(rx) if w is None else w
    mx, my = np.average(rx, weights=w), np.average(ry, weights=w)
    cov = np.average((rx - mx) * (ry - my), weights=w)
    return float(cov / np.sqrt(np.average((rx - mx) ** 2, weights=w) * np.average((ry - my) ** 2, weights=w)))


def severity(trials: pd.DataFrame, curves: pd.DataFrame) -> pd.DataFrame:
    """(iii) Spearman rho across trials between early overest_gap and mem_twin LEAD times later, overall and
    within P, with cluster-bootstrap intervals (ranks recomputed in each resample)."""
    rows = []
    for tid, g in trials.groupby("trial_id"):
        g = g.sort_values("step")
        early = g[g.step >= EARLY]
        if early.empty:
            continue
        e = early.iloc[0]
        c = curves[curves.trial_id == tid].sort_values("step")
        late = c[c.step <= e.step * LEAD]
        rows.append({"trial_id": tid, "P": e.P, "cluster": e.cluster, "gap": e.overest_gap,
                     "severity": late.mem_twin.iloc[-1]})
    per = pd.DataFrame(rows).dropna()
    within = per.assign(gap=per.gap - per.groupby("P").gap.transform("mean"),
                        severity=per.severity - per.groupby("P").severity.transform("mean"))
    out, rng = [], np.random.default_rng(SEED)
    for scope, d in (("all trials", per), ("within P", within)):
        codes = _codes(d.cluster)
        W = cluster_weights(np.zeros(len(d)), codes, N_BOOT, rng)
        boot = [_spearman(d.gap.to_numpy(), d.severity.to_numpy(), w) for w in W if (w > 0).sum() >= 3]
        lo, hi = np.quantile(boot, [0.025, 0.975]) if codes.max() + 1 >= 3 else (np.nan, np.nan)
        out.append({"scope": scope, "trials": len(d), "clusters": int(codes.max() + 1),
                    "rho": _spearman(d.gap.to_numpy(), d.severity.to_numpy()), "rho_lo": lo, "rho_hi": hi,
                    "early_step": EARLY, "lead": LEAD})
    return pd.DataFrame(out)


def pooled(cells: pd.DataFrame, trials: pd.DataFrame, curves: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """The three pooled files from the per-trial rows."""
    return {"overest_auc.csv": auc_pooled(cells, trials), "overest_phase.csv": phase(trials),
            "overest_severity.csv": severity(trials, curves)}


def per_trial_rows(store, ons) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(overest_cells, overest_trials) of a store: the prediction table and the probe curves at probed steps,
    each probed row with its trial's P, cluster, arm and onsets (flagged trials left out: `ons` holds the kept)."""
    from analysis.overest_predict import store_prediction

    per = window.per_trial(ons)
    cells, _ = store_prediction(store)
    cells = cells[cells.trial_id.isin(per)]
    cv = store.read_pandas("curves", columns=["trial_id", "step", "mem_twin", *PROBE_CURVES])
    probed = cv.dropna(subset=["overest_gap"])
    probed = probed[probed.trial_id.isin(per)]
    info = pd.DataFrame([{"trial_id": t, "P": d["P"], "cluster": d["cluster"], "arm": d["arm"],
                          "tau_gen": d["gen"], "tau_mem": d["mem"]} for t, d in per.items()])
    return cells.reset_index(drop=True), probed.merge(info, on="trial_id").sort_values(["trial_id", "step"])


def main(store_uri: str, out_dir: str) -> None:
    from analysis import flags as flagmod, onset
    from analysis.store import Store

    st = Store(store_uri)
    fl = flagmod.trial_flags(st.read("trials"), window.THETA)
    ons = flagmod.drop_flagged_onsets(onset.onsets(st, thetas=(window.THETA,)), fl)
    cells, trials = per_trial_rows(st, ons)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    cells.to_csv(out / "overest_cells.csv", index=False)
    trials.to_csv(out / "overest_trials.csv", index=False)
    curves = st.read_pandas("curves", columns=["trial_id", "step", "mem_twin"])
    curves[curves.trial_id.isin(set(trials.trial_id))].to_csv(out / "overest_curves.csv", index=False)
    for name, table in pooled(cells, trials, curves).items():
        table.to_csv(out / name, index=False)
        print(f"{name}:\n{table.round(3).to_string(index=False)}\n")


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit("usage: overest.py STORE OUT_DIR")
    main(sys.argv[1], sys.argv[2])
