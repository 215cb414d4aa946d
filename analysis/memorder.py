"""Memorization order: which training samples are copied first, beside what a model that memorizes nothing gives.

A model that has learned the grammar and memorized nothing still copies training strings, the probable ones first,
so a raw order statistic means nothing alone (SCIENCE.md, "Memorization against a null"). Per trial:

* ``rho_proto``: Spearman rho between a sample's prototypicality and the evaluation at which it is first copied;
  never-copied samples are right-censored and tie above every copied one (mid-ranks). ``rho_loglik`` likewise with
  the exact log-likelihood. Negative: prototypical (likely) samples are copied first.
* ``partial_proto``: the partial rank correlation of prototypicality and first copy controlling for the
  log-likelihood, ``(r_pf - r_pl r_lf) / sqrt((1 - r_pl^2)(1 - r_lf^2))`` on Spearman correlations; with constant
  log-likelihoods (uniform rules) it is ``rho_proto``.
* ``rho_twin``: rho between prototypicality and the first evaluation at which a sample's copies exceed the
  mass-scaled copies of its twins (``count > twin_scaled``), over the samples that have twins in T'.
Three nulls (`NULLS`; SCIENCE.md, "Nulls that match what they are compared with"), each simulated `N_NULL` times:
* ``volume`` (the headline order null): the trial's own number of copies ``c_e`` at each evaluation, drawn from the
  distinct training strings with probabilities proportional to p(x) (uniform for uniform rules); each string's
  first-copy evaluation. Observed minus it says *which* strings the model copies with *how many* held fixed.
  Undefined (NaN, named in ``vol_note``) when the trial copied nothing. ``rho_twin`` has no volume null (it
  contrasts copies with twins' copies, a rate question).
* ``grammar``: a grammar-faithful generator with the trial's own N, evaluation schedule and training set, exactly:
  at every evaluation, N draws from the grammar are a multinomial over the distinct training strings (p(x) each),
  each twin group's T' members (their mass) and the rest.
* ``empirical``: the same with the empirical grammar (`rhm.empirical_grammar`: T's production frequencies, no
  string stored) in place of the grammar: each training string at its probability there (``emp_prob``).
  Prototypical-first beyond it means whole strings are stored, not only their parts' statistics. No ``rho_twin``.
Each null is reported as its mean and 95% range, the two-sided p-value of the observed value under it, and the
excess ``observed - null mean`` (columns ``<stat><infix>_null``, ``_null_lo``, ``_null_hi``, ``_p``, ``_excess``;
infix "" for the grammar null, "_vol", "_emp").
Intervals: per trial, a percentile bootstrap over its samples; pooled, a bootstrap of the mean over clusters of
trials that share a grammar and a data draw (`analysis.stats.cluster_keys`: those are the independent units), and
each observed mean beside each null's mean over the same trials (those where both are defined).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from scipy import stats

from analysis.onset import _open_store
from analysis.stats import bootstrap_mean, cluster_codes, with_clusters

STATS = ("rho_proto", "rho_loglik", "partial_proto", "rho_twin")
#: The order nulls by name -> the infix of their columns, headline first; and the statistics each one covers.
NULLS = {"volume": "_vol", "grammar": "", "empirical": "_emp"}
NULL_STATS = {"volume": STATS[:3], "grammar": STATS, "empirical": STATS[:3]}
NULL_PARTS = ("_null", "_null_lo", "_null_hi", "_p", "_excess")
#: Replicates of the simulated null per trial, and bootstrap resamples per trial.
N_NULL = 200
N_BOOT = 200
#: Elements of one block of simulated counts (replicates x evaluations x categories), bounding memory.
SIM_BLOCK = 2**22
SAMPLE_COLUMNS = ("trial_id", "train_index", "proto", "loglik", "prob", "root", "twin_group", "twin_mass",
                  "n_twins", "emp_prob")


# ----------------------------------------------------------------------------------------------- statistics
def _corr(ra: np.ndarray, rb: np.ndarray) -> np.ndarray:
    """Row-wise Pearson correlation of (..., n) arrays (broadcast); NaN where a row is constant."""
    a = ra - ra.mean(-1, keepdims=True)
    b = rb - rb.mean(-1, keepdims=True)
    den = np.sqrt((a * a).sum(-1) * (b * b).sum(-1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, (a * b).sum(-1) / np.where(den > 0, den, 1.0), np.nan)


def _rank(x: np.ndarray) -> np.ndarray:
    """Average ranks (1-based) along the last axis; counting instead of sorting for the evaluation indices of
    first copies (small non-negative integers), the simulated nulls' hot path."""
    x = np.asarray(x)
    if x.size and x.ndim == 2 and np.isfinite(x).all() and x.min() >= 0 and x.max() < 4096 \
            and (x == np.floor(x)).all():
        v = x.astype(np.int64)
        K = int(v.max()) + 1
        cnt = np.bincount((np.arange(v.shape[0])[:, None] * K + v).ravel(), minlength=v.shape[0] * K)
        cnt = cnt.reshape(v.shape[0], K)
        below = np.cumsum(cnt, 1) - cnt
        return np.take_along_axis(below, v, 1) + (np.take_along_axis(cnt, v, 1) + 1) / 2
    return stats.rankdata(x, axis=-1)


