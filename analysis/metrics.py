"""Memorization and generalization metrics of generated RHM strings against a training set (issue 4).

Pure functions on token arrays (numpy arrays or torch tensors, any device); results are numpy. Definitions follow
`docs/science.md` ("Memorization and generalization"); the choices the science leaves open are documented on the
function that makes them. Training-set-only work (sorting keys, parsing, likelihoods, prototypicality) is done once by
`index_training_set`, so `evaluate(grammar, generated, train_index)` is the cheap per-evaluation call.

Summary of the definitions:
- copies: exact string equality, found by hashing rows to keys (`rhm.encode_strings`) and binary search in the sorted
  training keys, O((N + P) log P). A training sample's copy count is the number of generated strings equal to it, so
  duplicated training strings each get the full count.
- nn_hamming: nearest and second-nearest Hamming distance over the training multiset (a duplicated nearest string
  gives d2 == d1). near copy: d1/d2 < 1/3, and d1 == d2 == 0 (an exact copy of a duplicated string) counts as one.
- slop, per production level l, with per-parent conditional distributions over the m productions of each parent:
  overprod_l, entropy_ratio_l, kl_gen_train_l, kl_gen_grammar_l (see `slop_metrics`); scalars are unweighted means
  over the levels where they are defined.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from rhm import as_strings, encode_strings

from analysis.registry import CURVE_METRICS, LEVEL_METRICS

__all__ = [
    "CURVE_METRICS", "LEVEL_METRICS", "Evaluation", "TrainIndex", "copy_counts", "nn_hamming", "near_copy",
    "index_training_set", "evaluate", "grammar_production_probs", "slop_metrics", "spearman",
]

#: Fraction of productions (by training frequency) that count as "common" in `overprod`.
OVERPROD_TOP_Q = 0.25
#: Add-epsilon pseudo-count on the training counts in KL(gen || train) (0.5 = Jeffreys / Krichevsky-Trofimov).
KL_EPS = 0.5
#: Near-copy threshold on d1/d2 (the criterion used for images).
NEAR_COPY_RATIO = 1.0 / 3.0
#: Elements of one (generated x training) block of match counts on CPU: small enough to stay in cache.
CPU_BLOCK = 2**18
#: Bytes of one (generated x training) block of match counts on a GPU.
GPU_BLOCK_BYTES = 2**28


# ---------------------------------------------------------------------------------------------- array helpers
def _is_tensor(x: object) -> bool:
    return isinstance(x, torch.Tensor)


def _to_numpy(x: object) -> np.ndarray:
    """A 2-D int64 numpy array from a numpy array / torch tensor (any device)."""
    if _is_tensor(x):
        x = x.detach().cpu().numpy()
    arr = np.asarray(x)
    if arr.ndim != 2:
        raise ValueError(f"token arrays must have shape (n, d), got shape {arr.shape}")
    return np.ascontiguousarray(arr, dtype=np.int64)


def _infer_v(*arrays: np.ndarray) -> int:
    """Alphabet size covering every array (max symbol + 1, at least 2)."""
    hi = max((int(a.max()) for a in arrays if a.size), default=0)
    return max(2, hi + 1)


def _check_pair(g: np.ndarray, t: np.ndarray, v: int | None) -> tuple[np.ndarray, np.ndarray, int]:
    if g.shape[1] != t.shape[1]:
        raise ValueError(f"generated strings have length {g.shape[1]} but training strings {t.shape[1]}")
    v = _infer_v(g, t) if v is None else int(v)
    d = g.shape[1]
    return as_strings(g, v, d, "generated"), as_strings(t, v, d, "train"), v


def _member_sorted(keys: np.ndarray, sorted_ref: np.ndarray) -> np.ndarray:
    """keys[i] in sorted_ref, by binary search (bool (n,))."""
    if sorted_ref.size == 0:
        return np.zeros(keys.shape[0], dtype=bool)
    pos = np.searchsorted(sorted_ref, keys)
    np.minimum(pos, sorted_ref.size - 1, out=pos)
    return sorted_ref[pos] == keys


def _counts_of(ref_keys: np.ndarray, query_keys: np.ndarray) -> np.ndarray:
    """For each query key, how many times it occurs among ref_keys (int64 (len(query_keys),))."""
    uniq, cnt = np.unique(ref_keys, return_counts=True)
    if uniq.size == 0:
        return np.zeros(query_keys.shape[0], dtype=np.int64)
    pos = np.searchsorted(uniq, query_keys)
    np.minimum(pos, uniq.size - 1, out=pos)
    return np.where(uniq[pos] == query_keys, cnt[pos], 0).astype(np.int64)


# ---------------------------------------------------------------------------------------------- exact copies
def copy_counts(generated: Any, train: Any, v: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Exact copies by hashing whole strings: (is_copy (N,) bool, counts (P,) int64).

    is_copy[i]: generated[i] equals some training string. counts[j]: number of generated strings equal to train[j]
    (a training string present twice gets the full count at both indices). `v` defaults to max symbol + 1.
    """
    g, t, v = _check_pair(_to_numpy(generated), _to_numpy(train), v)
    gk, tk = encode_strings(g, v), encode_strings(t, v)
    return _member_sorted(gk, np.sort(tk)), _counts_of(gk, tk)


