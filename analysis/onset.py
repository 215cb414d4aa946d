"""Onset times: when each trial's curve first reaches a threshold, with censoring flags.

Definitions (see docs/science.md, "Onset times and laws"):

* A trial's curve is a metric against training step, sorted by step; rows whose metric is NaN are dropped first,
  so interpolation runs between the nearest evaluations that measured the metric.
* Onset evaluation (``consecutive`` = k, default ``DEFAULT_CONSECUTIVE`` = 2): the first evaluation index ``i``
  with ``y_i, ..., y_{i+k-1}`` all ``>= theta`` (SCIENCE.md, "Onsets under noise": a single crossing of a low
  threshold can be the null's noise). A crossing with fewer than k evaluations after it (the last evaluation) is
  not an onset yet: the trial is censored. ``consecutive=1`` is the first-crossing rule: the first ``y_i >=
  theta``. A later dip below ``theta`` does not un-cross.
* ``i > 0``: ``log tau`` is interpolated linearly in ``y`` between ``(log s_{i-1}, y_{i-1})`` and
  ``(log s_i, y_i)``, i.e. ``log tau = log s_{i-1} + (theta - y_{i-1}) / (y_i - y_{i-1}) * log(s_i / s_{i-1})``.
  An exact hit (``y_i == theta``) gives ``tau = s_i``. If ``s_{i-1} == 0`` (an evaluation at step 0) the
  interpolation is linear in step instead, as the log is undefined there.
* ``i == 0``: the curve was already above ``theta`` at the first evaluation: ``tau = s_0`` and
  ``left_censored = True`` (the true onset is somewhere at or before ``s_0``). The fits treat these as
  left-censored by default (``analysis.fits``), never as exact onsets.
* Never reaching ``theta``: right-censored, ``tau = last_step`` (the trial's last evaluated step, its
  ``final_step``) and ``censored = True``. Such rows are kept, never dropped. An early-stopped trial (status
  ``stopped``) has crossed its stop threshold, so it is observed for every ``theta`` it reached and censored at its
  last step for the others; a running or failed trial is censored at the last step it evaluated.
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from analysis.registry import DEFAULT_GEN_METRIC, DEFAULT_MEM_METRIC
from analysis.specs import split_specs
from analysis.stats import with_clusters

DEFAULT_THETAS: tuple[float, ...] = (0.1, 0.5, 0.9)
#: Evaluations in a row at or above theta that make an onset (1 = the first crossing).
DEFAULT_CONSECUTIVE: int = 2
#: The named onset rules of the CLI (`--onset-rule`): evaluations in a row each needs.
ONSET_RULES: dict[str, int] = {"consecutive": DEFAULT_CONSECUTIVE, "first": 1}
TRIAL_COLUMNS = ("sweep", "status", "tail", "tail_family", "tail_a", "tail_levels", "L", "P", "seed",
                 "budget_steps", "final_step", "entropy", "entropy_tilt", "train_mass")


def check_consecutive(consecutive: object) -> int:
    """`consecutive` as an int >= 1, else ValueError saying what is valid."""
    if isinstance(consecutive, bool) or not isinstance(consecutive, (int, np.integer)) or consecutive < 1:
        raise ValueError(f"consecutive must be an integer >= 1 (1 = first crossing, {DEFAULT_CONSECUTIVE} = the "
                         f"default), got {consecutive!r}")
    return int(consecutive)


def extract_onsets(codes: np.ndarray, steps: np.ndarray, y: np.ndarray, thetas: Sequence[float],
                   n_trials: int | None = None, consecutive: int = DEFAULT_CONSECUTIVE) -> dict[str, np.ndarray]:
    """Onsets for many curves at once (vectorized over trials and thresholds): the first evaluation that starts
    `consecutive` evaluations in a row at or above theta (module docstring).

    ``codes`` are integer trial codes in ``[0, n_trials)`` (one per row, any order), ``steps`` the evaluation steps
    and ``y`` the metric. Returns arrays indexed ``[trial, theta]``: ``tau``, ``censored`` (right), ``left_censored``,
    and per trial ``last_step`` (last evaluated step, NaN rows included), ``first_step`` and ``n_evals`` (finite
    evaluations). Trials with no finite evaluation are right-censored at their last step (NaN if no row at all).
    """
    consecutive = check_consecutive(consecutive)
    codes = np.asarray(codes, dtype=np.int64)
    steps = np.asarray(steps, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    thetas = np.asarray(list(thetas), dtype=np.float64)
    T = int(codes.max()) + 1 if n_trials is None and codes.size else int(n_trials or 0)
    K = thetas.size
    last_step = np.full(T, np.nan)
    if codes.size:
        np.fmax.at(last_step, codes, steps)
    tau = np.repeat(last_step[:, None], K, axis=1)
    censored = np.ones((T, K), dtype=bool)
    left = np.zeros((T, K), dtype=bool)
    first_step = np.full(T, np.nan)
    n_evals = np.zeros(T, dtype=np.int64)

    ok = np.isfinite(y) & np.isfinite(steps)
    c, s, v = codes[ok], steps[ok], y[ok]
    if c.size == 0:
        return dict(tau=tau, censored=censored, left_censored=left, last_step=last_step,
                    first_step=first_step, n_evals=n_evals)
    order = np.lexsort((s, c))
    c, s, v = c[order], s[order], v[order]
    starts = np.flatnonzero(np.r_[True, c[1:] != c[:-1]])
    ends = np.r_[starts[1:], c.size]
    g = c[starts]                                  # trial code of each segment
    first_step[g] = s[starts]
    n_evals[g] = ends - starts
    idx = np.arange(c.size)
    seg_end = np.repeat(ends, ends - starts)        # end of each row's own segment
    big = np.iinfo(np.int64).max
    for k, theta in enumerate(thetas):
        above = v >= theta
        run = above.copy()
        for j in range(1, consecutive):             # the next j-th evaluation of the same trial is above too
            nxt = np.zeros_like(above)
            nxt[:-j] = above[j:]
            run &= nxt & (idx + j < seg_end)
        pos = np.where(run, idx, big)
        first = np.minimum.reduceat(pos, starts)
        hit = first < ends                          # reduceat of a segment stays inside it, or is `big`
        i = first[hit]
        gh = g[hit]
        at_start = i == starts[hit]
        t = s[i].copy()
        inner = ~at_start
        j = i[inner]
        s0, s1, y0, y1 = s[j - 1], s[j], v[j - 1], v[j]
        frac = (theta - y0) / (y1 - y0)             # y0 < theta <= y1, so 0 < frac <= 1
        with np.errstate(divide="ignore", invalid="ignore"):
            logt = np.log(s0) + frac * (np.log(s1) - np.log(s0))
        lin = s0 + frac * (s1 - s0)
        t[inner] = np.where(s0 > 0, np.exp(logt), lin)
        tau[gh, k] = t
        censored[gh, k] = False
        left[gh, k] = at_start
    return dict(tau=tau, censored=censored, left_censored=left, last_step=last_step,
                first_step=first_step, n_evals=n_evals)


def _encode(trial_ids: pa.ChunkedArray | pa.Array, universe: pa.Array | None = None) -> tuple[np.ndarray, pa.Array]:
    """Integer codes for trial ids (fast, via Arrow), and the id of each code."""
    if isinstance(trial_ids, pa.ChunkedArray):
        trial_ids = trial_ids.combine_chunks() if trial_ids.num_chunks else pa.array([], trial_ids.type)
    if universe is None:
        enc = pc.dictionary_encode(trial_ids)
        return np.asarray(enc.indices.to_numpy(zero_copy_only=False), dtype=np.int64), enc.dictionary
    codes = pc.index_in(trial_ids, value_set=universe)
    return np.asarray(codes.to_numpy(zero_copy_only=False), dtype=np.float64), universe


def with_gen_share(curves: pa.Table, trials: pa.Table | None) -> pa.Table:
    """`curves` with `gen_share` filled from `novel_valid_frac` and the trial's p(T) (`train_mass`) where the store
    holds none (stores written before it was a curve); unchanged when it is there or cannot be derived."""
    have = "gen_share" in curves.column_names and curves.column("gen_share").null_count < curves.num_rows
    derivable = ("novel_valid_frac" in curves.column_names and trials is not None
                 and "train_mass" in trials.column_names)
    if have or not derivable:
        return curves
    from analysis.metrics import gen_share

    mass = dict(zip(trials.column("trial_id").to_pylist(), trials.column("train_mass").to_pylist()))
    pt = np.array([np.nan if mass.get(t) is None else mass[t] for t in curves.column("trial_id").to_pylist()], float)
    nv = curves.column("novel_valid_frac").to_numpy(zero_copy_only=False).astype(float)
    col = pa.array(gen_share(nv, pt), pa.float64())
    if "gen_share" in curves.column_names:
        return curves.set_column(curves.column_names.index("gen_share"), "gen_share", col)
    return curves.append_column("gen_share", col)


def onsets_from_tables(trials: pa.Table | None, curves: pa.Table, thetas: Sequence[float] = DEFAULT_THETAS,
                       metric: str = DEFAULT_MEM_METRIC, gen_metric: str | None = DEFAULT_GEN_METRIC,
                       consecutive: int = DEFAULT_CONSECUTIVE) -> pa.Table:
    """Onset table from a curves table (and a trials table for the group columns).

    One row per (trial, metric, theta) with columns ``trial_id, onset ('mem'|'gen'), metric, theta, tau, censored,
    left_censored, last_step, first_step, n_evals, consecutive`` (the onset rule) plus the trial's ``sweep, status,
    tail, tail_family, tail_a, tail_levels, L, P, seed, budget_steps, final_step`` and ``cluster`` (the trials that
    share its grammar and data draw, ``analysis.stats.cluster_keys``) when ``trials`` is given. Trials that appear
    in ``trials`` but have no curve rows are censored with NaN tau (nothing measured). ``gen_metric=None`` skips
    tau_gen.
    """
    if gen_metric == "gen_share":
        curves = with_gen_share(curves, trials)
    if metric not in curves.column_names:
        raise KeyError(f"metric {metric!r} not in curves columns {curves.column_names}")
    if trials is not None and trials.num_rows:
        universe = pc.unique(trials.column("trial_id"))
        universe = universe.combine_chunks() if isinstance(universe, pa.ChunkedArray) else universe
        curves = curves.filter(pc.is_in(curves.column("trial_id"), value_set=universe))
        fcodes, ids = _encode(curves.column("trial_id"), universe)
        codes = fcodes.astype(np.int64)
    else:
        codes, ids = _encode(curves.column("trial_id"))
    n = len(ids)
    steps = curves.column("step").to_numpy(zero_copy_only=False).astype(np.float64)
    specs = [("mem", metric)]
    if gen_metric is not None and gen_metric in curves.column_names:
        specs.append(("gen", gen_metric))
    parts = []
    thetas = tuple(float(t) for t in thetas)
    for kind, m in specs:
        y = curves.column(m).to_numpy(zero_copy_only=False).astype(np.float64)
        r = extract_onsets(codes, steps, y, thetas, n_trials=n, consecutive=consecutive)
        K = len(thetas)
        tidx = np.repeat(np.arange(n), K)
        parts.append(pa.table({
            "trial_id": pc.take(ids, pa.array(tidx)),
            "onset": pa.array([kind] * (n * K), pa.string()),
            "metric": pa.array([m] * (n * K), pa.string()),
            "theta": np.tile(np.asarray(thetas), n),
            "tau": r["tau"].ravel(),
            "censored": r["censored"].ravel(),
            "left_censored": r["left_censored"].ravel(),
            "last_step": np.repeat(r["last_step"], K),
            "first_step": np.repeat(r["first_step"], K),
            "n_evals": np.repeat(r["n_evals"], K),
            "consecutive": np.full(n * K, consecutive, np.int64),
        }))
    out = pa.concat_tables(parts) if parts else pa.table({})
    if trials is not None and trials.num_rows:
        keep = [c for c in TRIAL_COLUMNS if c in trials.column_names]
        tt = with_clusters(trials.select(["trial_id"] + keep), trials)
        out = out.join(tt, "trial_id", join_type="left outer")
    return out.sort_by([("onset", "ascending"), ("theta", "ascending"), ("trial_id", "ascending")])


def _open_store(store_or_uri: Any):
    """A Store from a Store or a URI (imported lazily: analysis.store is a leaf module)."""
    if hasattr(store_or_uri, "read"):
        return store_or_uri
    from analysis.store import Store
    return Store(str(store_or_uri))


#: Trials that did not train as specified (an error, or non-finite loss or weights): onsets, fits and reports leave
#: them out, and say so (`analysed`); their curves would pass for trials that never memorized.
LEFT_OUT_STATUSES = ("failed", "diverged")


def analysed(trials: pa.Table, pool_specs: bool = False) -> tuple[pa.Table, list[str]]:
    """(the trials an analysis uses, one line per status left out naming its trials and why, and one per sweep
    whose trials come from several effective specs: kept apart unless `pool_specs`, `analysis.specs`)."""
    if trials.num_rows == 0 or "status" not in trials.column_names:
        return split_specs(trials, pool_specs)
    status = trials.column("status")
    notes = []
    for st in LEFT_OUT_STATUSES:
        rows = trials.filter(pc.equal(status, st)).to_pylist()
        if rows:
            why = "; ".join(f"{r['trial_id']} ({r.get('error') or 'no error recorded'})" for r in rows[:5])
            more = f"; and {len(rows) - 5} more" if len(rows) > 5 else ""
            notes.append(f"left out {len(rows)} {st} trial(s): {why}{more}")
    keep = pc.invert(pc.is_in(status, value_set=pa.array(LEFT_OUT_STATUSES)))
    kept, apart = split_specs(trials.filter(pc.fill_null(keep, True)), pool_specs)
    return kept, notes + apart


def onsets(store: Any, sweep: str | None = None, thetas: Sequence[float] = DEFAULT_THETAS,
           metric: str = DEFAULT_MEM_METRIC, gen_metric: str | None = DEFAULT_GEN_METRIC,
           consecutive: int = DEFAULT_CONSECUTIVE, pool_specs: bool = False) -> pa.Table:
    """Onset table (see ``onsets_from_tables``) read from a store, for one sweep or all; failed and diverged trials
    left out and a sweep's effective specs kept apart unless `pool_specs` (``analysed``)."""
    st = _open_store(store)
    trials = st.read("trials", sweep=sweep)
    kept, _ = analysed(trials, pool_specs)
    cols = ["trial_id", "step", metric] + ([gen_metric] if gen_metric else [])
    cols += ["novel_valid_frac"] if gen_metric == "gen_share" else []     # to derive gen_share in older stores
    curves = st.read("curves", sweep=sweep, columns=list(dict.fromkeys(cols)))
    if kept.num_rows < trials.num_rows:
        curves = curves.filter(pc.is_in(curves.column("trial_id"), value_set=kept.column("trial_id").combine_chunks()))
    return onsets_from_tables(kept, curves, thetas, metric, gen_metric, consecutive)


