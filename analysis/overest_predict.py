"""Does early overestimation predict memorization (SCIENCE.md, "Early overestimation", Prediction)?

From one evaluation's per-string o(x, t) at the highest noise level (the `overest` table), the AUC for which training
strings are copied at a later evaluation (the `copies` table is the ground truth: count > 0 at that step), with the
lead time = later step / earlier step, beside two baselines a user would try: the model's own log-probability of x's
masked tokens (reference-free: `model_logp`, the same forward pass) and prototypicality alone (`samples.proto`).
AUC = P(score of a copied string > score of an uncopied one), ties counted half; NaN when one class is empty.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np

#: Scores compared, each higher = predicted more likely copied: column in the joined frame -> label.
SCORES: dict[str, str] = {"o": "overest", "model_logp": "model loss (reference-free)", "proto": "prototypicality"}


def auc(score: np.ndarray, label: np.ndarray) -> float:
    """Mann-Whitney AUC of `score` for the boolean `label` (average ranks for ties); NaN if a class is empty or a
    score is not finite."""
    score, label = np.asarray(score, dtype=np.float64), np.asarray(label, dtype=bool)
    n1, n0 = int(label.sum()), int((~label).sum())
    if n1 == 0 or n0 == 0 or not np.isfinite(score).all():
        return math.nan
    _, inv, cnt = np.unique(score, return_inverse=True, return_counts=True)
    ranks = (np.cumsum(cnt) - (cnt - 1) / 2.0)[inv.ravel()]              # 1-based average ranks
    return float((ranks[label].sum() - n1 * (n1 + 1) / 2.0) / (n1 * n0))


def prediction_table(overest: Any, copies: Any, samples: Any, steps: Any) -> Any:
    """Per (trial, early probed step, later evaluation step): lead, n, n_copied and the AUC of each score in
    `SCORES`. overest / copies / samples / steps: pandas frames of the store's tables (`steps`: the curves table, for
    every evaluation step of each trial, copies or none)."""
    import pandas as pd

    ov = overest[overest.split == "train"]
    ov = ov[ov.t == ov.groupby("trial_id").t.transform("max")]
    rows = []
    for trial, early in ov.groupby("trial_id"):
        proto = samples[samples.trial_id == trial].set_index("train_index").proto
        cp = copies[(copies.trial_id == trial) & (copies["count"] > 0)]
        later_steps = sorted(steps[steps.trial_id == trial].step.unique())
        for s0, at in early.groupby("step"):
            at = at.set_index("string_index").sort_index()
            frame = pd.DataFrame({"o": at.o, "model_logp": at.model_logp, "proto": proto.reindex(at.index)})
            for s1 in (s for s in later_steps if s > s0):
                label = frame.index.isin(cp[cp.step == s1].train_index)
                row = {"trial_id": trial, "step_early": int(s0), "step_late": int(s1), "lead": s1 / s0,
                       "n": len(frame), "n_copied": int(label.sum())}
                row.update({f"auc_{k}": auc(frame[k].to_numpy(), label) for k in SCORES})
                rows.append(row)
    cols = ["trial_id", "step_early", "step_late", "lead", "n", "n_copied"] + [f"auc_{k}" for k in SCORES]
    return pd.DataFrame(rows, columns=cols)


def by_lead(table: Any, bins_per_decade: int = 2) -> Any:
    """Mean AUC of each score per lead-time bin (log-spaced), with the number of (trial, early, late) cells that
    have both classes; the figure of `memsweep overest`."""
    import pandas as pd

    t = table.dropna(subset=[f"auc_{k}" for k in SCORES], how="all").copy()
    if t.empty:
        return pd.DataFrame(columns=["lead_bin", "cells"] + [f"auc_{k}" for k in SCORES])
    t["lead_bin"] = 10 ** (np.floor(np.log10(t.lead) * bins_per_decade) / bins_per_decade)
    g = t.groupby("lead_bin")
    out = g[[f"auc_{k}" for k in SCORES]].mean()
    out.insert(0, "cells", g.size())
    return out.reset_index()


def store_prediction(store: Any, sweep: str | None = None) -> tuple[Any, Any]:
    """(prediction_table, by_lead) of a store's sweeps (empty when no trial probed overestimation)."""
    ov = store.read_pandas("overest", sweep=sweep)
    cp = store.read_pandas("copies", sweep=sweep)
    sm = store.read_pandas("samples", sweep=sweep)
    st = store.read_pandas("curves", sweep=sweep, columns=["trial_id", "step"])
    table = prediction_table(ov, cp, sm, st)
    return table, by_lead(table)
