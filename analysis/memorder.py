"""Memorization order against prototypicality: which training samples are copied first.

Per trial, the Spearman rank correlation between a sample's prototypicality (or log-likelihood) and the step at
which it is first copied. Never-copied samples are right-censored: they are given one tied rank above every copied
sample (their first copy lies after the last evaluation, so after every observed first copy); Spearman's average
ranks handle these ties (``scipy.stats.spearmanr``). This is the usual mid-rank treatment of a censored block: it
uses only the order information the data has. A negative rho means prototypical samples are copied first. The
interval is a percentile bootstrap over the trial's samples (resampled with replacement, ranks recomputed).
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from scipy import stats

from analysis.onset import _open_store, first_copy_from_tables
from analysis.stats import bootstrap_mean


def _censored_times(first: np.ndarray, censored: np.ndarray) -> np.ndarray:
    """First-copy times with every censored sample tied strictly above all observed ones."""
    t = np.asarray(first, float).copy()
    cen = np.asarray(censored, bool)
    top = np.nanmax(t[~cen]) if (~cen).any() else 0.0
    t[cen] = max(top, np.nanmax(t) if t.size else 0.0) * (1 + 1e-9) + 1.0
    return t


def _rowwise_spearman(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Spearman rho for every row pair of (B, n) arrays (average ranks for ties)."""
    ra = stats.rankdata(a, axis=1)
    rb = stats.rankdata(b, axis=1)
    ra -= ra.mean(1, keepdims=True)
    rb -= rb.mean(1, keepdims=True)
    den = np.sqrt((ra * ra).sum(1) * (rb * rb).sum(1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return (ra * rb).sum(1) / den


def order_correlation(x: np.ndarray, first: np.ndarray, censored: np.ndarray, n_boot: int = 200,
                      seed: int = 0) -> dict[str, float]:
    """Spearman rho between x (prototypicality or loglik) and first-copy step, with a bootstrap 95% interval."""
    x = np.asarray(x, float)
    t = _censored_times(first, censored)
    ok = np.isfinite(x) & np.isfinite(t)
    x, t = x[ok], t[ok]
    nan = float("nan")
    out = dict(rho=nan, rho_lo=nan, rho_hi=nan, p=nan, n=int(x.size), n_copied=int((~np.asarray(censored, bool)[ok]).sum()))
    if x.size < 3 or np.ptp(t) == 0 or np.ptp(x) == 0:
        return out
    r = stats.spearmanr(x, t)
    out.update(rho=float(r.statistic), p=float(r.pvalue))
    if n_boot > 0:
        rng = np.random.default_rng(seed)
        idx = rng.integers(0, x.size, size=(n_boot, x.size))
        rb = _rowwise_spearman(x[idx], t[idx])
        rb = rb[np.isfinite(rb)]
        if rb.size >= 10:
            out.update(rho_lo=float(np.quantile(rb, 0.025)), rho_hi=float(np.quantile(rb, 0.975)))
    return out


def _first_with_samples(first: pa.Table, samples: pa.Table, cols: Sequence[str]) -> tuple[np.ndarray, ...]:
    """Join first-copy steps with per-sample columns, sorted by trial: (trial ids, first_step, censored, *cols)."""
    s = samples.select(["trial_id", "train_index", *cols])
    s = s.set_column(1, "train_index", pc.cast(s.column("train_index"), pa.int64()))
    j = first.join(s, ["trial_id", "train_index"], join_type="inner").sort_by("trial_id")
    arrays = {c: j.column(c).to_numpy(zero_copy_only=False) for c in ("trial_id", "first_step", "censored", *cols)}
    return (arrays["trial_id"], arrays["first_step"].astype(float), arrays["censored"].astype(bool),
            *(arrays[c].astype(float) for c in cols))


def order_from_tables(first: pa.Table, samples: pa.Table, trials: pa.Table | None = None, n_boot: int = 200,
                      seed: int = 0) -> pa.Table:
    """Per trial: rho(proto, first copy) and rho(loglik, first copy) with intervals, and group columns."""
    tid, fs, cen, pr, ll = _first_with_samples(first, samples, ["proto", "loglik"])
    rows = []
    if tid.size:
        b = np.flatnonzero(np.r_[True, tid[1:] != tid[:-1], True])
        for k, (a, e) in enumerate(zip(b[:-1], b[1:])):
            rp = order_correlation(pr[a:e], fs[a:e], cen[a:e], n_boot, seed + k)
            rl = order_correlation(ll[a:e], fs[a:e], cen[a:e], n_boot, seed + k)
            rows.append(dict(trial_id=tid[a], n_samples=rp["n"], n_copied=rp["n_copied"], rho_proto=rp["rho"],
                             rho_proto_lo=rp["rho_lo"], rho_proto_hi=rp["rho_hi"], p_proto=rp["p"],
                             rho_loglik=rl["rho"], rho_loglik_lo=rl["rho_lo"], rho_loglik_hi=rl["rho_hi"],
                             p_loglik=rl["p"]))
    schema = pa.schema([("trial_id", pa.string()), ("n_samples", pa.int64()), ("n_copied", pa.int64())]
                       + [(c, pa.float64()) for c in ("rho_proto", "rho_proto_lo", "rho_proto_hi", "p_proto",
                                                       "rho_loglik", "rho_loglik_lo", "rho_loglik_hi", "p_loglik")])
    out = pa.Table.from_pylist(rows, schema=schema)
    if trials is not None:
        keep = [c for c in ("tail", "L", "P", "seed") if c in trials.column_names]
        out = out.join(trials.select(["trial_id"] + keep), "trial_id", join_type="left outer")
    return out


def pool_order(order: pa.Table, n_boot: int = 1000, seed: int = 0) -> pa.Table:
    """Per (tail, L) group and over all trials: the mean of the per-trial rho (prototypicality and loglik) with a
    percentile bootstrap interval over trials, and the fraction of trials with rho < 0 (prototypical copied first).

    Trials are the independent units here (each has its own data sample and model), so the interval says how sure
    the sweep is of the sign, not how sure one trial is."""
    rng = np.random.default_rng(seed)
    has_groups = all(c in order.column_names for c in ("tail", "L"))
    keys = ([(str(t), int(L)) for t, L in zip(order.column("tail").to_pylist(), order.column("L").to_pylist())]
            if has_groups else [("*", -1)] * order.num_rows)
    rows = []
    for group in sorted(set(keys)) + ([("*", -1)] if has_groups else []):
        m = np.array([group == ("*", -1) or k == group for k in keys])
        row: dict[str, Any] = {"tail": group[0], "L": None if group[1] < 0 else group[1]}
        for name in ("proto", "loglik"):
            rho = order.column(f"rho_{name}").to_numpy(zero_copy_only=False).astype(float)[m]
            rho = rho[np.isfinite(rho)]
            mean, lo, hi = bootstrap_mean(rho, n_boot, rng)
            frac = float((rho < 0).mean()) if rho.size else float("nan")
            row.update({f"n_{name}": int(rho.size), f"rho_{name}_mean": mean, f"rho_{name}_lo": lo,
                        f"rho_{name}_hi": hi, f"frac_{name}_negative": frac})
        rows.append(row)
    return pa.Table.from_pylist(rows)


def fraction_by_quantile(first: pa.Table, samples: pa.Table, steps: pa.Table, q: int = 4) -> pa.Table:
    """Fraction of training samples already copied at each evaluation step, per prototypicality quantile.

    Quantiles are taken within each trial (``q=4``: quartiles; 0 = least prototypical). ``steps`` has columns
    ``trial_id, step`` (the trial's evaluation steps). Returns ``trial_id, step, quantile, frac``.
    """
    tid, fs, cen, pr = _first_with_samples(first, samples, ["proto"])
    st = steps.sort_by([("trial_id", "ascending"), ("step", "ascending")])
    stid = st.column("trial_id").to_numpy(zero_copy_only=False)
    sst = st.column("step").to_numpy(zero_copy_only=False).astype(float)
    out = {"trial_id": [], "step": [], "quantile": [], "frac": []}
    if tid.size:
        b = np.flatnonzero(np.r_[True, tid[1:] != tid[:-1], True])
        for a, e in zip(b[:-1], b[1:]):
            t = tid[a]
            ev = sst[stid == t]
            if ev.size == 0:
                continue
            r = stats.rankdata(pr[a:e], method="ordinal") - 1
            qi = np.minimum((r * q) // max(e - a, 1), q - 1).astype(int)
            copied_at = np.where(cen[a:e], np.inf, fs[a:e])
            hit = copied_at[None, :] <= ev[:, None]            # (steps, samples)
            for k in range(q):
                m = qi == k
                if not m.any():
                    continue
                out["trial_id"] += [t] * ev.size
                out["step"].append(ev)
                out["quantile"] += [k] * ev.size
                out["frac"].append(hit[:, m].mean(1))
    return pa.table({"trial_id": pa.array(out["trial_id"], pa.string()),
                     "step": np.concatenate(out["step"]) if out["step"] else np.array([], float),
                     "quantile": pa.array(out["quantile"], pa.int64()),
                     "frac": np.concatenate(out["frac"]) if out["frac"] else np.array([], float)})


def memorder(store: Any, sweep: str | None = None, trials: Sequence[str] | None = None, n_boot: int = 200,
             q: int = 4) -> tuple[pa.Table, pa.Table]:
    """(per-trial order correlations, fraction memorized by quantile over time) read from a store."""
    st = _open_store(store)
    tr = st.read("trials", sweep=sweep, trials=trials)
    samples = st.read("samples", sweep=sweep, trials=trials, columns=["trial_id", "train_index", "proto", "loglik"])
    copies = st.read("copies", sweep=sweep, trials=trials, columns=["trial_id", "step", "train_index", "count"])
    curves = st.read("curves", sweep=sweep, trials=trials, columns=["trial_id", "step"])
    last = curves.group_by("trial_id").aggregate([("step", "max")]).rename_columns(["trial_id", "last_step"])
    first = first_copy_from_tables(copies, samples, last)
    return order_from_tables(first, samples, tr, n_boot), fraction_by_quantile(first, samples, curves, q)