def first_copy_from_tables(copies: pa.Table, samples: pa.Table | None = None,
                           last_steps: pa.Table | None = None) -> pa.Table:
    """Step at which each training sample is first copied, per trial.

    Columns ``trial_id, train_index, first_step, censored``. With ``samples`` (the trial's whole training set),
    never-copied samples are included with ``censored=True`` and ``first_step`` = the trial's last evaluated step
    (from ``last_steps``: columns ``trial_id, last_step``; else the last step seen in ``copies``; NaN if neither).
    """
    if copies.num_rows:
        c = copies.filter(pc.greater(copies.column("count"), 0)) if "count" in copies.column_names else copies
        first = c.group_by(["trial_id", "train_index"]).aggregate([("step", "min")]).rename_columns(
            ["trial_id", "train_index", "first_step"])
        first = first.set_column(2, "first_step", pc.cast(first.column("first_step"), pa.float64()))
    else:
        first = pa.table({"trial_id": pa.array([], pa.string()), "train_index": pa.array([], pa.int64()),
                          "first_step": pa.array([], pa.float64())})
    if samples is None:
        return first.append_column("censored", pa.array(np.zeros(first.num_rows, bool)))
    base = samples.select(["trial_id", "train_index"])
    base = base.set_column(1, "train_index", pc.cast(base.column("train_index"), pa.int64()))
    first = first.set_column(1, "train_index", pc.cast(first.column("train_index"), pa.int64()))
    out = base.join(first, ["trial_id", "train_index"], join_type="left outer")
    if last_steps is None:
        last_steps = copies.group_by("trial_id").aggregate([("step", "max")]).rename_columns(["trial_id", "last_step"])
    ls = last_steps.select(["trial_id", "last_step"])
    ls = ls.set_column(1, "last_step", pc.cast(ls.column("last_step"), pa.float64()))
    out = out.join(ls, "trial_id", join_type="left outer")
    never = pc.is_null(out.column("first_step"))
    fs = pc.if_else(never, out.column("last_step"), out.column("first_step"))
    out = out.drop_columns(["first_step"]).append_column("first_step", fs).append_column("censored", never)
    return out.sort_by([("trial_id", "ascending"), ("train_index", "ascending")])


def first_copy(store: Any, sweep: str | None = None, trials: Sequence[str] | None = None) -> pa.Table:
    """``first_copy_from_tables`` read from a store (copies, samples, and each trial's last curve step)."""
    st = _open_store(store)
    copies = st.read("copies", sweep=sweep, trials=trials, columns=["trial_id", "step", "train_index", "count"])
    samples = st.read("samples", sweep=sweep, trials=trials, columns=["trial_id", "train_index"])
    curves = st.read("curves", sweep=sweep, trials=trials, columns=["trial_id", "step"])
    last = curves.group_by("trial_id").aggregate([("step", "max")]).rename_columns(["trial_id", "last_step"])
    return first_copy_from_tables(copies, samples, last)
