"""Small statistics shared by the pooled summaries: which trials are independent (clusters of trials that share a
grammar and a data draw) and bootstrap intervals that resample those clusters, never trials that are not
independent as if they were (SCIENCE.md, "Nulls that match what they are compared with": Independence)."""
from __future__ import annotations

import numpy as np
import pyarrow as pa

#: Grammar columns of the trials table that, with the grammar seed, say which grammar (rules) a trial used.
_SHAPE = ("cfg.grammar.v", "cfg.grammar.n_c", "cfg.grammar.m", "cfg.grammar.s", "L")
#: Fewer clusters than this give no interval (a percentile interval of 1 or 2 units means nothing).
MIN_CLUSTERS = 3


def _col(t: pa.Table, name: str) -> list:
    return t.column(name).to_pylist() if name in t.column_names else [None] * t.num_rows


def cluster_keys(trials: pa.Table) -> np.ndarray:
    """One key per trials row: trials with the same key share a grammar (shape and grammar seed; the tail does not
    change the rules) and a data draw, so they are one independent unit. With `data_draw` "grammar+data" the draw
    is (grammar seed, data seed); with "data" or none recorded (stores written before) it is the data seed alone,
    so two grammar seeds with one data seed are one unit. A table without seed columns makes each trial its own."""
    if "seed" not in trials.column_names:
        return np.array([f"trial:{t}" for t in _col(trials, "trial_id")], object)
    draw = _col(trials, "data_draw")
    if all(d is None for d in draw):
        draw = _col(trials, "cfg.data_draw")
    gseed, seed = _col(trials, "cfg.grammar.seed"), _col(trials, "seed")
    shape = list(zip(*(_col(trials, c) for c in _SHAPE)))
    keys = []
    for d, g, s, sh in zip(draw, gseed, seed, shape):
        draw_key = f"grammar={g},data={s}" if d == "grammar+data" else f"data={s}"
        keys.append(f"{','.join(map(str, sh))}|{draw_key}")
    return np.array(keys, object)


def with_clusters(table: pa.Table, trials: pa.Table | None) -> pa.Table:
    """`table` (rows with a trial_id) with a `cluster` column from `trials` (`cluster_keys`); unchanged without
    trials or when it already has one."""
    if (trials is None or trials.num_rows == 0 or "cluster" in table.column_names
            or "trial_id" not in table.column_names):
        return table
    keys = dict(zip(trials.column("trial_id").to_pylist(), cluster_keys(trials).tolist()))
    return table.append_column("cluster", pa.array([keys.get(t) for t in table.column("trial_id").to_pylist()],
                                                   pa.string()))


def cluster_codes(table: pa.Table) -> np.ndarray:
    """Integer cluster codes of a table's rows: its `cluster` column, else one code per trial (or per row)."""
    if "cluster" in table.column_names:
        keys = [f"trial:{t}" if c is None else c
                for c, t in zip(table.column("cluster").to_pylist(), _col(table, "trial_id"))]
    elif "trial_id" in table.column_names:
        keys = table.column("trial_id").to_pylist()
    else:
        return np.arange(table.num_rows)
    return np.unique(np.array(keys, object).astype(str), return_inverse=True)[1].reshape(-1)


def cluster_weights(strata: np.ndarray, clusters: np.ndarray, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """(n_boot, n) bootstrap weights: within each stratum, its clusters drawn with replacement (as many as it has);
    each unit weighs the number of times its cluster was drawn. Every unit its own cluster is the plain bootstrap."""
    strata, clusters = np.asarray(strata), np.asarray(clusters)
    W = np.zeros((n_boot, strata.size))
    for s in np.unique(strata):
        idx = np.flatnonzero(strata == s)
        _, inv = np.unique(clusters[idx], return_inverse=True)
        K = int(inv.max()) + 1
        flat = (np.arange(n_boot)[:, None] * K + rng.integers(0, K, size=(n_boot, K))).ravel()
        counts = np.bincount(flat, minlength=n_boot * K).reshape(n_boot, K)
        W[:, idx] = counts[:, inv.reshape(-1)]
    return W


def n_clusters(clusters: np.ndarray, ok: np.ndarray | None = None) -> int:
    """Number of distinct clusters (among the rows where `ok`)."""
    c = np.asarray(clusters)
    return int(np.unique(c if ok is None else c[np.asarray(ok, bool)]).size)


def bootstrap_mean(x: np.ndarray, n_boot: int, rng: np.random.Generator,
                   clusters: np.ndarray | None = None) -> tuple[float, float, float]:
    """(mean, 2.5%, 97.5%) of the finite values of x; the interval is a percentile bootstrap over the clusters of
    those values (each value its own cluster when `clusters` is None), NaN with fewer than `MIN_CLUSTERS`."""
    x = np.asarray(x, float)
    ok = np.isfinite(x)
    c = np.arange(x.size) if clusters is None else np.asarray(clusters)
    x, c = x[ok], c[ok]
    if x.size == 0:
        return float("nan"), float("nan"), float("nan")
    if n_clusters(c) < MIN_CLUSTERS or n_boot <= 0:
        return float(x.mean()), float("nan"), float("nan")
    W = cluster_weights(np.zeros(x.size), c, n_boot, rng)
    boot = (W @ x) / W.sum(1)
    lo, hi = np.quantile(boot, [0.025, 0.975])
    return float(x.mean()), float(lo), float(hi)
