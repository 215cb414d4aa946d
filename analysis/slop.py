"""Slop: over-production of common parts in generations that are not copies, against its exact null (SCIENCE.md,
"Memorization against a null"), per evaluation and pooled over a sweep's trials.

One definition, used by the trial at every evaluation and by every table and figure:
* the parts: at production level l, the parsed nodes of the generated strings that are NOT copies of a training
  string (every derivable node, or with count_invalid=False those of valid strings only); measured on copies, slop
  would restate the memorization-order question;
* C_l, the level's common productions: the top quarter by training count (``ceil(q*K)``-th largest count and every
  tie, zero counts never; K = n_parents*m);
* the null: the production frequencies a grammar-faithful generator gives its non-copies, i.e. the grammar
  conditioned on x not in T, exact: ``r_l = (E_grammar[freq_l] - sum_{x in T} p(x) freq_l(x)) / (1 - p(T))``;
* ``overprod_l = f_gen(C_l) / r_l(C_l) - 1``: 0 for a grammar-faithful generator (exactly, in expectation, whatever
  P), > 0 when common parts are over-produced in novel strings (slop), < 0 when under-produced. The scalar
  ``overprod`` weighs levels by their parsed nodes: ``sum_l g_l(C_l) / sum_l G_l r_l(C_l) - 1``;
* ``overprod_train_l = f_gen(C_l) / t_l(C_l) - 1`` likewise against T's own production frequencies t_l (the share of
  T's level-l nodes using C_l): > 0 is sharpening, common parts produced more often than even T has them;
* the two references' nulls at the trial's N (`slop_nulls`, stored once per trial in ``slop_nulls``): for the
  grammar reference the empirical-grammar generator (T's production frequencies, no string stored: a model that
  learned the parts and stored no string over-produces T's common parts against the grammar), for the T
  reference the grammar (which produces T's common parts less often than T has them: reversion to the mean);
  each as its mean, sd and 95% range over replicates of N draws, with the strings each value rests on;
* ``slop_n``: the number of non-copy strings each value rests on (with a parsed node at the level; scalar: at any);
* ``entropy_ratio_l = H_gen(K | parent) / H_train(K | parent)`` (plug-in conditional entropies of the production
  index given the parent symbol), ``kl_gen_train_l`` against the eps-smoothed training conditionals,
  ``kl_gen_grammar_l`` against the null's conditionals r_l(k | parent); their scalars are means over the levels.
Pooled (``pool_slop``): each trial's mean overprod (and overprod_train) before tau_mem (from tau_gen when it was
observed) and after it, with bootstrap intervals over clusters of trials that share a grammar and a data draw
(``analysis.stats``); beside them each reference's null mean and sd and the excess over it (observed minus the
trial's null mean), with its interval over clusters.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from analysis.onset import _open_store, onsets_from_tables
from analysis.registry import DEFAULT_GEN_METRIC, DEFAULT_MEM_METRIC
from analysis.stats import bootstrap_mean, cluster_codes, with_clusters

#: Fraction of productions (by training count) that count as "common" in `overprod`.
OVERPROD_TOP_Q = 0.25
#: Add-epsilon pseudo-count on the training counts in KL(gen || train) (0.5 = Jeffreys / Krichevsky-Trofimov).
KL_EPS = 0.5
LEVEL_SLOP = ("overprod", "overprod_train", "entropy_ratio", "kl_gen_train", "kl_gen_grammar")
#: The slop references: reference -> (its metric, its null generator). Replicates of each null per trial.
REFERENCES = {"grammar": ("overprod", "empirical"), "train": ("overprod_train", "grammar")}
SLOP_NULL_REPS = 40


# ---------------------------------------------------------------------------------------------- the null
def grammar_production_probs(grammar: Any) -> list[np.ndarray]:
    """Per level l, (n_parents(l), m): probability that a node at level l (uniform over its s**l positions) uses
    each production, under the grammar's own sampling distribution (the expected production frequencies)."""
    sp = grammar.spec
    sym = np.asarray(grammar.root_probs, dtype=np.float64)  # distribution of the parent symbol at level 0
    out = []
    for level in range(sp.L):
        joint = sym[:, None] * np.asarray(grammar.probs[level], dtype=np.float64)
        out.append(joint)
        if level + 1 < sp.L:
            children = np.asarray(grammar.rules[level]).reshape(-1)  # (n_parents*m*s,)
            w = np.repeat(joint.reshape(-1), sp.s) / sp.s
            sym = np.bincount(children, weights=w, minlength=sp.v)
    return out


