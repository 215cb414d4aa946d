"""Planted-law synthetic data: store tables whose onsets follow ``tau = C * P**beta * lognormal(sigma)``.

Used by the tests and the benchmark to check that the analysis recovers a known law, with right-censoring at the
training budget. Memorization curves are sigmoids in log-step, ``mem_excess(s) = 1 / (1 + (s / tau)**(-k))``, so
they cross 0.5 exactly at ``tau``; generalization (``novel_valid_frac``) rises at ``tau_gen`` (almost independent of
P) and falls as memorization takes over; per-level over-production peaks between ``tau_gen`` and ``tau_mem``
(slop); training samples are first copied earlier the more prototypical they are.
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import pyarrow as pa

from analysis.registry import CURVE_METRICS, LEVEL_METRICS


def planted_onsets(Ps: Sequence[int], n_seeds: int, beta: float, logC: float, sigma: float, budget: float,
                   first_eval: float = 10.0, rng: np.random.Generator | None = None) -> dict[str, np.ndarray]:
    """Onsets drawn straight from the law (no curves): for fast coverage/bias tests of the fit core.

    Returns ``logP, logtau, censored, left, true_logtau``; a draw beyond ``budget`` is right-censored at it, one
    before ``first_eval`` left-censored at it.
    """
    rng = rng or np.random.default_rng(0)
    P = np.repeat(np.asarray(Ps, float), n_seeds)
    x = np.log(P)
    true = logC + beta * x + sigma * rng.standard_normal(x.size)
    cens = true > np.log(budget)
    left = true < np.log(first_eval)
    y = np.where(cens, np.log(budget), np.where(left, np.log(first_eval), true))
    return dict(logP=x, logtau=y, censored=cens, left=left, true_logtau=true)


def log_schedule(budget: int, n_evals: int, first_eval: int = 10) -> np.ndarray:
    """``n_evals`` log-spaced integer steps from ``first_eval`` to ``budget`` (unique, ends at ``budget``)."""
    s = np.unique(np.round(np.geomspace(first_eval, budget, n_evals)).astype(np.int64))
    return s


def _sig(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-z))


def synthetic_tables(sweep: str = "synth", tails: Sequence[str] = ("uniform", "power(a=1)"),
                     Ls: Sequence[int] = (2, 3), Ps: Sequence[int] = (64, 128, 256, 512, 1024),
                     n_seeds: int = 4, beta: float = 1.0, logC: float = 1.0,
                     tail_shift: dict[str, float] | None = None, L_shift: float = 0.3, sigma: float = 0.3,
                     budget: int = 20_000, n_evals: int = 40, first_eval: int = 10, steepness: float = 4.0,
                     noise: float = 0.0, gen_logC: float = 4.0, gen_beta: float = 0.05, detail_trials: int = 1,
                     n_levels_parts: int = 6, detail_max_P: int | None = None,
                     seed: int = 0) -> dict[str, pa.Table]:
    """Tables ``trials, curves, level_curves, copies, samples, parts`` for a planted-law sweep.

    True onset of a trial: ``log tau = logC + tail_shift[tail] + L_shift * (L - min(Ls)) + beta log P + sigma eps``.
    Trials are censored where ``tau`` exceeds ``budget``. ``detail_trials`` trials per (tail, L, P) get the
    per-sample and per-level tables (copies, samples, parts, level_curves), only those with ``P <= detail_max_P``
    if given; ``noise`` adds Gaussian noise to the
    curves (making them non-monotone). The true onsets are in the trials table's ``true_tau`` column.
    """
    rng = np.random.default_rng(seed)
    tail_shift = {"uniform": 0.0, **(tail_shift or {t: 0.5 * i for i, t in enumerate(tails)})}
    steps = log_schedule(budget, n_evals, first_eval)
    E = steps.size
    ls = np.log(steps.astype(float))
    rows = [(t, L, P, s) for t in tails for L in Ls for P in Ps for s in range(n_seeds)]
    n = len(rows)
    tl = np.array([r[0] for r in rows], object)
    Lv = np.array([r[1] for r in rows], np.int64)
    Pv = np.array([r[2] for r in rows], np.int64)
    Sv = np.array([r[3] for r in rows], np.int64)
    mu = logC + np.array([tail_shift.get(t, 0.0) for t in tl]) + L_shift * (Lv - min(Ls)) + beta * np.log(Pv)
    log_tau = mu + sigma * rng.standard_normal(n)
    log_gen = gen_logC + gen_beta * np.log(Pv) + 0.1 * rng.standard_normal(n)
    ids = np.array([f"{sweep}-{i:06d}" for i in range(n)], object)

    z = steepness * (ls[None, :] - log_tau[:, None])
    mem = _sig(z)
    zg = steepness * (ls[None, :] - log_gen[:, None])
    valid = 0.98 * _sig(zg)
    if noise:
        mem = mem + noise * rng.standard_normal(mem.shape)
        valid = np.clip(valid + noise * rng.standard_normal(valid.shape), 0, 1)
    # a planted memorizer: a fraction `mem` of generations copies, the rest samples a grammar in which the training
    # set has mass p(T) = base and its twin set (n_c = 4) and held-out set 3 * base, so every null-controlled
    # memorization metric (mem_excess, mem_twin, mem_heldout) equals `mem` exactly
    base = 0.01
    m01 = np.clip(mem, 0, 1)
    copy = mem + (1 - mem) * base
    slop = _sig(zg) * (1 - _sig(z))
    loss = 2.0 * np.exp(-ls[None, :] / 6) + 0.1 * (1 - m01)
    planted = {
        "train_loss": loss, "heldout_loss": loss + m01, "copy_frac": copy, "copy_baseline": np.full((n, E), base),
        "mem_excess": mem, "twin_frac": (1 - mem) * 3 * base, "mem_twin": mem, "heldout_frac": (1 - mem) * 3 * base,
        "mem_heldout": mem, "near_copy_frac": np.clip(copy + 0.02, 0, 1), "mean_d1": 3.0 * (1 - m01),
        "valid_frac": valid, "novel_valid_frac": valid * (1 - copy),
        "gen_share": valid * (1 - copy) / (1 - base), "unique_gen_frac": 1 - 0.5 * m01,
        "overprod": 0.5 * slop, "slop_n": 256 * (1 - copy), "entropy_ratio": 1 - 0.3 * slop,
        "kl_gen_train": 0.5 * (1 - m01), "kl_gen_grammar": 0.2 + 0.3 * slop, "proto_spearman": np.full((n, E), -0.4),
        "loglik_spearman": np.full((n, E), -0.3),
    }
    cur = {"trial_id": np.repeat(ids, E), "step": np.tile(steps, n),
           "wall_time": np.tile(np.cumsum(np.diff(np.r_[0, steps])) * 1e-3, n)}
    cur.update({m: np.asarray(planted.get(m, np.full((n, E), np.nan)), float).ravel() for m in CURVE_METRICS})
    curves = pa.table(cur)
    fam = np.array(["uniform" if t == "uniform" else t.split("(")[0] for t in tl], object)
    a = np.array([float(t.split("a=")[1].split(")")[0]) if "a=" in t else 0.0 for t in tl])
    trials = pa.table({
        "trial_id": ids.tolist(), "status": ["done"] * n, "final_step": np.full(n, steps[-1], np.int64),
        "budget_steps": np.full(n, budget, np.int64), "tail": tl.tolist(), "tail_family": fam.tolist(),
        "tail_a": a, "tail_levels": pa.array([None] * n, pa.string()), "L": Lv, "P": Pv, "seed": Sv,
        "config_json": ["{}"] * n, "n_gen": np.full(n, 256, np.int64), "true_tau": np.exp(log_tau),
        "true_tau_gen": np.exp(log_gen),
    })
    # detailed per-sample / per-level tables for a few trials per (tail, L, P)
    det = np.flatnonzero((Sv < detail_trials) & (Pv <= (detail_max_P if detail_max_P is not None else Pv.max())))
    lev, cop, sam, par = [], [], [], []
    for i in det:
        tid, P, L = ids[i], int(Pv[i]), int(Lv[i])
        sl = slop[i]
        lv = {"valid_frac": np.repeat(valid[i], L), "overprod": np.outer(sl, 0.6 / (1 + np.arange(L))).ravel(),
              "slop_n": np.repeat(planted["slop_n"][i], L), "entropy_ratio": (1 - np.outer(sl, 0.3 / (1 + np.arange(L)))).ravel(),
              "kl_gen_train": np.repeat(planted["kl_gen_train"][i], L),
              "kl_gen_grammar": np.repeat(planted["kl_gen_grammar"][i], L)}
        lev.append(pa.table({"trial_id": [tid] * (E * L), "step": np.repeat(steps, L), "level": np.tile(np.arange(L), E),
                             **{m: lv.get(m, np.full(E * L, np.nan)) for m in LEVEL_METRICS}}))
        proto = rng.standard_normal(P)
        loglik = 2.0 * proto + rng.standard_normal(P) - 10.0
        # prototypical samples are copied first: first-copy time spread around tau, earlier for high proto
        fc = np.exp(log_tau[i] - 0.8 * proto + 0.5 * rng.standard_normal(P))
        ev = np.searchsorted(steps, fc)                 # first eval index at or after the planted copy time
        copied = ev < E
        sam.append(pa.table({
            "trial_id": [tid] * P, "train_index": np.arange(P, dtype=np.int64), "loglik": loglik,
            "prob": np.exp(loglik), "proto": proto,
            "proto_levels": pa.array([[float(p)] * L for p in proto], pa.list_(pa.float64())),
            "root": np.zeros(P, np.int64), "twin_group": np.arange(P, dtype=np.int64),
            "twin_mass": 3 * np.exp(loglik), "n_twins": np.full(P, 3, np.int64),
        }))
        ci = np.flatnonzero(copied)
        reps = E - ev[ci]
        cop.append(pa.table({
            "trial_id": [tid] * int(reps.sum()), "train_index": np.repeat(ci, reps).astype(np.int64),
            "step": np.concatenate([steps[e:] for e in ev[ci]]) if ci.size else np.array([], np.int64),
            "count": np.ones(int(reps.sum()), np.int64), "twin_count": np.zeros(int(reps.sum()), np.int64),
            "twin_scaled": np.zeros(int(reps.sum())),
        }))
        K = n_levels_parts
        gp = (1.0 + np.arange(K)) ** -1.0
        gp = gp / gp.sum()
        rows_s, rows_l, rows_p, gc, tc, gpr = [], [], [], [], [], []
        for l in range(L):
            train = rng.multinomial(P * 2 ** l, gp)
            for e in range(E):
                w = gp ** (1 + 1.5 * sl[e] / (1 + l))
                w = w / w.sum()
                gen = rng.multinomial(256 * 2 ** l, w)
                rows_s.append(np.full(K, steps[e])); rows_l.append(np.full(K, l)); rows_p.append(np.arange(K))
                gc.append(gen); tc.append(train); gpr.append(gp)
        par.append(pa.table({
            "trial_id": [tid] * (K * L * E), "step": np.concatenate(rows_s).astype(np.int64),
            "level": np.concatenate(rows_l).astype(np.int64), "production": np.concatenate(rows_p).astype(np.int64),
            "gen_count": np.concatenate(gc).astype(np.int64), "train_count": np.concatenate(tc).astype(np.int64),
            "grammar_prob": np.concatenate(gpr), "null_prob": np.concatenate(gpr),
        }))
    out = {"trials": trials, "curves": curves}
    for name, lst in (("level_curves", lev), ("copies", cop), ("samples", sam), ("parts", par)):
        if lst:
            out[name] = pa.concat_tables(lst)
    return out


def write_synthetic_store(store: Any, tables: dict[str, pa.Table], sweep: str = "synth", threads: int = 1) -> Any:
    """Write synthetic tables through ``analysis.store`` (one writer per trial, as trials do); returns the Store."""
    from analysis.store import Store

    st = store if hasattr(store, "writer") else Store(str(store))
    trials = tables["trials"]
    extra = [c for c in ("true_tau", "true_tau_gen") if c in trials.column_names]
    ids = trials.column("trial_id").to_pylist()
    per = {name: t for name, t in tables.items() if name != "trials"}
    # split every table by trial once (sorted take), not a filter per trial
    split: dict[str, dict[str, pa.Table]] = {}
    for name, t in per.items():
        t = t.sort_by("trial_id")
        tid = t.column("trial_id").to_numpy(zero_copy_only=False)
        bounds = np.flatnonzero(np.r_[True, tid[1:] != tid[:-1], True])
        split[name] = {tid[a]: t.slice(a, b - a).drop_columns(["trial_id"]) for a, b in zip(bounds[:-1], bounds[1:])}
    def write(i: int) -> None:
        tid = ids[i]
        row = trials.slice(i, 1).drop_columns(["trial_id"] + extra)
        with st.writer(sweep, tid) as w:
            w.append("trials", row)
            for name in per:
                sub = split[name].get(tid)
                if sub is not None and sub.num_rows:
                    w.append(name, sub)

    if threads > 1:
        from concurrent.futures import ThreadPoolExecutor
        with ThreadPoolExecutor(threads) as ex:
            list(ex.map(write, range(len(ids))))
    else:
        for i in range(len(ids)):
            write(i)
    return st