def order_stats(proto: np.ndarray, loglik: np.ndarray, first: np.ndarray) -> dict[str, np.ndarray]:
    """rho_proto, rho_loglik and partial_proto of replicates: arrays (..., n) that broadcast; `first` holds the
    first-copy evaluation index (censored samples: any value above every observed one, so they tie last)."""
    rp, rl, rf = _rank(proto), _rank(loglik), _rank(first)
    r_pf, r_lf, r_pl = _corr(rp, rf), _corr(rl, rf), _corr(rp, rl)
    with np.errstate(invalid="ignore", divide="ignore"):
        partial = (r_pf - r_pl * r_lf) / np.sqrt((1 - r_pl**2) * (1 - r_lf**2))
    partial = np.where(np.isnan(r_pl) & ~np.isnan(r_pf), r_pf, partial)   # constant loglik: nothing to control
    return {"rho_proto": r_pf, "rho_loglik": r_lf, "partial_proto": partial}


def twin_stat(proto: np.ndarray, exceed: np.ndarray) -> np.ndarray:
    """rho_twin of replicates over the samples with twins: (..., n) prototypicality and first-exceed index."""
    if proto.shape[-1] < 3:
        return np.full(np.broadcast_shapes(proto.shape, exceed.shape)[:-1], np.nan)
    return _corr(_rank(proto), _rank(exceed))


@dataclass(frozen=True)
class TrialSamples:
    """One trial's samples (n of them) and what the order statistics need of them.

    first / exceed: evaluation index (0..n_evals-1) of the first copy / of the first evaluation at which copies
    exceed the mass-scaled twin copies; n_evals where it never happened (censored). string: index of the distinct
    training string; group: twin group; group_mass: that group's mass in T' (0: no twins). copies: (n_evals,)
    generated strings that copied a training string at each evaluation (the volume null's c_e); emp_prob: each
    sample's probability under the empirical grammar (NaN: not in the store)."""

    proto: np.ndarray
    loglik: np.ndarray
    prob: np.ndarray
    string: np.ndarray
    group: np.ndarray
    group_mass: np.ndarray
    first: np.ndarray
    exceed: np.ndarray
    n_evals: int
    copies: np.ndarray | None = None
    emp_prob: np.ndarray | None = None

    @property
    def twin_ok(self) -> np.ndarray:
        return self.group_mass > 0