@dataclass(frozen=True)
class SlopReference:
    """The null of slop: per level (n_parents, m) frequencies among the level's nodes, for the grammar
    (`grammar`) and for the grammar's strings outside the training set (`novel`, None when p(T) = 1)."""

    grammar: list[np.ndarray]
    novel: list[np.ndarray] | None


def slop_reference(grammar: Any, train_distinct: np.ndarray, prob: np.ndarray) -> SlopReference:
    """Exact production frequencies of a grammar-faithful generator's non-copies, from the distinct training
    strings and their probabilities: (E_grammar[freq] - sum_x p(x) freq(x)) / (1 - p(T))."""
    sp = grammar.spec
    expected = grammar_production_probs(grammar)
    mass = math.fsum(np.asarray(prob, float).tolist())
    if mass >= 1.0 - 1e-12:
        return SlopReference(expected, None)
    ids = grammar.parse(train_distinct).ids
    novel = []
    for level in range(sp.L):
        k = sp.n_parents(level) * sp.m
        lv = ids[level]
        w = np.repeat(np.asarray(prob, float), lv.shape[1]) / sp.n_nodes(level)
        ok = lv.reshape(-1) >= 0
        inside = np.bincount(lv.reshape(-1)[ok], weights=w[ok], minlength=k).reshape(expected[level].shape)
        novel.append(np.clip(expected[level] - inside, 0.0, None) / (1.0 - mass))
    return SlopReference(expected, novel)


# ---------------------------------------------------------------------------------------------- one level
def _cond_entropy(c: np.ndarray) -> float:
    """Plug-in conditional entropy H(K | parent) in nats of counts c (n_parents, m): H(joint) - H(parent)."""
    n = c.sum()
    if n <= 0:
        return math.nan
    p = c[c > 0] / n
    pa_ = c.sum(1)
    pa_ = pa_[pa_ > 0] / n
    return float(-(p * np.log(p)).sum() + (pa_ * np.log(pa_)).sum())


def _cond_kl(c: np.ndarray, q: np.ndarray) -> float:
    """sum_a g(a) KL(g(.|a) || q(.|a)) for generated counts c and reference conditionals q (rows sum to 1)."""
    n = c.sum()
    if n <= 0:
        return math.nan
    pa_ = c.sum(1, keepdims=True)
    nz = c > 0
    cond = np.divide(c, pa_, out=np.zeros(c.shape), where=pa_ > 0)
    with np.errstate(divide="ignore"):
        terms = np.where(nz, c / n * (np.log(np.where(nz, cond, 1.0)) - np.log(np.where(nz, q, 1.0))), 0.0)
    return float(terms.sum())


def common_productions(train: np.ndarray, q: float = OVERPROD_TOP_Q) -> np.ndarray:
    """Flat mask of a level's common productions: count >= the ceil(q*K)-th largest training count (ties all in),
    zero counts never."""
    tf = np.asarray(train, dtype=np.float64).ravel()
    if tf.sum() <= 0:
        return np.zeros(tf.size, dtype=bool)
    k = max(1, math.ceil(q * tf.size))
    thr = np.partition(tf, tf.size - k)[tf.size - k]
    return (tf >= thr) & (tf > 0)


def slop_metrics(gen: np.ndarray, train: np.ndarray, ref: np.ndarray | None, q: float = OVERPROD_TOP_Q,
                 eps: float = KL_EPS) -> dict[str, float]:
    """Slop of one level from production counts (n_parents, m) of generated and training nodes and the null's
    frequencies `ref` (n_parents, m), summing to 1 over the level (None: undefined); NaN where undefined."""
    gen = np.asarray(gen, dtype=np.float64)
    train = np.asarray(train, dtype=np.float64)
    out = dict(overprod=math.nan, overprod_train=math.nan, entropy_ratio=math.nan, kl_gen_train=math.nan,
               kl_gen_grammar=math.nan)
    ng = gen.sum()
    if ng <= 0:
        return out
    common = common_productions(train, q)
    hit = gen.ravel()[common].sum()
    if ref is not None and common.any():
        out["overprod"] = _overprod(hit, ng, float(np.asarray(ref).ravel()[common].sum()))
    if common.any():
        out["overprod_train"] = _overprod(hit, ng, float(train.ravel()[common].sum() / train.sum()))
    if train.sum() > 0:
        h_train = _cond_entropy(train)
        if h_train > 0:
            out["entropy_ratio"] = _cond_entropy(gen) / h_train
    m = train.shape[1]
    out["kl_gen_train"] = _cond_kl(gen, (train + eps) / (train.sum(1, keepdims=True) + m * eps))
    if ref is not None:
        rows = np.asarray(ref, dtype=np.float64)
        tot = rows.sum(1, keepdims=True)
        out["kl_gen_grammar"] = _cond_kl(gen, np.divide(rows, tot, out=np.ones_like(rows), where=tot > 0))
    return out