# ---------------------------------------------------------------------------------------------- Hamming distances
def _top2_merge(best: np.ndarray, m1: np.ndarray, m2: np.ndarray) -> None:
    """best (n, 2) descending <- top two of {best[:, 0], best[:, 1], m1, m2} (m1 >= m2), in place."""
    b0, b1 = best[:, 0].copy(), best[:, 1]
    new0 = np.maximum(b0, m1)
    # second = max(min(b0, m1), b1 if b0 wins else m2 ... ): the two runner-up candidates of a merge of two
    # sorted pairs are min(b0, m1) and the second of the winning pair.
    second = np.maximum(np.minimum(b0, m1), np.where(b0 >= m1, b1, m2))
    best[:, 0] = new0
    best[:, 1] = second


def _nn_matches_numpy(g: np.ndarray, t: np.ndarray, v: int, p_chunk: int, g_chunk: int) -> np.ndarray:
    """Top-2 match counts (N, 2) on CPU: for a block of training strings, a one-hot table (d*v, Pc) uint8;
    a generated string's matches with the block are the sum of its d rows (gather + add, no multiplications)."""
    n, d = g.shape
    acc_dtype = np.uint8 if d < 2**8 else np.uint16 if d < 2**16 else np.uint32
    off = np.arange(d, dtype=np.int64) * v
    gi = g + off  # (N, d): row of the one-hot table for each (string, position)
    best = np.zeros((n, 2), dtype=acc_dtype)  # 0 is a lower bound of any match count: safe initial value
    for p0 in range(0, t.shape[0], p_chunk):
        tc = t[p0 : p0 + p_chunk]
        pc = tc.shape[0]
        table = np.zeros((d * v, pc), dtype=acc_dtype)
        table[(tc + off).T, np.arange(pc)[None, :]] = 1
        rows = np.arange(min(g_chunk, n))
        for g0 in range(0, n, g_chunk):
            idx = gi[g0 : g0 + g_chunk]
            acc = table[idx[:, 0]]
            for j in range(1, d):  # loop over positions, each a vectorized pass over the block
                acc += table[idx[:, j]]
            r = rows[: idx.shape[0]]
            a1 = acc.argmax(1)
            m1 = acc[r, a1]
            if pc > 1:
                acc[r, a1] = 0  # remove one instance of the max: the next max is the second (ties give m2 == m1)
                m2 = acc.max(1)
            else:
                m2 = np.zeros_like(m1)  # lower bound, harmless once P >= 2 (checked by the caller)
            _top2_merge(best[g0 : g0 + g_chunk], m1, m2)
    return best