def simulate_null(s: TrialSamples, n_gen: int, n_rep: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(first, exceed), each (n_rep, n): the evaluation indices a grammar-faithful generator gives, drawing n_gen
    strings per evaluation as a multinomial over the distinct training strings, the twin groups and the rest."""
    D = int(s.string.max()) + 1 if s.string.size else 0
    p_string = np.zeros(D)
    p_string[s.string] = s.prob
    groups, g_of_sample = np.unique(np.where(s.twin_ok, s.group, -1), return_inverse=True)
    real = groups >= 0
    g_mass = np.zeros(groups.size)
    g_mass[g_of_sample] = np.where(s.twin_ok, s.group_mass, 0.0)
    pvals = np.concatenate([p_string, g_mass[real], [0.0]])
    pvals[-1] = max(0.0, 1.0 - pvals[:-1].sum())
    pvals /= pvals.sum()
    twin_col = D + np.cumsum(real)[g_of_sample] - 1                      # column of each sample's twin group
    E, n = s.n_evals, s.proto.size
    first = np.empty((n_rep, n))
    exceed = np.empty((n_rep, n))
    block = max(1, SIM_BLOCK // max(1, E * pvals.size))
    idx = np.arange(E)[None, :, None]
    for r0 in range(0, n_rep, block):
        counts = rng.multinomial(n_gen, pvals, size=(min(block, n_rep - r0), E))      # (r, E, K)
        own = counts[:, :, s.string]
        first[r0:r0 + block] = np.where(own > 0, idx, E).min(1)
        twins = counts[:, :, np.where(s.twin_ok, twin_col, 0)]
        with np.errstate(invalid="ignore", divide="ignore"):
            scaled = twins * np.where(s.twin_ok, s.prob / np.where(s.twin_ok, s.group_mass, 1.0), 0.0)
        exceed[r0:r0 + block] = np.where((own > scaled) & s.twin_ok, idx, E).min(1)
    return first, exceed


def first_copies(pvals: np.ndarray, counts: np.ndarray, string: np.ndarray, n_evals: int,
                 rng: np.random.Generator) -> np.ndarray:
    """First-copy evaluation index (n_rep, n) of each sample when counts[r, e] copies are drawn at evaluation e of
    replicate r from the distinct strings with probabilities pvals (D,); n_evals where never drawn. Draws each copy
    (O(copies), not O(evaluations x strings)), in blocks of replicates bounding memory."""
    n_rep, E = counts.shape
    D = pvals.size
    out = np.empty((n_rep, string.size))
    per_rep = max(1, int(counts.sum(1).max(initial=0)))
    block = max(1, SIM_BLOCK // per_rep)
    cdf = np.cumsum(pvals)
    cdf /= cdf[-1]
    for r0 in range(0, n_rep, block):
        c = counts[r0:r0 + block]
        cell = np.repeat(np.arange(c.size), c.ravel())                    # (replicate, evaluation) of each copy
        drawn = np.minimum(np.searchsorted(cdf, rng.random(cell.size), side="right"), D - 1)   # inverse CDF
        key = (cell // E) * D + drawn
        by_string = np.full(c.shape[0] * D, n_evals, np.int64)
        np.minimum.at(by_string, key, cell % E)
        out[r0:r0 + c.shape[0]] = by_string.reshape(c.shape[0], D)[:, string]
    return out


def _string_probs(s: TrialSamples, prob: np.ndarray) -> np.ndarray:
    """Probability (D,) of each distinct training string from its samples' `prob`."""
    D = int(s.string.max()) + 1 if s.string.size else 0
    p = np.zeros(D)
    p[s.string] = prob
    return p


def simulate_volume(s: TrialSamples, n_rep: int, rng: np.random.Generator) -> tuple[np.ndarray | None, str]:
    """(first (n_rep, n), "") from the volume-matched null: at each evaluation e, the trial's own c_e copies drawn
    from the distinct training strings with probabilities proportional to p(x); (None, why) where it is undefined."""
    c = np.zeros(s.n_evals, np.int64) if s.copies is None else np.asarray(s.copies, np.int64)
    p_string = _string_probs(s, s.prob)
    if c.sum() == 0:
        return None, "the trial copied no training string at any evaluation"
    if not (np.isfinite(p_string).all() and p_string.sum() > 0):
        return None, "the training strings' probabilities p(x) are not in the store"
    counts = np.broadcast_to(c, (n_rep, s.n_evals))
    return first_copies(p_string / p_string.sum(), counts, s.string, s.n_evals, rng), ""


def simulate_empirical(s: TrialSamples, n_gen: int, n_rep: int,
                       rng: np.random.Generator) -> tuple[np.ndarray | None, str]:
    """(first (n_rep, n), "") from the empirical-grammar generator: of its N draws per evaluation, Binomial(N, q(T))
    are copies, each of string x with probability q(x) / q(T) (q: the empirical grammar); (None, why) where the
    store lacks q."""
    if s.emp_prob is None or not np.isfinite(s.emp_prob).all():
        return None, "emp_prob is not in the store (written before the empirical-grammar null existed)"
    q = _string_probs(s, np.asarray(s.emp_prob, float))
    mass = min(float(q.sum()), 1.0)
    if mass <= 0:
        return None, "the training strings have no mass under the empirical grammar"
    counts = rng.binomial(n_gen, mass, size=(n_rep, s.n_evals))
    return first_copies(q / q.sum(), counts, s.string, s.n_evals, rng), ""


def _summary(obs: float, boot: np.ndarray, null: np.ndarray) -> dict[str, float]:
    """Observed value with its bootstrap interval, the null's mean and 95% range, the two-sided p under the null."""
    nan = float("nan")
    boot, null = boot[np.isfinite(boot)], null[np.isfinite(null)]
    out = dict(obs=float(obs), lo=nan, hi=nan, null=nan, null_lo=nan, null_hi=nan, p=nan, excess=nan)
    if boot.size >= 10:
        out.update(lo=float(np.quantile(boot, 0.025)), hi=float(np.quantile(boot, 0.975)))
    if null.size >= 10:
        mu = float(null.mean())
        out.update(null=mu, null_lo=float(np.quantile(null, 0.025)), null_hi=float(np.quantile(null, 0.975)),
                   excess=float(obs - mu) if np.isfinite(obs) else nan)
        if np.isfinite(obs):
            out["p"] = float((np.abs(null - mu) >= abs(obs - mu) - 1e-12).mean())
    return out


def trial_order(s: TrialSamples, n_gen: int, n_boot: int = N_BOOT, n_null: int = N_NULL,
                seed: int = 0) -> dict[str, Any]:
    """Every order statistic of one trial with its bootstrap interval and its three simulated nulls (`NULLS`)."""
    rng = np.random.default_rng(seed)
    n = s.proto.size
    obs = order_stats(s.proto, s.loglik, s.first)
    ok = s.twin_ok
    obs["rho_twin"] = twin_stat(s.proto[ok], s.exceed[ok])
    boot: dict[str, np.ndarray] = {k: np.array([]) for k in STATS}
    nulls: dict[str, dict[str, np.ndarray]] = {name: {} for name in NULLS}
    notes = {"volume": "", "empirical": ""}
    if n >= 3 and n_boot > 0:
        b = rng.integers(0, n, size=(n_boot, n))
        boot = order_stats(s.proto[b], s.loglik[b], s.first[b])
        bt = rng.integers(0, max(int(ok.sum()), 1), size=(n_boot, int(ok.sum())))
        boot["rho_twin"] = twin_stat(s.proto[ok][bt], s.exceed[ok][bt])
    copied = {"grammar": [np.nan, np.nan], "empirical": [np.nan, np.nan]}
    if n < 3 or n_null <= 0 or n_gen <= 0:
        notes = {k: f"no null simulated (n_samples = {n}, n_null = {n_null}, n_gen = {n_gen})" for k in notes}
    else:
        first, exceed = simulate_null(s, n_gen, n_null, rng)
        nulls["grammar"] = order_stats(s.proto, s.loglik, first)
        nulls["grammar"]["rho_twin"] = twin_stat(s.proto[ok], exceed[:, ok])
        copied["grammar"] = _copied(first, s.n_evals)
        vol, notes["volume"] = simulate_volume(s, n_null, rng)
        if vol is not None:
            nulls["volume"] = order_stats(s.proto, s.loglik, vol)
        emp, notes["empirical"] = simulate_empirical(s, n_gen, n_null, rng)
        if emp is not None:
            nulls["empirical"] = order_stats(s.proto, s.loglik, emp)
            copied["empirical"] = _copied(emp, s.n_evals)
        for name in notes:
            if not notes[name] and np.isfinite(nulls[name].get("rho_proto", np.array([]))).sum() < 10:
                notes[name] = ("the null's first-copy evaluations are constant in nearly every draw (every string "
                               "copied at the same evaluation, or none): its rank correlation is undefined")
    row: dict[str, Any] = {"n_samples": n, "n_copied": int((s.first < s.n_evals).sum()),
                           "n_copied_null": copied["grammar"][0], "n_copied_null_sd": copied["grammar"][1],
                           "n_copied_emp_null": copied["empirical"][0],
                           "n_copies": int(0 if s.copies is None else np.sum(s.copies)),
                           "n_twin_samples": int(ok.sum()), "n_null": n_null,
                           "vol_note": notes["volume"], "emp_note": notes["empirical"]}
    for k in STATS:
        for name, infix in NULLS.items():
            if k not in NULL_STATS[name]:
                continue
            summary = _summary(float(np.asarray(obs[k])), boot[k], nulls[name].get(k, np.array([])))
            if name == "grammar":
                row.update({k: summary["obs"], f"{k}_lo": summary["lo"], f"{k}_hi": summary["hi"]})
            for part in NULL_PARTS:
                row[f"{k}{infix}{part}"] = summary[part.lstrip("_")]
    return row


def _copied(first: np.ndarray, n_evals: int) -> list[float]:
    """Mean and sd over replicates of how many samples a simulated null copied at least once."""
    c = (first < n_evals).sum(1)
    return [float(c.mean()), float(c.std())]


# ----------------------------------------------------------------------------------------------- from tables
def _trial_samples(samples: pa.Table, copies: pa.Table, steps: np.ndarray) -> TrialSamples:
    """TrialSamples of one trial from its samples, copies (step, train_index, count[, twin_scaled]) and steps."""
    s = samples.sort_by("train_index")
    col = {c: s.column(c).to_numpy(zero_copy_only=False) for c in s.column_names}
    n, E = s.num_rows, steps.size
    tidx = col["train_index"].astype(np.int64)
    pos = np.searchsorted(tidx, copies.column("train_index").to_numpy(zero_copy_only=False).astype(np.int64))
    ev = np.searchsorted(steps, copies.column("step").to_numpy(zero_copy_only=False).astype(float))
    cnt = copies.column("count").to_numpy(zero_copy_only=False).astype(float)
    scaled = (np.nan_to_num(copies.column("twin_scaled").to_numpy(zero_copy_only=False).astype(float))
              if "twin_scaled" in copies.column_names else np.full(cnt.size, np.inf))
    first, exceed = np.full(n, E, float), np.full(n, E, float)
    np.minimum.at(first, pos[cnt > 0], ev[cnt > 0])
    hit = cnt > scaled
    np.minimum.at(exceed, pos[hit], ev[hit])

    def get(name: str, default: float) -> np.ndarray:
        v = col.get(name)
        return np.full(n, default) if v is None else np.where(_isnull(v), default, v).astype(float)

    root, group = get("root", -1), get("twin_group", -1)
    string = (np.unique(np.stack([root, group], 1), axis=0, return_inverse=True)[1].reshape(-1)
              if (group >= 0).all() else np.arange(n))
    mass = np.where(get("n_twins", 0) > 0, np.nan_to_num(get("twin_mass", 0.0)), 0.0)
    return TrialSamples(proto=get("proto", np.nan), loglik=get("loglik", np.nan), prob=get("prob", 0.0),
                        string=string.astype(np.int64), group=group.astype(np.int64), group_mass=mass,
                        first=first, exceed=np.where(mass > 0, exceed, E), n_evals=E,
                        copies=_copies_per_eval(string[pos], ev, cnt, E), emp_prob=get("emp_prob", np.nan))


def _copies_per_eval(string: np.ndarray, ev: np.ndarray, cnt: np.ndarray, n_evals: int) -> np.ndarray:
    """Generated strings that copied a training string, per evaluation: each distinct string once (a duplicated
    training string carries the full count at each of its indices)."""
    keep = (cnt > 0) & (ev < n_evals)
    pairs, first = np.unique(np.stack([ev[keep], string[keep]], 1), axis=0, return_index=True)
    return np.bincount(pairs[:, 0].astype(np.int64), cnt[keep][first], minlength=n_evals).astype(np.int64)


def _isnull(v: np.ndarray) -> np.ndarray:
    return np.array([x is None for x in v]) if v.dtype == object else np.isnan(v.astype(float))


def _split(t: pa.Table, ids: Sequence[str]) -> dict[str, pa.Table]:
    """Rows of `t` per trial id (one sort, then slices)."""
    t = t.sort_by("trial_id")
    tid = t.column("trial_id").to_numpy(zero_copy_only=False)
    out = {}
    if tid.size:
        b = np.flatnonzero(np.r_[True, tid[1:] != tid[:-1], True])
        out = {tid[a]: t.slice(a, e - a) for a, e in zip(b[:-1], b[1:])}
    empty = t.slice(0, 0)
    return {i: out.get(i, empty) for i in ids}


ORDER_COLUMNS = ["trial_id", "n_samples", "n_copied", "n_copied_null", "n_copied_null_sd", "n_copied_emp_null",
                 "n_copies", "n_twin_samples", "n_null", "vol_note", "emp_note"] + [
    f"{k}{part}" for k in STATS for part in ("", "_lo", "_hi")] + [
    f"{k}{infix}{part}" for k in STATS for name, infix in NULLS.items() if k in NULL_STATS[name]
    for part in NULL_PARTS]


def order_from_tables(samples: pa.Table, copies: pa.Table, curves: pa.Table, trials: pa.Table | None = None,
                      n_boot: int = N_BOOT, n_null: int = N_NULL, seed: int = 0) -> pa.Table:
    """Per trial: every order statistic beside its null (module docstring), with group columns from `trials`.

    `curves` gives each trial's evaluation steps (columns trial_id, step); `trials` its N (`n_gen`, default 256
    when absent) and group columns (tail, L, P, seed)."""
    ids = sorted(set(samples.column("trial_id").to_pylist()))
    by_s, by_c, by_e = _split(samples, ids), _split(copies, ids), _split(curves.select(["trial_id", "step"]), ids)
    n_gen = {}
    if trials is not None and "n_gen" in trials.column_names:
        n_gen = {t: g for t, g in zip(trials.column("trial_id").to_pylist(), trials.column("n_gen").to_pylist())}
    rows = []
    for k, tid in enumerate(ids):
        steps = np.unique(by_e[tid].column("step").to_numpy(zero_copy_only=False).astype(float))
        if steps.size == 0:
            continue
        s = _trial_samples(by_s[tid], by_c[tid], steps)
        rows.append({"trial_id": tid, **trial_order(s, int(n_gen.get(tid) or 256), n_boot, n_null, seed + k)})
    ints = {"n_samples", "n_copied", "n_copies", "n_twin_samples", "n_null"}
    strings = {"trial_id", "vol_note", "emp_note"}
    schema = pa.schema([(c, pa.string() if c in strings else pa.int64() if c in ints else pa.float64())
                        for c in ORDER_COLUMNS])
    out = pa.Table.from_pylist(rows, schema=schema)
    if trials is not None:
        keep = [c for c in ("tail", "L", "P", "seed") if c in trials.column_names]
        out = out.join(with_clusters(trials.select(["trial_id"] + keep), trials), "trial_id", join_type="left outer")
    return out


def pool_order(order: pa.Table, n_boot: int = 1000, seed: int = 0) -> pa.Table:
    """Per (tail, L) group and over all trials ("*"), for every statistic: the mean observed value with a bootstrap
    interval over clusters of trials (over the trials where the grammar-faithful null is defined, when there is
    one: `n_<stat>`, with `n_<stat>_no_null` left out for want of it and `n_clusters_<stat>` clusters), and per null
    (`NULLS`, infix ""/"_vol"/"_emp"): the mean observed value and mean null over the same trials (both defined),
    the mean excess (observed - null) with its interval over clusters, the fraction of trials whose statistic is
    below its null mean, and the trials where it is undefined, counted and named (`n_<stat><infix>_undefined`,
    `<stat><infix>_undefined`; `n_<stat><infix>_no_null` of them had an observed value)."""
    rng = np.random.default_rng(seed)
    codes = cluster_codes(order)
    has_groups = all(c in order.column_names for c in ("tail", "L"))
    keys = ([(str(t), int(L)) for t, L in zip(order.column("tail").to_pylist(), order.column("L").to_pylist())]
            if has_groups else [("*", -1)] * order.num_rows)
    ids = np.array(order.column("trial_id").to_pylist() if "trial_id" in order.column_names
                   else [str(i) for i in range(order.num_rows)], dtype=object)
    col = lambda name: order.column(name).to_numpy(zero_copy_only=False).astype(float)  # noqa: E731
    rows = []
    for group in sorted(set(keys)) + ([("*", -1)] if has_groups else []):
        m = np.array([group == ("*", -1) or k == group for k in keys], bool)
        row: dict[str, Any] = {"tail": group[0], "L": None if group[1] < 0 else group[1]}
        for name in STATS:
            if name not in order.column_names:
                continue
            obs = col(name)[m]
            has_null = f"{name}_null" in order.column_names
            null = col(f"{name}_null")[m] if has_null else np.zeros(obs.size)
            pair = np.isfinite(obs) & np.isfinite(null)      # observed beside its null: the same trials
            mean, lo, hi = bootstrap_mean(np.where(pair, obs, np.nan), n_boot, rng, codes[m])
            row.update({f"n_{name}": int(pair.sum()), f"n_{name}_no_null": int((np.isfinite(obs) & ~pair).sum()),
                        f"n_clusters_{name}": int(np.unique(codes[m][pair]).size), f"{name}_mean": mean,
                        f"{name}_lo": lo, f"{name}_hi": hi})
            for infix in NULLS.values():
                if f"{name}{infix}_excess" in order.column_names:
                    row.update(_pool_null(order, name, infix, m, codes[m], ids[m], n_boot, rng))
        rows.append(row)
    return pa.Table.from_pylist(rows)


def _pool_null(order: pa.Table, name: str, infix: str, m: np.ndarray, codes: np.ndarray, ids: np.ndarray,
               n_boot: int, rng: np.random.Generator) -> dict[str, Any]:
    """Statistic `name` against the null of column infix `infix`, pooled over the trials `m` of `order`: observed
    and null means over the same trials, the excess with its interval over clusters `codes`, undefined trials named."""
    col = lambda c: order.column(c).to_numpy(zero_copy_only=False).astype(float)[m]  # noqa: E731
    key = f"{name}{infix}"
    obs, exc = col(name), col(f"{key}_excess")
    null = col(f"{key}_null") if f"{key}_null" in order.column_names else obs - exc
    ok = np.isfinite(obs) & np.isfinite(null) & np.isfinite(exc)
    e_mean, e_lo, e_hi = bootstrap_mean(np.where(ok, exc, np.nan), n_boot, rng, codes)
    nan = float("nan")
    return {f"n_{key}": int(ok.sum()), f"n_clusters_{key}": int(np.unique(codes[ok]).size),
            f"{key}_obs_mean": float(obs[ok].mean()) if ok.any() else nan,
            f"{key}_null_mean": float(null[ok].mean()) if ok.any() else nan,
            f"{key}_excess_mean": e_mean, f"{key}_excess_lo": e_lo, f"{key}_excess_hi": e_hi,
            f"frac_{key}_below_null": float((exc[ok] < 0).mean()) if ok.any() else nan,
            f"n_{key}_undefined": int((~ok).sum()), f"{key}_undefined": " ".join(str(i) for i in ids[~ok]),
            f"n_{key}_no_null": int((np.isfinite(obs) & ~ok).sum())}


def fraction_by_quantile(first: pa.Table, samples: pa.Table, steps: pa.Table, q: int = 4) -> pa.Table:
    """Fraction of training samples already copied at each evaluation step, per prototypicality quantile.

    `first` is `analysis.onset.first_copy_from_tables`' output; quantiles are taken within each trial (``q=4``:
    quartiles; 0 = least prototypical). ``steps`` has columns ``trial_id, step``. Returns ``trial_id, step,
    quantile, frac``."""
    s = samples.select(["trial_id", "train_index", "proto"])
    s = s.set_column(1, "train_index", pc.cast(s.column("train_index"), pa.int64()))
    j = first.join(s, ["trial_id", "train_index"], join_type="inner").sort_by("trial_id")
    tid = j.column("trial_id").to_numpy(zero_copy_only=False)
    fs = j.column("first_step").to_numpy(zero_copy_only=False).astype(float)
    cen = j.column("censored").to_numpy(zero_copy_only=False).astype(bool)
    pr = j.column("proto").to_numpy(zero_copy_only=False).astype(float)
    st = steps.sort_by([("trial_id", "ascending"), ("step", "ascending")])
    stid = st.column("trial_id").to_numpy(zero_copy_only=False)
    sst = st.column("step").to_numpy(zero_copy_only=False).astype(float)
    out: dict[str, list] = {"trial_id": [], "step": [], "quantile": [], "frac": []}
    if tid.size:
        b = np.flatnonzero(np.r_[True, tid[1:] != tid[:-1], True])
        for a, e in zip(b[:-1], b[1:]):
            ev = sst[stid == tid[a]]
            if ev.size == 0:
                continue
            r = stats.rankdata(pr[a:e], method="ordinal") - 1
            qi = np.minimum((r * q) // max(e - a, 1), q - 1).astype(int)
            hit = np.where(cen[a:e], np.inf, fs[a:e])[None, :] <= ev[:, None]            # (steps, samples)
            for k in range(q):
                if (qi == k).any():
                    out["trial_id"] += [tid[a]] * ev.size
                    out["step"].append(ev)
                    out["quantile"] += [k] * ev.size
                    out["frac"].append(hit[:, qi == k].mean(1))
    return pa.table({"trial_id": pa.array(out["trial_id"], pa.string()),
                     "step": np.concatenate(out["step"]) if out["step"] else np.array([], float),
                     "quantile": pa.array(out["quantile"], pa.int64()),
                     "frac": np.concatenate(out["frac"]) if out["frac"] else np.array([], float)})


def sample_contrast(samples: pa.Table, copies: pa.Table) -> pa.Table:
    """Per (trial, training sample): copies summed over evaluations, the mass-scaled copies of its twins, and the
    twin contrast = copies - twin_scaled (expected 0 for a model that memorized nothing; large for memorized
    samples). Samples without twins in T' get a null contrast."""
    cols = ["trial_id", "train_index", "count", "twin_scaled"]
    c = copies.select(cols) if copies.num_rows else pa.table({c: [] for c in cols})
    c = c.set_column(1, "train_index", pc.cast(c.column("train_index"), pa.int64()))
    agg = c.group_by(["trial_id", "train_index"]).aggregate([("count", "sum"), ("twin_scaled", "sum")])
    s = samples.select(["trial_id", "train_index", "n_twins"])
    s = s.set_column(1, "train_index", pc.cast(s.column("train_index"), pa.int64()))
    j = s.join(agg, ["trial_id", "train_index"], join_type="left outer").sort_by(
        [("trial_id", "ascending"), ("train_index", "ascending")])
    n = pc.fill_null(pc.cast(j.column("count_sum"), pa.float64()), 0.0)
    t = pc.fill_null(pc.cast(j.column("twin_scaled_sum"), pa.float64()), 0.0)
    has = pc.greater(pc.fill_null(j.column("n_twins"), 0), 0)
    contrast = pc.if_else(has, pc.subtract(n, t), pa.scalar(None, pa.float64()))
    return pa.table({"trial_id": j.column("trial_id"), "train_index": j.column("train_index"), "copies": n,
                     "twin_scaled": t, "contrast": contrast})


def read_order_tables(store: Any, sweep: str | None = None, trials: Sequence[str] | None = None) -> dict[str, pa.Table]:
    """The store tables the order analysis needs: trials, samples, copies and curve steps."""
    st = _open_store(store)
    samples = st.read("samples", sweep=sweep, trials=trials)
    return {"trials": st.read("trials", sweep=sweep, trials=trials),
            "samples": samples.select([c for c in SAMPLE_COLUMNS if c in samples.column_names]),
            "copies": st.read("copies", sweep=sweep, trials=trials),
            "curves": st.read("curves", sweep=sweep, trials=trials, columns=["trial_id", "step"])}


def memorder(store: Any, sweep: str | None = None, trials: Sequence[str] | None = None, n_boot: int = N_BOOT,
             n_null: int = N_NULL) -> pa.Table:
    """Per-trial order statistics beside their nulls (`order_from_tables`) read from a store."""
    t = read_order_tables(store, sweep, trials)
    return order_from_tables(t["samples"], t["copies"], t["curves"], t["trials"], n_boot, n_null)