def _overprod(hit: Any, nodes: Any, share: Any) -> Any:
    """hit / (nodes * share) - 1: common-production nodes against what a reference with that common share gives
    (NaN where nothing was expected); works on scalars and arrays."""
    expected = np.asarray(nodes, float) * np.asarray(share, float)
    with np.errstate(invalid="ignore", divide="ignore"):
        out = np.where(expected > 0, np.asarray(hit, float) / np.where(expected > 0, expected, 1.0) - 1.0, np.nan)
    return float(out) if out.ndim == 0 else out


# ---------------------------------------------------------------------------------------------- one evaluation
@dataclass(frozen=True)
class Slop:
    """Slop of one evaluation: scalars and levels keyed by registry name, and the flat `parts` columns."""

    scalars: dict[str, float]
    levels: dict[str, np.ndarray]
    parts: dict[str, np.ndarray]


def slop_of_novel(grammar: Any, parse: Any, novel: np.ndarray, train_counts: list[np.ndarray], ref: SlopReference,
                  count_invalid: bool = True, q: float = OVERPROD_TOP_Q) -> Slop:
    """Slop of the generated strings selected by `novel` (N,) bool (the non-copies) from their `parse`."""
    sp = grammar.spec
    rows = novel if count_invalid else novel & parse.valid
    levels = {name: np.full(sp.L, np.nan) for name in (*LEVEL_SLOP, "slop_n")}
    parts: dict[str, list[np.ndarray]] = {k: [] for k in ("level", "production", "gen_count", "train_count",
                                                            "grammar_prob", "null_prob")}
    seen = np.zeros(int(rows.sum()), dtype=bool)
    hit_common = expected_common = expected_train = 0.0
    for level in range(sp.L):
        ids = parse.ids[level][rows]
        k = sp.n_parents(level) * sp.m
        parsed = ids >= 0
        seen |= parsed.any(1)
        levels["slop_n"][level] = float(parsed.any(1).sum())
        gen = np.bincount(ids[parsed], minlength=k).reshape(sp.n_parents(level), sp.m)
        null = None if ref.novel is None else ref.novel[level]
        for name, value in slop_metrics(gen, train_counts[level], null, q).items():
            levels[name][level] = value
        common = common_productions(train_counts[level], q)
        if common.any():
            hit_common += gen.ravel()[common].sum()
            train = np.asarray(train_counts[level], float).ravel()
            expected_train += gen.sum() * train[common].sum() / train.sum()
            if null is not None:
                expected_common += gen.sum() * null.ravel()[common].sum()
        parts["level"].append(np.full(k, level, dtype=np.int64))
        parts["production"].append(np.arange(k, dtype=np.int64))
        parts["gen_count"].append(gen.reshape(-1).astype(np.int64))
        parts["train_count"].append(np.asarray(train_counts[level]).reshape(-1).astype(np.int64))
        parts["grammar_prob"].append(ref.grammar[level].reshape(-1))
        parts["null_prob"].append(np.full(k, np.nan) if null is None else null.reshape(-1))
    scalars = {name: _nanmean(levels[name]) for name in LEVEL_SLOP}
    scalars["overprod"] = (hit_common / expected_common - 1.0 if expected_common > 0 and ref.novel is not None
                           else math.nan)
    scalars["overprod_train"] = hit_common / expected_train - 1.0 if expected_train > 0 else math.nan
    scalars["slop_n"] = float(seen.sum())
    return Slop(scalars, levels, {k: np.concatenate(v) for k, v in parts.items()})


