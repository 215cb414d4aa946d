"""Memorization and generalization metrics of generated RHM strings against a training set and its nulls.

Pure functions on token arrays (numpy arrays or torch tensors, any device); results are numpy. Definitions follow
`docs/science.md`; every curve metric is declared in `analysis.registry`. What depends only on the training set
(sorted keys, twin set, held-out set, likelihoods, prototypicality, the slop reference) is computed once by
`index_training_set`, so `evaluate(grammar, generated, train_index)` is the cheap per-evaluation call.

- copies: exact string equality by hashing rows (`rhm.encode_strings`) and binary search, O((N + P) log P). A training
  sample's copy count is the number of generated strings equal to it (a duplicated training string gets the full
  count at each of its indices).
- nulls (SCIENCE.md, "Memorization against a null"): generations that hit the twin set T' (`rhm.twin_set`) or the
  held-out set H are what a model sampling at the grammar's rates produces beside its copies:
  mem_twin = copy_frac - twin_frac * p(T) / p(T'), mem_heldout = copy_frac - heldout_frac * p(T) / p(H). Both are 0
  in expectation for a grammar-faithful generator, at any P, and equal copy_frac for a pure memorizer. Undefined
  (NaN, with the reason in `TrainIndex.twin_note`) when the grammar has one root class or T' has no mass.
- per training sample: copies, copies of its twins in T' (twin_count) and those scaled to its own mass
  (twin_scaled = twin_count * p(x) / p(its twins in T')), whose expectation equals the copies' under the null.
- slop on non-copies against their exact null: see `analysis.slop`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from analysis.hamming import NEAR_COPY_RATIO, nn_hamming, near_copy
from analysis.registry import CURVE_METRICS, LEVEL_METRICS, OVEREST_METRICS
from analysis.slop import SlopReference, grammar_production_probs, slop_of_novel, slop_reference, slop_metrics
from analysis.tokens import check_pair, is_tensor, to_numpy
from rhm import as_strings, empirical_grammar, encode_strings, twin_set

__all__ = [
    "CURVE_METRICS", "LEVEL_METRICS", "NEAR_COPY_RATIO", "Evaluation", "TrainIndex", "copy_counts", "nn_hamming",
    "near_copy", "index_training_set", "evaluate", "grammar_production_probs", "slop_metrics", "spearman",
]


def _member_sorted(keys: np.ndarray, sorted_ref: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(keys[i] in sorted_ref, position of the match in sorted_ref) by binary search."""
    if sorted_ref.size == 0:
        return np.zeros(keys.shape[0], dtype=bool), np.zeros(keys.shape[0], dtype=np.int64)
    pos = np.searchsorted(sorted_ref, keys)
    np.minimum(pos, sorted_ref.size - 1, out=pos)
    return sorted_ref[pos] == keys, pos


def _counts_of(ref_keys: np.ndarray, query_keys: np.ndarray) -> np.ndarray:
    """For each query key, how many times it occurs among ref_keys (int64 (len(query_keys),))."""
    uniq, cnt = np.unique(ref_keys, return_counts=True)
    hit, pos = _member_sorted(query_keys, uniq)
    return np.where(hit, cnt[pos] if uniq.size else 0, 0).astype(np.int64)