def _nn_matches_torch(g: torch.Tensor, t: torch.Tensor, v: int, p_chunk: int | None) -> torch.Tensor:
    """Top-2 match counts (N, 2) on g's device (a GPU): one-hot matrix products in blocks, running top-2."""
    n, d = g.shape
    dev = g.device
    dtype = torch.float16 if d <= 2048 else torch.float32  # fp16 holds integers <= 2048 exactly
    off = torch.arange(d, device=dev) * v

    def onehot(x: torch.Tensor) -> torch.Tensor:
        o = torch.zeros(x.shape[0], d * v, dtype=dtype, device=dev)
        o.scatter_(1, x + off, 1)
        return o

    itemsize = 2 if dtype == torch.float16 else 4
    if p_chunk is None:
        p_chunk = max(2, GPU_BLOCK_BYTES // (itemsize * max(n, d * v)))
    # (g_chunk, p_chunk) match block and (g_chunk | p_chunk, d*v) one-hot blocks each within GPU_BLOCK_BYTES
    g_chunk = max(1, min(n, GPU_BLOCK_BYTES // (itemsize * max(p_chunk, d * v))))
    p_chunk = max(1, min(p_chunk, GPU_BLOCK_BYTES // (itemsize * d * v)))
    best = torch.full((n, 2), -1.0, dtype=torch.float32, device=dev)
    for g0 in range(0, n, g_chunk):
        go = onehot(g[g0 : g0 + g_chunk])
        b = best[g0 : g0 + g_chunk]
        for p0 in range(0, t.shape[0], p_chunk):
            tc = t[p0 : p0 + p_chunk].to(dev, non_blocking=True)
            m = go @ onehot(tc).T
            k = min(2, m.shape[1])
            top = m.topk(k, dim=1).values.float()
            b = torch.cat([b, top], dim=1).topk(2, dim=1).values
        best[g0 : g0 + g_chunk] = b
    return best


def nn_hamming(generated: Any, train: Any, chunk: int = 4096, v: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Hamming distance of each generated string to its nearest and second-nearest training strings (d1 <= d2).

    Over the training multiset: a duplicated nearest string, or a tie, gives d2 == d1. Returns float64 arrays (N,);
    d2 is inf when P < 2 (and d1 too when P == 0). Memory is bounded by blocks of `chunk` training strings
    (times CPU_BLOCK // chunk generated strings on CPU; on a GPU, blocks of at most GPU_BLOCK_BYTES), never an
    N x P matrix. A CUDA tensor `generated` is compared on
    its device with one-hot matrix products; anything else on CPU with a gather-add over a one-hot table.
    """
    g_np, t_np = _to_numpy(generated), _to_numpy(train)
    g_np, t_np, v = _check_pair(g_np, t_np, v)
    n, d = g_np.shape
    P = t_np.shape[0]
    if P == 0 or n == 0:
        inf = np.full(n, np.inf)
        return inf, inf.copy()
    if _is_tensor(generated) and generated.device.type != "cpu":
        dev = generated.device
        t_dev = train.to(dev) if _is_tensor(train) else torch.from_numpy(t_np).to(dev)
        best = _nn_matches_torch(torch.as_tensor(g_np, device=dev), t_dev.long(), v, chunk).cpu().numpy()
    else:
        p_chunk = max(1, int(chunk))
        g_chunk = max(1, CPU_BLOCK // p_chunk)
        best = _nn_matches_numpy(g_np, t_np, v, p_chunk, g_chunk)
    d1 = d - best[:, 0].astype(np.float64)
    d2 = d - best[:, 1].astype(np.float64)
    if P < 2:
        d2[:] = np.inf
    return d1, d2


def near_copy(d1: np.ndarray, d2: np.ndarray, ratio: float = NEAR_COPY_RATIO) -> np.ndarray:
    """Near copies (bool (N,)): d1/d2 < ratio, i.e. d1 < ratio*d2; d1 == d2 == 0 counts as a near copy (exact copy
    of a duplicated training string, where the ratio is undefined); d2 == inf (P == 1) gives ratio 0."""
    d1 = np.asarray(d1, dtype=np.float64)
    d2 = np.asarray(d2, dtype=np.float64)
    return (d1 < ratio * d2) | (d2 == 0)


# ---------------------------------------------------------------------------------------------- grammar parts
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


def _cond_entropy(c: np.ndarray) -> float:
    """Plug-in conditional entropy H(K | parent) in nats of counts c (n_parents, m): H(joint) - H(parent)."""
    n = c.sum()
    if n <= 0:
        return math.nan
    p = c[c > 0] / n
    pa = c.sum(1)
    pa = pa[pa > 0] / n
    return float(-(p * np.log(p)).sum() + (pa * np.log(pa)).sum())


def _cond_kl(c: np.ndarray, q: np.ndarray) -> float:
    """sum_a g(a) KL(g(.|a) || q(.|a)) for generated counts c and reference conditionals q (rows sum to 1)."""
    n = c.sum()
    if n <= 0:
        return math.nan
    pa = c.sum(1, keepdims=True)
    nz = c > 0
    cond = np.divide(c, pa, out=np.zeros(c.shape), where=pa > 0)
    with np.errstate(divide="ignore"):
        terms = np.where(nz, c / n * (np.log(np.where(nz, cond, 1.0)) - np.log(q)), 0.0)
    return float(terms.sum())


def slop_metrics(
    gen: np.ndarray, train: np.ndarray, grammar_cond: np.ndarray, q: float = OVERPROD_TOP_Q, eps: float = KL_EPS
) -> dict[str, float]:
    """Partial-memorization metrics of one level from production counts (n_parents, m) of generated and training
    nodes and the grammar's conditional rule probabilities (n_parents, m); NaN where undefined.

    - overprod: C = the productions whose training count is at least the ceil(q*K)-th largest count (ties all in,
      zero counts never; K = n_parents*m). overprod = f_gen(C) / f_train(C) - 1 with f the fraction of the level's
      nodes using a production in C. 0: common parts are produced as often as in training (a memorizer); > 0: they
      are over-produced (slop); < 0: under-produced (a model sampling the grammar sits slightly below 0, since
      selecting C on training counts picks productions whose training frequency fluctuated up).
    - entropy_ratio: H_gen(K | parent) / H_train(K | parent), plug-in conditional entropies of the production index
      given the parent symbol (the level's own rule choice, free of the symbol distribution set by higher levels).
    - kl_gen_train: sum_a g(a) KL(g(.|a) || t_eps(.|a)) with t_eps(k|a) = (t_ak + eps) / (t_a + m*eps).
    - kl_gen_grammar: the same against the grammar's rule probabilities p_l(k|a) (exact, no smoothing).
    """
    gen = np.asarray(gen, dtype=np.float64)
    train = np.asarray(train, dtype=np.float64)
    out = dict(overprod=math.nan, entropy_ratio=math.nan, kl_gen_train=math.nan, kl_gen_grammar=math.nan)
    ng, nt = gen.sum(), train.sum()
    if ng <= 0:
        return out
    if nt > 0:
        tf = train.ravel()
        k = max(1, math.ceil(q * tf.size))
        thr = np.partition(tf, tf.size - k)[tf.size - k]
        common = (tf >= thr) & (tf > 0)
        out["overprod"] = float((gen.ravel()[common].sum() / ng) / (tf[common].sum() / nt) - 1.0)
        h_train = _cond_entropy(train)
        if h_train > 0:
            out["entropy_ratio"] = _cond_entropy(gen) / h_train
    m = train.shape[1]
    t_eps = (train + eps) / (train.sum(1, keepdims=True) + m * eps)
    out["kl_gen_train"] = _cond_kl(gen, t_eps)
    out["kl_gen_grammar"] = _cond_kl(gen, np.asarray(grammar_cond, dtype=np.float64))
    return out


def _gen_production_counts(grammar: Any, parse: Any, count_invalid: bool) -> list[np.ndarray]:
    """Per level (n_parents, m) counts of generated productions: every derivable node (count_invalid) or only the
    nodes of valid strings."""
    sp = grammar.spec
    out = []
    for level in range(sp.L):
        ids = parse.ids[level] if count_invalid else parse.ids[level][parse.valid]
        ids = ids[ids >= 0]
        out.append(np.bincount(ids, minlength=sp.n_parents(level) * sp.m).reshape(sp.n_parents(level), sp.m))
    return out


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

    Per sample (P,): loglik, prob, proto, proto_levels (P, L) (what the store's `samples` table holds).
    """

    tokens: np.ndarray  # (P, d) int64
    v: int
    keys: np.ndarray  # (P,) row keys (rhm.encode_strings)
    sorted_keys: np.ndarray  # (P,) sorted
    first_index: np.ndarray  # index of the first occurrence of each distinct string
    loglik: np.ndarray  # (P,) float64
    prob: np.ndarray  # (P,) float64
    proto: np.ndarray  # (P,)
    proto_levels: np.ndarray  # (P, L)
    production_counts: list[np.ndarray]  # per level (n_parents, m)
    grammar_probs: list[np.ndarray]  # per level (n_parents, m), expected production frequencies
    copy_baseline: float
    proto_ranks: np.ndarray | None = None  # standardized ranks (None if constant)
    loglik_ranks: np.ndarray | None = None
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


def index_training_set(grammar: Any, train: Any, train_prob: np.ndarray | None = None) -> TrainIndex:
    """Precompute the training-set side of every metric (keys, counts, likelihoods, prototypicality).

    copy_baseline = sum over DISTINCT training strings of p(x), p from `train_prob` (P,) if given, else
    exp(grammar.loglik).
    """
    sp = grammar.spec
    t = as_strings(_to_numpy(train), sp.v, sp.d, "train")
    keys = encode_strings(t, sp.v)
    sorted_keys = np.sort(keys)
    _, first = np.unique(keys, return_index=True)
    loglik = grammar.loglik(t)
    if train_prob is None:
        prob = np.exp(loglik)
    else:
        prob = np.asarray(train_prob, dtype=np.float64).reshape(-1)
        if prob.shape[0] != t.shape[0]:
            raise ValueError(f"train_prob has {prob.shape[0]} entries for {t.shape[0]} training strings")
    proto, proto_levels = grammar.prototypicality(t, t)
    return TrainIndex(
        tokens=t, v=sp.v, keys=keys, sorted_keys=sorted_keys, first_index=first, loglik=loglik, prob=prob,
        proto=proto, proto_levels=proto_levels, production_counts=grammar.production_counts(t),
        grammar_probs=grammar_production_probs(grammar), copy_baseline=math.fsum(prob[first].tolist()),
        proto_ranks=_standardized_ranks(proto), loglik_ranks=_standardized_ranks(loglik),
    )


# ---------------------------------------------------------------------------------------------- evaluation
@dataclass
class Evaluation:
    """One evaluation of N generated strings.

    scalars: every CURVE_METRICS name (train_loss / heldout_loss NaN: the trial fills them).
    levels: every LEVEL_METRICS name -> (L,) float64.
    copies: (train_index, count) int64 arrays, non-zero counts only.
    parts: flat columns over all levels and productions: level, production (flat id parent*m + k), gen_count,
      train_count, grammar_prob (expected frequency of the production among the level's nodes).
    extras: further diagnostics, not store columns (heldout_copy_frac, heldout_mass when heldout is given;
      n_valid, n_copies).
    """

    scalars: dict[str, float]
    levels: dict[str, np.ndarray]
    copies: tuple[np.ndarray, np.ndarray]
    parts: dict[str, np.ndarray]
    extras: dict[str, float] = field(default_factory=dict)


def _nanmean(x: np.ndarray) -> float:
    x = np.asarray(x, dtype=np.float64)
    ok = ~np.isnan(x)
    return float(x[ok].mean()) if ok.any() else math.nan


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

    - copy_frac, copy_baseline (mass of the distinct training strings), mem_excess = (copy_frac - baseline) /
      (1 - baseline) (NaN when baseline >= 1); valid_frac; novel_valid_frac (valid and not a training string);
      unique_gen_frac (distinct generated strings / N).
    - near_copy_frac (see `near_copy`), mean_d1 = mean(d1)/d; skipped (NaN) when hamming=False.
    - slop per level from production counts (see `slop_metrics`): generated nodes are every derivable node
      (count_invalid=True, also the parsable parts of invalid strings) or the nodes of valid strings only; the
      scalars are unweighted means over the levels where the level value is defined.
    - proto_spearman / loglik_spearman: Spearman correlation over training samples of copy counts with
      prototypicality / log-likelihood (NaN if either is constant, e.g. no copies yet).
    - heldout (optional tokens): extras heldout_copy_frac (generated strings equal to a held-out string) and
      heldout_mass (grammar mass of the distinct held-out strings), a control for copy_frac.
    """
    sp = grammar.spec
    if isinstance(train, TrainIndex):
        if train_prob is not None:
            raise ValueError("pass train_prob to index_training_set, not with a TrainIndex")
        idx = train
    else:
        idx = index_training_set(grammar, train, train_prob)
    g = as_strings(_to_numpy(generated), sp.v, sp.d, "generated")
    n = g.shape[0]
    if n == 0:
        raise ValueError("evaluate needs at least one generated string")
    gk = encode_strings(g, sp.v)

    is_copy = _member_sorted(gk, idx.sorted_keys)
    counts = _counts_of(gk, idx.keys)
    copy_frac = float(is_copy.mean())
    base = idx.copy_baseline
    mem_excess = (copy_frac - base) / (1.0 - base) if base < 1.0 else math.nan

    parse = grammar.parse(g)
    valid = parse.valid
    level_valid = parse.level_valid.mean(0).astype(np.float64)

    if hamming:
        gen_in = generated if _is_tensor(generated) and generated.device.type != "cpu" else g
        train_in = idx.tokens_on(generated.device) if gen_in is generated else idx.tokens
        d1, d2 = nn_hamming(gen_in, train_in, chunk=chunk, v=sp.v)
        near_copy_frac = float(near_copy(d1, d2).mean())
        mean_d1 = float(d1.mean() / sp.d)
    else:
        near_copy_frac = mean_d1 = math.nan

    gen_counts = _gen_production_counts(grammar, parse, count_invalid)
    per_level = {name: np.full(sp.L, np.nan) for name in LEVEL_METRICS}
    per_level["valid_frac"] = level_valid
    parts_cols: dict[str, list[np.ndarray]] = {k: [] for k in ("level", "production", "gen_count", "train_count",
                                                                "grammar_prob")}
    for level in range(sp.L):
        sm = slop_metrics(gen_counts[level], idx.production_counts[level], grammar.probs[level])
        for name, value in sm.items():
            per_level[name][level] = value
        k = sp.n_parents(level) * sp.m
        parts_cols["level"].append(np.full(k, level, dtype=np.int64))
        parts_cols["production"].append(np.arange(k, dtype=np.int64))
        parts_cols["gen_count"].append(gen_counts[level].reshape(-1).astype(np.int64))
        parts_cols["train_count"].append(np.asarray(idx.production_counts[level]).reshape(-1).astype(np.int64))
        parts_cols["grammar_prob"].append(idx.grammar_probs[level].reshape(-1))
    parts = {k: np.concatenate(v) for k, v in parts_cols.items()}

    count_ranks = _standardized_ranks(counts)

    def corr(ranks: np.ndarray | None) -> float:
        return math.nan if ranks is None or count_ranks is None else float(np.clip(ranks @ count_ranks, -1, 1))

    values = {
        "train_loss": math.nan,
        "heldout_loss": math.nan,
        "copy_frac": copy_frac,
        "copy_baseline": float(base),
        "mem_excess": float(mem_excess),
        "near_copy_frac": near_copy_frac,
        "mean_d1": mean_d1,
        "valid_frac": float(valid.mean()),
        "novel_valid_frac": float((valid & ~is_copy).mean()),
        "unique_gen_frac": float(np.unique(gk).size / n),
        "overprod": _nanmean(per_level["overprod"]),
        "entropy_ratio": _nanmean(per_level["entropy_ratio"]),
        "kl_gen_train": _nanmean(per_level["kl_gen_train"]),
        "kl_gen_grammar": _nanmean(per_level["kl_gen_grammar"]),
        "proto_spearman": corr(idx.proto_ranks),
        "loglik_spearman": corr(idx.loglik_ranks),
    }
    scalars = {name: values[name] for name in CURVE_METRICS}  # KeyError if the registry adds a metric
    nz = np.flatnonzero(counts)
    extras = {"n_valid": float(valid.sum()), "n_copies": float(is_copy.sum())}
    if heldout is not None:
        h = as_strings(_to_numpy(heldout), sp.v, sp.d, "heldout")
        hk = encode_strings(h, sp.v)
        uh, first = np.unique(hk, return_index=True)
        extras["heldout_copy_frac"] = float(_member_sorted(gk, uh).mean())
        extras["heldout_mass"] = math.fsum(np.exp(grammar.loglik(h[first])).tolist())
    return Evaluation(
        scalars=scalars,
        levels={name: per_level[name] for name in LEVEL_METRICS},
        copies=(nz.astype(np.int64), counts[nz]),
        parts=parts,
        extras=extras,
    )