# ---------------------------------------------------------------------------------------------- nulls at the trial's N
SLOP_NULL_COLUMNS = ["reference", "null", "level", "null_mean", "null_sd", "null_lo", "null_hi", "n_strings",
                     "n_gen", "n_rep"]


def slop_nulls(grammar: Any, empirical: Any, train_keys: np.ndarray, train_counts: list[np.ndarray],
               ref: SlopReference, n_gen: int, n_rep: int = SLOP_NULL_REPS, seed: int = 0,
               q: float = OVERPROD_TOP_Q) -> dict[str, list]:
    """Each slop reference's null at the trial's N (`REFERENCES`): n_rep replicates of n_gen draws from the null
    generator, copies of T (sorted `train_keys`, `rhm.encode_strings`) removed as for the model, the reference's
    overprod per level and node-weighted (level -1). Columns `SLOP_NULL_COLUMNS`, one row per reference and level;
    n_strings is the mean number of non-copy strings (with a parsed node at the level) a replicate rests on."""
    from rhm import encode_strings

    sp = grammar.spec
    rng = np.random.default_rng(seed)
    out: dict[str, list] = {c: [] for c in SLOP_NULL_COLUMNS}
    commons = [common_productions(c, q) for c in train_counts]
    shares = {"grammar": [None if ref.novel is None else float(ref.novel[lv].ravel()[commons[lv]].sum())
                          for lv in range(sp.L)],
              "train": [float(np.asarray(c, float).ravel()[commons[lv]].sum() / max(np.sum(c), 1))
                        for lv, c in enumerate(train_counts)]}
    for reference, (_, null) in REFERENCES.items():
        gen = empirical if null == "empirical" else grammar
        if gen is None or n_gen <= 0 or n_rep <= 0:
            continue
        x = gen.sample(n_gen * n_rep, rng)
        keys = encode_strings(x, sp.v)
        pos = np.minimum(np.searchsorted(train_keys, keys), max(train_keys.size - 1, 0))
        novel = ~(train_keys[pos] == keys).reshape(n_rep, n_gen) if train_keys.size else np.ones((n_rep, n_gen), bool)
        ids = grammar.production_ids(x)
        hit_all, expected_all, seen = np.zeros(n_rep), np.zeros(n_rep), np.zeros((n_rep, n_gen), bool)
        for level in range(sp.L):
            lv = ids[level].reshape(n_rep, n_gen, -1)
            parsed = (lv >= 0) & novel[:, :, None]
            hits = (np.append(commons[level], False)[lv] & parsed).sum((1, 2))
            nodes = parsed.sum((1, 2))
            seen |= parsed.any(2)
            share = shares[reference][level]
            value = _overprod(hits, nodes, np.nan if share is None else share)
            _null_row(out, reference, null, level, value, parsed.any(2).sum(1), n_gen, n_rep)
            if share is not None:
                hit_all += hits
                expected_all += nodes * share
        _null_row(out, reference, null, ALL_LEVELS, _overprod(hit_all, 1.0, expected_all), seen.sum(1), n_gen,
                  n_rep)
    return out