# ---------------------------------------------------------------------------------------------- exact copies
def copy_counts(generated: Any, train: Any, v: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Exact copies by hashing whole strings: (is_copy (N,) bool, counts (P,) int64).

    is_copy[i]: generated[i] equals some training string. counts[j]: number of generated strings equal to train[j]
    (a training string present twice gets the full count at both indices). `v` defaults to max symbol + 1.
    """
    g, t, v = check_pair(to_numpy(generated), to_numpy(train), v)
    gk, tk = encode_strings(g, v), encode_strings(t, v)
    return _member_sorted(gk, np.sort(tk))[0], _counts_of(gk, tk)


# ---------------------------------------------------------------------------------------------- rank correlation
def _avg_ranks(x: np.ndarray) -> np.ndarray:
    """Average ranks (ties share their mean rank), 0-based."""
    _, inv, cnt = np.unique(x, return_inverse=True, return_counts=True)
    start = np.cumsum(cnt) - cnt
    return (start + (cnt - 1) / 2.0)[inv.ravel()]


def _standardized_ranks(x: np.ndarray) -> np.ndarray | None:
    """Centered, unit-norm average ranks of x, or None when x is constant / too short / has NaN."""
    x = np.asarray(x, dtype=np.float64)
    if x.size < 2 or np.isnan(x).any():
        return None
    r = _avg_ranks(x)
    r -= r.mean()
    norm = math.sqrt(float(r @ r))
    return None if norm == 0 else r / norm


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman rank correlation (Pearson on average ranks); NaN if either side is constant or has NaN."""
    ra, rb = _standardized_ranks(a), _standardized_ranks(b)
    return math.nan if ra is None or rb is None else float(np.clip(ra @ rb, -1.0, 1.0))


# ---------------------------------------------------------------------------------------------- training index
@dataclass
class TrainIndex:
    """What depends only on the training set, computed once by `index_training_set` and reused by `evaluate`.

    Per sample (P,): loglik, prob, proto, proto_levels (P, L), and the twin bookkeeping root, twin_group,
    twin_mass (mass of the sample's twins in T'), n_twins (what the store's `samples` table holds); the empirical
    grammar of T (`rhm.empirical_grammar`, None when T holds no valid string) and each sample's probability there.
    """

    tokens: np.ndarray  # (P, d) int64
    v: int
    keys: np.ndarray  # (P,) row keys (rhm.encode_strings)
    sorted_keys: np.ndarray  # (P,) sorted
    loglik: np.ndarray  # (P,) float64
    prob: np.ndarray  # (P,) float64
    proto: np.ndarray  # (P,)
    proto_levels: np.ndarray  # (P, L)
    production_counts: list[np.ndarray]  # per level (n_parents, m)
    copy_baseline: float  # p(T), over distinct training strings
    slop_ref: SlopReference
    root: np.ndarray  # (P,) root class, -1 for an invalid training string
    twin_group: np.ndarray  # (P,) group of training strings sharing a rank tree; -1 without twins
    twin_mass: np.ndarray  # (P,) p(twins of the sample in T'); NaN without twins
    n_twins: np.ndarray  # (P,) number of the sample's twins in T'
    twin_set_mass: float  # p(T'); NaN without twins
    twin_keys: np.ndarray  # sorted keys of T'
    twin_key_group: np.ndarray  # group of each sorted twin key
    twin_note: str  # why the twin null is undefined ("" when it is defined)
    heldout_keys: np.ndarray  # sorted distinct keys of the held-out set
    heldout_mass: float  # p(H) over distinct held-out strings; NaN without a held-out set
    proto_ranks: np.ndarray | None = None  # standardized ranks (None if constant)
    loglik_ranks: np.ndarray | None = None
    empirical: Any = None  # rhm.Grammar at T's production frequencies: the 'learned the parts' null
    emp_prob: np.ndarray | None = None  # (P,) probability of each sample under `empirical`
    _device_tokens: dict[str, torch.Tensor] = field(default_factory=dict, repr=False)

    @property
    def P(self) -> int:
        return int(self.tokens.shape[0])

    def tokens_on(self, device: torch.device) -> torch.Tensor:
        """The training tokens as a long tensor on `device`, cached."""
        key = str(device)
        if key not in self._device_tokens:
            self._device_tokens[key] = torch.from_numpy(self.tokens).to(device)
        return self._device_tokens[key]


def _twin_fields(grammar: Any, t: np.ndarray, valid: np.ndarray) -> dict[str, Any]:
    """TrainIndex fields of the twin null; undefined (NaN, with the reason) without twins."""
    P = t.shape[0]
    undefined = dict(root=np.full(P, -1, np.int64), twin_group=np.full(P, -1, np.int64),
                     twin_mass=np.full(P, np.nan), n_twins=np.zeros(P, np.int64), twin_set_mass=math.nan,
                     twin_keys=np.zeros(0, np.uint64), twin_key_group=np.zeros(0, np.int64))
    if grammar.spec.n_c < 2:
        return {**undefined, "twin_note": f"n_c = {grammar.spec.n_c}: no string has a twin; mem_twin undefined"}
    if not valid.all():
        return {**undefined, "twin_note": "the training set holds invalid strings (no rank tree); mem_twin undefined"}
    ts = twin_set(grammar, t)
    keys = encode_strings(ts.strings, grammar.spec.v)
    order = np.argsort(keys)
    note = "" if ts.mass > 0 else "every twin of the training set is a training string (p(T') = 0); mem_twin undefined"
    return dict(root=grammar.parse(t).root.astype(np.int64), twin_group=ts.group,
                twin_mass=np.where(ts.group_size[ts.group] > 0, ts.group_mass[ts.group], np.nan),
                n_twins=ts.group_size[ts.group].astype(np.int64), twin_set_mass=ts.mass if ts.mass > 0 else math.nan,
                twin_keys=keys[order], twin_key_group=ts.group_of[order], twin_note=note)


def index_training_set(grammar: Any, train: Any, train_prob: np.ndarray | None = None,
                       heldout: Any = None) -> TrainIndex:
    """Precompute the training-set side of every metric (keys, counts, likelihoods, prototypicality, nulls).

    copy_baseline = p(T) = sum over DISTINCT training strings of p(x), p from `train_prob` (P,) if given, else
    exp(grammar.loglik). `heldout` (optional tokens) is the held-out set of the second null.
    """
    sp = grammar.spec
    t = as_strings(to_numpy(train), sp.v, sp.d, "train")
    keys = encode_strings(t, sp.v)
    _, first = np.unique(keys, return_index=True)
    loglik = grammar.loglik(t)
    if train_prob is None:
        prob = np.exp(loglik)
    else:
        prob = np.asarray(train_prob, dtype=np.float64).reshape(-1)
        if prob.shape[0] != t.shape[0]:
            raise ValueError(f"train_prob has {prob.shape[0]} entries for {t.shape[0]} training strings")
    proto, proto_levels = grammar.prototypicality(t, t)
    empirical = empirical_grammar(grammar, t) if np.isfinite(loglik).any() else None
    emp_prob = np.full(t.shape[0], np.nan) if empirical is None else np.exp(empirical.loglik(t))
    base = math.fsum(prob[first].tolist())
    if heldout is None:
        h_keys, h_mass = np.zeros(0, keys.dtype), math.nan
    else:
        h = as_strings(to_numpy(heldout), sp.v, sp.d, "heldout")
        h_keys, h_first = np.unique(encode_strings(h, sp.v), return_index=True)
        h_mass = math.fsum(np.exp(grammar.loglik(h[h_first])).tolist()) if h_keys.size else math.nan
    return TrainIndex(
        tokens=t, v=sp.v, keys=keys, sorted_keys=np.sort(keys), loglik=loglik, prob=prob, proto=proto,
        proto_levels=proto_levels, production_counts=grammar.production_counts(t), copy_baseline=base,
        slop_ref=slop_reference(grammar, t[first], prob[first]), heldout_keys=h_keys, heldout_mass=h_mass,
        proto_ranks=_standardized_ranks(proto), loglik_ranks=_standardized_ranks(loglik), empirical=empirical,
        emp_prob=emp_prob,
        **_twin_fields(grammar, t, np.isfinite(loglik)),
    )


# ---------------------------------------------------------------------------------------------- evaluation
@dataclass
class Evaluation:
    """One evaluation of N generated strings.

    scalars: every CURVE_METRICS name (train_loss / heldout_loss NaN: the trial fills them).
    levels: every LEVEL_METRICS name -> (L,) float64.
    copies: per training sample, columns train_index, count, twin_count, twin_scaled; only samples whose count or
      twin_count is non-zero.
    parts: flat columns over all levels and productions: level, production (flat id parent*m + k), gen_count (over
      the non-copy strings' parsed nodes), train_count, grammar_prob (expected frequency among the level's nodes).
    extras: diagnostics that are not store columns (n_valid, n_copies, n_twins).
    overest: the `overest` table's columns (t, split, string_index, o) when the trial probed overestimation at this
      evaluation (`analysis.overest`), else None.
    """

    scalars: dict[str, float]
    levels: dict[str, np.ndarray]
    copies: dict[str, np.ndarray]
    parts: dict[str, np.ndarray]
    extras: dict[str, float] = field(default_factory=dict)
    overest: dict[str, np.ndarray] | None = None


def gen_share(novel_valid_frac: Any, train_mass: Any) -> Any:
    """novel_valid_frac / (1 - p(T)): generalization against its ceiling (SCIENCE.md); NaN where p(T) >= 1 (T is
    the whole language: no novel string exists). Scalars or arrays alike."""
    nv, pt = np.asarray(novel_valid_frac, float), np.asarray(train_mass, float)
    with np.errstate(divide="ignore", invalid="ignore"):
        out = np.where(pt < 1.0, nv / (1.0 - pt), np.nan)
    return float(out) if out.ndim == 0 else out


def _null_excess(copy_frac: float, hit_frac: float, train_mass: float, null_mass: float) -> float:
    """copy_frac - hit_frac * p(T) / p(null set): copies beyond what grammar-rate sampling makes; NaN if undefined."""
    if not (null_mass > 0) or not math.isfinite(null_mass):
        return math.nan
    return copy_frac - hit_frac * train_mass / null_mass


def _per_sample(idx: TrainIndex, counts: np.ndarray, twin_hit: np.ndarray, twin_pos: np.ndarray) -> dict[str, Any]:
    """Copies of each training sample beside the copies of its twins, raw and scaled to its own mass."""
    n_groups = int(idx.twin_group.max()) + 1 if idx.P else 0
    group_counts = np.bincount(idx.twin_key_group[twin_pos[twin_hit]], minlength=max(n_groups, 0))
    has = idx.twin_group >= 0
    twin_count = np.zeros(idx.P, np.int64)
    twin_count[has] = group_counts[idx.twin_group[has]]
    with np.errstate(invalid="ignore", divide="ignore"):
        scaled = np.where(idx.n_twins > 0, twin_count * idx.prob / idx.twin_mass, 0.0)
    keep = np.flatnonzero((counts > 0) | (twin_count > 0))
    return {"train_index": keep.astype(np.int64), "count": counts[keep], "twin_count": twin_count[keep],
            "twin_scaled": scaled[keep]}


def evaluate(
    grammar: Any,
    generated: Any,
    train: Any,
    train_prob: np.ndarray | None = None,
    heldout: Any = None,
    *,
    hamming: bool = True,
    count_invalid: bool = True,
    chunk: int = 4096,
) -> Evaluation:
    """All metrics of one evaluation; `train` is the training tokens or (hot path) a TrainIndex.

    - copy_frac, copy_baseline = p(T), mem_excess = (copy_frac - p(T)) / (1 - p(T)) (NaN when p(T) >= 1);
      twin_frac, mem_twin, heldout_frac, mem_heldout (module docstring); valid_frac; novel_valid_frac (valid and
      not a training string); unique_gen_frac (distinct generated strings / N).
    - near_copy_frac (`analysis.hamming.near_copy`), mean_d1 = mean(d1)/d; NaN when hamming=False.
    - slop per level on the non-copy strings against their exact null (`analysis.slop.slop_of_novel`): parsed nodes
      of every non-copy string (count_invalid=True) or of the valid ones only.
    - proto_spearman / loglik_spearman: Spearman correlation over training samples of copy counts with
      prototypicality / log-likelihood (NaN if either is constant, e.g. no copies yet).
    """
    sp = grammar.spec
    if isinstance(train, TrainIndex):
        if train_prob is not None or heldout is not None:
            raise ValueError("pass train_prob and heldout to index_training_set, not with a TrainIndex")
        idx = train
    else:
        idx = index_training_set(grammar, train, train_prob, heldout)
    g = as_strings(to_numpy(generated), sp.v, sp.d, "generated")
    n = g.shape[0]
    if n == 0:
        raise ValueError("evaluate needs at least one generated string")
    gk = encode_strings(g, sp.v)

    is_copy = _member_sorted(gk, idx.sorted_keys)[0]
    counts = _counts_of(gk, idx.keys)
    twin_hit, twin_pos = _member_sorted(gk, idx.twin_keys)
    held = _member_sorted(gk, idx.heldout_keys)[0]
    copy_frac, twin_frac, heldout_frac = float(is_copy.mean()), float(twin_hit.mean()), float(held.mean())
    base = idx.copy_baseline

    parse = grammar.parse(g)
    valid = parse.valid
    if hamming:
        gen_in = generated if is_tensor(generated) and generated.device.type != "cpu" else g
        train_in = idx.tokens_on(generated.device) if gen_in is generated else idx.tokens
        d1, d2 = nn_hamming(gen_in, train_in, chunk=chunk, v=sp.v)
        near_copy_frac, mean_d1 = float(near_copy(d1, d2).mean()), float(d1.mean() / sp.d)
    else:
        near_copy_frac = mean_d1 = math.nan
    slop = slop_of_novel(grammar, parse, ~is_copy, idx.production_counts, idx.slop_ref, count_invalid)
    count_ranks = _standardized_ranks(counts)

    def corr(ranks: np.ndarray | None) -> float:
        return math.nan if ranks is None or count_ranks is None else float(np.clip(ranks @ count_ranks, -1, 1))

    values = {
        "train_loss": math.nan,
        "heldout_loss": math.nan,
        "copy_frac": copy_frac,
        "copy_baseline": float(base),
        "mem_excess": (copy_frac - base) / (1.0 - base) if base < 1.0 else math.nan,
        "twin_frac": math.nan if idx.twin_note else twin_frac,
        "mem_twin": _null_excess(copy_frac, twin_frac, base, idx.twin_set_mass),
        "heldout_frac": heldout_frac if idx.heldout_keys.size else math.nan,
        "mem_heldout": _null_excess(copy_frac, heldout_frac, base, idx.heldout_mass),
        "near_copy_frac": near_copy_frac,
        "mean_d1": mean_d1,
        "valid_frac": float(valid.mean()),
        "novel_valid_frac": float((valid & ~is_copy).mean()),
        "gen_share": gen_share(float((valid & ~is_copy).mean()), base),
        "unique_gen_frac": float(np.unique(gk).size / n),
        "proto_spearman": corr(idx.proto_ranks),
        "loglik_spearman": corr(idx.loglik_ranks),
        **{name: math.nan for name in OVEREST_METRICS},   # the trial fills them from the model (analysis.overest)
        **slop.scalars,
    }
    levels = {"valid_frac": parse.level_valid.mean(0).astype(np.float64), **slop.levels}
    return Evaluation(
        scalars={name: float(values[name]) for name in CURVE_METRICS},  # KeyError if the registry adds a metric
        levels={name: np.asarray(levels[name], dtype=np.float64) for name in LEVEL_METRICS},
        copies=_per_sample(idx, counts, twin_hit, twin_pos),
        parts=slop.parts,
        extras={"n_valid": float(valid.sum()), "n_copies": float(is_copy.sum()), "n_twins": float(twin_hit.sum())},
    )
