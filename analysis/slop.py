"""Slop: over-production of common productions against training time, per level, and the partial-memorization
window between tau_gen (the model generalizes) and tau_mem (it copies).

Two measures per (trial, step, level):
* ``overprod``: the ``level_curves`` column computed by ``analysis.metrics`` at evaluation time;
* ``head_ratio`` (from the ``parts`` table): the share of generated productions that fall on the level's common
  productions (the top ``head`` fraction by training count, at least one) divided by those productions' share in
  the training set. 1 = faithful to the training frequencies; > 1 = common parts over-produced (slop).
The window of a trial is ``[tau_gen, tau_mem]`` at threshold 0.5 (either end censored -> NaN end or last step).
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from analysis.onset import _open_store, onsets_from_tables
from analysis.registry import DEFAULT_GEN_METRIC, DEFAULT_MEM_METRIC
from analysis.stats import bootstrap_mean


def head_ratio_from_parts(parts: pa.Table, head: float = 0.25) -> pa.Table:
    """Per (trial, step, level): generated share of the top-``head`` training productions / their training share."""
    t = parts.sort_by([("trial_id", "ascending"), ("level", "ascending"), ("step", "ascending"),
                       ("train_count", "descending"), ("production", "ascending")])
    tid = t.column("trial_id").to_numpy(zero_copy_only=False)
    lv = t.column("level").to_numpy(zero_copy_only=False)
    st = t.column("step").to_numpy(zero_copy_only=False)
    gc = t.column("gen_count").to_numpy(zero_copy_only=False).astype(float)
    tc = t.column("train_count").to_numpy(zero_copy_only=False).astype(float)
    if tid.size == 0:
        return pa.table({"trial_id": pa.array([], pa.string()), "step": pa.array([], pa.int64()),
                         "level": pa.array([], pa.int64()), "head_ratio": pa.array([], pa.float64())})
    new = np.r_[True, (tid[1:] != tid[:-1]) | (lv[1:] != lv[:-1]) | (st[1:] != st[:-1])]
    starts = np.flatnonzero(new)
    ends = np.r_[starts[1:], tid.size]
    size = ends - starts
    k = np.maximum(1, np.round(head * size).astype(int))
    rank = np.arange(tid.size) - np.repeat(starts, size)        # rank by train_count within the segment
    in_head = rank < np.repeat(k, size)
    g_head = np.add.reduceat(np.where(in_head, gc, 0.0), starts)
    t_head = np.add.reduceat(np.where(in_head, tc, 0.0), starts)
    g_all = np.add.reduceat(gc, starts)
    t_all = np.add.reduceat(tc, starts)
    with np.errstate(invalid="ignore", divide="ignore"):
        ratio = (g_head / g_all) / (t_head / t_all)
    return pa.table({"trial_id": pa.array(tid[starts].tolist(), pa.string()), "step": st[starts].astype(np.int64),
                     "level": lv[starts].astype(np.int64), "head_ratio": ratio})


def windows_from_onsets(onsets_table: pa.Table, theta: float = 0.5) -> pa.Table:
    """Per trial: ``tau_gen``, ``tau_mem`` at ``theta`` and their censoring flags (the slop window)."""
    t = onsets_table.filter(pc.equal(onsets_table.column("theta"), theta))
    cols = ["trial_id", "tau", "censored"]
    mem = t.filter(pc.equal(t.column("onset"), "mem")).select(cols).rename_columns(["trial_id", "tau_mem", "mem_censored"])
    gen = t.filter(pc.equal(t.column("onset"), "gen")).select(cols).rename_columns(["trial_id", "tau_gen", "gen_censored"])
    return mem.join(gen, "trial_id", join_type="full outer").sort_by("trial_id")


def slop_from_tables(level_curves: pa.Table | None, parts: pa.Table | None, trials: pa.Table | None,
                     windows: pa.Table | None, head: float = 0.25) -> pa.Table:
    """Slop curves: ``trial_id, step, level, overprod, head_ratio`` joined with group columns and the window."""
    parts_t = head_ratio_from_parts(parts, head) if parts is not None and parts.num_rows else None
    if level_curves is not None and level_curves.num_rows:
        out = level_curves.select(["trial_id", "step", "level", "overprod"])
        if parts_t is not None:
            out = out.join(parts_t, ["trial_id", "step", "level"], join_type="full outer")
        else:
            out = out.append_column("head_ratio", pa.array(np.full(out.num_rows, np.nan)))
    elif parts_t is not None:
        out = parts_t.append_column("overprod", pa.array(np.full(parts_t.num_rows, np.nan)))
    else:
        return pa.table({"trial_id": pa.array([], pa.string()), "step": pa.array([], pa.int64()),
                         "level": pa.array([], pa.int64()), "overprod": pa.array([], pa.float64()),
                         "head_ratio": pa.array([], pa.float64())})
    if trials is not None:
        keep = [c for c in ("tail", "L", "P", "seed") if c in trials.column_names]
        out = out.join(trials.select(["trial_id"] + keep), "trial_id", join_type="left outer")
    if windows is not None:
        out = out.join(windows, "trial_id", join_type="left outer")
    return out.sort_by([("trial_id", "ascending"), ("level", "ascending"), ("step", "ascending")])


def pool_slop(slop_table: pa.Table, n_boot: int = 1000, seed: int = 0) -> pa.Table:
    """Per (tail, L, level): the mean over trials of each trial's mean `overprod` before memorization and after it,
    with bootstrap intervals over trials, and the fraction of trials that over-produce (> 0) before it.

    "Before" is the partial-memorization window [tau_gen, tau_mem) when tau_gen was observed, else every evaluation
    before tau_mem at which the level's overprod is defined (valid parts were generated); "after" is from tau_mem on.
    A trial censored for tau_mem contributes only a "before" value. Over-production of common parts before
    memorization, falling to 0 (faithful to the training set) after it, is the slop signature."""
    cols = ["trial_id", "step", "level", "overprod", "tau_mem", "mem_censored", "tau_gen", "gen_censored"]
    if slop_table.num_rows == 0 or not all(c in slop_table.column_names for c in cols):
        return pa.table({})
    t = slop_table.filter(pc.is_finite(slop_table.column("overprod")))
    d = {c: t.column(c).to_numpy(zero_copy_only=False) for c in cols}
    step = d["step"].astype(float)
    tau_mem = np.where(d["mem_censored"].astype(bool), np.inf, d["tau_mem"].astype(float))
    tau_gen = np.where(d["gen_censored"].astype(bool), -np.inf, d["tau_gen"].astype(float))
    phase = np.where(step >= tau_mem, 1, np.where(step >= tau_gen, 0, -1))  # 0 before, 1 after, -1 outside
    has_groups = all(c in t.column_names for c in ("tail", "L"))
    group = (np.array([f"{a}\x00{b}" for a, b in zip(t.column("tail").to_pylist(), t.column("L").to_pylist())])
             if has_groups else np.full(t.num_rows, "*\x000"))
    rng = np.random.default_rng(seed)
    rows = []
    for g in np.unique(group):
        for level in np.unique(d["level"][group == g]):
            sel = (group == g) & (d["level"] == level)
            row: dict[str, Any] = {"tail": g.split("\x00")[0], "L": int(g.split("\x00")[1]), "level": int(level)}
            for name, ph in (("before", 0), ("after", 1)):
                m = sel & (phase == ph)
                ids, inv = np.unique(d["trial_id"][m], return_inverse=True)
                per_trial = (np.bincount(inv, d["overprod"][m].astype(float), ids.size) /
                             np.maximum(np.bincount(inv, minlength=ids.size), 1))
                mean, lo, hi = bootstrap_mean(per_trial, n_boot, rng)
                row.update({f"n_{name}": int(ids.size), f"overprod_{name}": mean, f"overprod_{name}_lo": lo,
                            f"overprod_{name}_hi": hi})
                if name == "before":
                    row["frac_overproduce_before"] = float((per_trial > 0).mean()) if ids.size else float("nan")
            rows.append(row)
    return pa.Table.from_pylist(rows)


def slop(store: Any, sweep: str | None = None, trials: Sequence[str] | None = None, metric: str = DEFAULT_MEM_METRIC,
         gen_metric: str = DEFAULT_GEN_METRIC, theta: float = 0.5, head: float = 0.25) -> pa.Table:
    """``slop_from_tables`` read from a store (windows from the trials' onsets at ``theta``)."""
    st = _open_store(store)
    tr = st.read("trials", sweep=sweep, trials=trials)
    cur = st.read("curves", sweep=sweep, trials=trials, columns=["trial_id", "step", metric, gen_metric])
    win = windows_from_onsets(onsets_from_tables(tr, cur, (theta,), metric, gen_metric), theta)
    lc = st.read("level_curves", sweep=sweep, trials=trials, columns=["trial_id", "step", "level", "overprod"])
    parts = st.read("parts", sweep=sweep, trials=trials)
    return slop_from_tables(lc, parts, tr, win, head)