def _null_row(out: dict[str, list], reference: str, null: str, level: int, value: np.ndarray, strings: np.ndarray,
              n_gen: int, n_rep: int) -> None:
    """Append one `slop_nulls` row: the replicates' mean, sd and 95% range (NaN where undefined in most of them)."""
    v = np.asarray(value, float)
    v = v[np.isfinite(v)]
    ok = v.size >= max(2, n_rep // 2)
    out["reference"].append(reference)
    out["null"].append(null)
    out["level"].append(int(level))
    out["null_mean"].append(float(v.mean()) if ok else math.nan)
    out["null_sd"].append(float(v.std(ddof=1)) if ok else math.nan)
    out["null_lo"].append(float(np.quantile(v, 0.025)) if ok else math.nan)
    out["null_hi"].append(float(np.quantile(v, 0.975)) if ok else math.nan)
    out["n_strings"].append(float(np.mean(strings)))
    out["n_gen"].append(int(n_gen))
    out["n_rep"].append(int(n_rep))


def _nanmean(x: np.ndarray) -> float:
    x = np.asarray(x, dtype=np.float64)
    ok = ~np.isnan(x)
    return float(x[ok].mean()) if ok.any() else math.nan


# ---------------------------------------------------------------------------------------------- pooled over a sweep
def windows_from_onsets(onsets_table: pa.Table, theta: float = 0.5) -> pa.Table:
    """Per trial: ``tau_gen``, ``tau_mem`` at ``theta`` and their censoring flags (the slop window)."""
    t = onsets_table.filter(pc.equal(onsets_table.column("theta"), theta))
    cols = ["trial_id", "tau", "censored"]
    mem = t.filter(pc.equal(t.column("onset"), "mem")).select(cols).rename_columns(["trial_id", "tau_mem", "mem_censored"])
    gen = t.filter(pc.equal(t.column("onset"), "gen")).select(cols).rename_columns(["trial_id", "tau_gen", "gen_censored"])
    return mem.join(gen, "trial_id", join_type="full outer").sort_by("trial_id")


SLOP_COLUMNS = ["trial_id", "step", "level", "overprod", "overprod_train", "slop_n"]
ALL_LEVELS = -1
#: The per-trial null columns slop_from_tables joins: <metric>_null_mean / _null_sd from `slop_nulls`.
NULL_COLUMNS = [f"{metric}_null_{part}" for metric, _ in REFERENCES.values() for part in ("mean", "sd")]


def _null_columns(nulls: pa.Table) -> pa.Table:
    """`slop_nulls` rows as one row per (trial_id, level) with each reference's null mean and sd."""
    rows: dict[tuple[str, int], dict[str, Any]] = {}
    for r in nulls.select(["trial_id", "reference", "level", "null_mean", "null_sd"]).to_pylist():
        if r["reference"] not in REFERENCES:
            continue
        metric = REFERENCES[r["reference"]][0]
        row = rows.setdefault((r["trial_id"], int(r["level"])), {"trial_id": r["trial_id"], "level": int(r["level"])})
        row.update({f"{metric}_null_mean": r["null_mean"], f"{metric}_null_sd": r["null_sd"]})
    schema = pa.schema([("trial_id", pa.string()), ("level", pa.int64())] + [(c, pa.float64()) for c in NULL_COLUMNS])
    return pa.Table.from_pylist(list(rows.values()), schema=schema)


def slop_from_tables(level_curves: pa.Table | None, trials: pa.Table | None, windows: pa.Table | None,
                     curves: pa.Table | None = None, nulls: pa.Table | None = None) -> pa.Table:
    """Slop curves ``trial_id, step, level, overprod, overprod_train, slop_n`` (level ``ALL_LEVELS`` = the
    node-weighted scalars from ``curves``), joined with the group columns of ``trials``, each trial's window from
    ``windows`` and each trial's null means and sds at its N from ``nulls`` (the `slop_nulls` table)."""
    parts = []
    if level_curves is not None and level_curves.num_rows:
        parts.append(_slop_cols(level_curves, SLOP_COLUMNS))
    if curves is not None and curves.num_rows and "overprod" in curves.column_names:
        c = _slop_cols(curves, [x for x in SLOP_COLUMNS if x != "level"])
        parts.append(c.add_column(2, "level", pa.array(np.full(c.num_rows, ALL_LEVELS, np.int64))))
    if not parts:
        return pa.table({"trial_id": pa.array([], pa.string()), "step": pa.array([], pa.int64()),
                         "level": pa.array([], pa.int64()), "overprod": pa.array([], pa.float64()),
                         "overprod_train": pa.array([], pa.float64()), "slop_n": pa.array([], pa.float64())})
    out = pa.concat_tables([p.cast(parts[0].schema) for p in parts])
    if trials is not None:
        keep = [c for c in ("tail", "L", "P", "seed") if c in trials.column_names]
        out = out.join(with_clusters(trials.select(["trial_id"] + keep), trials), "trial_id", join_type="left outer")
    if windows is not None:
        out = out.join(windows, "trial_id", join_type="left outer")
    if nulls is not None and nulls.num_rows:
        out = out.join(_null_columns(nulls), ["trial_id", "level"], join_type="left outer")
    return out.sort_by([("trial_id", "ascending"), ("level", "ascending"), ("step", "ascending")])


def _slop_cols(t: pa.Table, cols: list[str]) -> pa.Table:
    """`cols` of t, with overprod_train as NaN where a store written before it lacks the column."""
    if "overprod_train" not in t.column_names:
        t = t.append_column("overprod_train", pa.array(np.full(t.num_rows, np.nan)))
    return t.select(cols)


#: Per-trial columns `trial_slop` carries: the groups, and the cluster of trials sharing a grammar and data draw.
TRIAL_GROUPS = ("tail", "L", "P", "seed", "cluster")


def trial_slop(slop_table: pa.Table) -> pa.Table:
    """One row per (trial, level): the trial's mean overprod and overprod_train before memorization and after it
    (`pool_slop` says which evaluations), the evaluations and mean non-copy strings per evaluation each rests on,
    and its nulls' mean and sd at its N where the table has them. What `pool_trial_slop` pools."""
    cols = ["trial_id", "step", "level", "overprod", "slop_n", "tau_mem", "mem_censored", "tau_gen", "gen_censored"]
    if slop_table.num_rows == 0 or not all(c in slop_table.column_names for c in cols):
        return pa.table({})
    d = {c: slop_table.column(c).to_numpy(zero_copy_only=False) for c in slop_table.column_names}
    step = d["step"].astype(float)
    tau_mem = np.where(d["mem_censored"].astype(bool), np.inf, d["tau_mem"].astype(float))
    tau_gen = np.where(d["gen_censored"].astype(bool), -np.inf, d["tau_gen"].astype(float))
    phase = np.where(step >= tau_mem, 1, np.where(step >= tau_gen, 0, -1))  # 0 before, 1 after, -1 outside
    key = np.array([f"{t}\x00{lv}" for t, lv in zip(d["trial_id"], d["level"])])
    keys, first, inv = np.unique(key, return_index=True, return_inverse=True)
    out: dict[str, Any] = {"trial_id": d["trial_id"][first].astype(str), "level": d["level"][first].astype(np.int64)}
    out.update({c: d[c][first] for c in TRIAL_GROUPS if c in d})
    for metric in ("overprod", "overprod_train"):
        value = d[metric].astype(float) if metric in d else np.full(key.size, np.nan)
        for name, ph in (("before", 0), ("after", 1)):
            m = (phase == ph) & np.isfinite(value)
            n = np.bincount(inv[m], minlength=keys.size)
            with np.errstate(invalid="ignore", divide="ignore"):
                out[f"{metric}_{name}"] = np.where(n > 0, np.bincount(inv[m], value[m], keys.size) / n, np.nan)
                if metric == "overprod":
                    out[f"evals_{name}"] = n
                    out[f"strings_{name}"] = np.where(
                        n > 0, np.bincount(inv[m], d["slop_n"][m].astype(float), keys.size) / n, np.nan)
        for part in ("mean", "sd"):
            c = f"{metric}_null_{part}"
            out[c] = d[c][first].astype(float) if c in d else np.full(keys.size, np.nan)
    return pa.table(out)


def pool_slop(slop_table: pa.Table, n_boot: int = 1000, seed: int = 0) -> pa.Table:
    """Per (tail, L, level), for overprod (reference: the grammar) and overprod_train (reference: T's own
    frequencies): the mean over trials of each trial's mean value before memorization and after it, with bootstrap
    intervals over trials; beside it, where the trials' nulls at their N are in the table (`slop_nulls`), the mean
    null and null sd over the same trials and the mean excess (trial mean minus its null mean) with its interval.
    Also the fraction of trials that over-produce (> 0) before, and the mean over trials of the non-copy strings
    per evaluation the values rest on (`strings_before`, `strings_after`).

    "Before" is the partial-memorization window [tau_gen, tau_mem) when tau_gen was observed, else every evaluation
    before tau_mem at which the level's value is defined (non-copy parts were generated); "after" is from tau_mem
    on. A trial censored for tau_mem contributes only a "before" value."""
    return pool_trial_slop(trial_slop(slop_table), n_boot, seed)


def pool_trial_slop(trials: pa.Table, n_boot: int = 1000, seed: int = 0) -> pa.Table:
    """`pool_slop` from its per-trial rows (`trial_slop`, or the slop_trials.csv the findings commit)."""
    if trials.num_rows == 0:
        return pa.table({})
    d = {c: trials.column(c).to_numpy(zero_copy_only=False) for c in trials.column_names}
    has_groups = "tail" in d and "L" in d
    group = (np.array([f"{a}\x00{b}" for a, b in zip(d["tail"], d["L"])]) if has_groups
             else np.full(trials.num_rows, "*\x000"))
    codes = cluster_codes(trials)
    rng = np.random.default_rng(seed)
    rows = []
    for g in np.unique(group):
        for level in np.unique(d["level"][group == g]):
            sel = (group == g) & (d["level"] == level)
            row: dict[str, Any] = {"tail": g.split("\x00")[0], "L": int(g.split("\x00")[1]), "level": int(level)}
            for metric in ("overprod", "overprod_train"):
                for name in ("before", "after"):
                    row.update(_pool_phase(metric, name, sel, d, codes[sel], n_boot, rng))
            rows.append(row)
    return pa.Table.from_pylist(rows)


def _pool_phase(metric: str, name: str, sel: np.ndarray, d: dict[str, np.ndarray], codes: np.ndarray, n_boot: int,
                rng: np.random.Generator) -> dict[str, Any]:
    """One (metric, phase) of a pooled slop row from the selected trials' rows (their clusters `codes`), beside the
    trials' nulls; intervals resample clusters."""
    key = f"{metric}_{name}"
    per_trial = d[key][sel].astype(float)
    ok = np.isfinite(per_trial)
    mean, lo, hi = bootstrap_mean(per_trial, n_boot, rng, codes)
    k = int(np.unique(codes[ok]).size)
    out: dict[str, Any] = {f"n_{key}": int(ok.sum()), f"n_clusters_{key}": k, key: mean, f"{key}_lo": lo,
                           f"{key}_hi": hi}
    if metric == "overprod":   # the names the report has always used for the grammar reference
        strings = d[f"strings_{name}"][sel].astype(float)[ok]
        out.update({f"n_{name}": int(ok.sum()), f"n_clusters_{name}": k,
                    f"strings_{name}": float(strings.mean()) if ok.any() else math.nan})
        if name == "before":
            out["frac_overproduce_before"] = float((per_trial[ok] > 0).mean()) if ok.any() else math.nan
    null = d[f"{metric}_null_mean"][sel].astype(float) if f"{metric}_null_mean" in d else np.full(ok.size, np.nan)
    both = ok & np.isfinite(null)
    if both.any():
        sd = d[f"{metric}_null_sd"][sel].astype(float)
        e_mean, e_lo, e_hi = bootstrap_mean(per_trial[both] - null[both], n_boot, rng, codes[both])
        out.update({f"n_{key}_null": int(both.sum()), f"n_clusters_{key}_null": int(np.unique(codes[both]).size),
                    f"{key}_null": float(null[both].mean()), f"{key}_null_sd": float(np.nanmean(sd[both])),
                    f"{key}_obs": float(per_trial[both].mean()), f"{key}_excess": e_mean, f"{key}_excess_lo": e_lo,
                    f"{key}_excess_hi": e_hi})
    if f"{metric}_null_mean" in d:
        out[f"n_{key}_null_undefined"] = int((ok & ~np.isfinite(null)).sum())
    return out


def slop(store: Any, sweep: str | None = None, trials: Sequence[str] | None = None, metric: str = DEFAULT_MEM_METRIC,
         gen_metric: str = DEFAULT_GEN_METRIC, theta: float = 0.5) -> pa.Table:
    """``slop_from_tables`` read from a store (windows from the trials' onsets at ``theta``)."""
    st = _open_store(store)
    tr = st.read("trials", sweep=sweep, trials=trials)
    cur = st.read("curves", sweep=sweep, trials=trials)
    cur = cur.select([c for c in dict.fromkeys(["trial_id", "step", metric, gen_metric, "overprod", "overprod_train",
                                                "slop_n"]) if c in cur.column_names])
    win = windows_from_onsets(onsets_from_tables(tr, cur, (theta,), metric, gen_metric), theta)
    lc = st.read("level_curves", sweep=sweep, trials=trials)
    return slop_from_tables(lc, tr, win, cur, read_slop_nulls(st, sweep, trials))


def read_slop_nulls(store: Any, sweep: str | None = None, trials: Sequence[str] | None = None) -> pa.Table | None:
    """The `slop_nulls` table, or None for a store written before it existed."""
    try:
        t = _open_store(store).read("slop_nulls", sweep=sweep, trials=trials)
    except (FileNotFoundError, KeyError, ValueError):
        return None
    return t if t.num_rows else None
