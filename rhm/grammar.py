"""An RHM grammar built from a GrammarSpec (or interop rule arrays): sampling, parsing, likelihoods, enumeration.

Everything is vectorized over strings and nodes; the only Python loops run over the L levels (or the s positions of
a block). Levels, nodes and production ids follow docs/ARCHITECTURE.md: level 0 holds the root productions, node j
at level l expands to nodes s*j..s*j+s-1 at level l+1, a production's flat id is parent*m + k.
"""
from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .spec import GrammarSpec, RuleDist, _check_int
from .strings import as_strings

# Dense parse tables up to this many entries per level ((v+1)**s codes), sorted-key lookup above.
DENSE_TABLE_MAX = 2**21
# Strings processed per vectorized chunk: keeps temporaries in cache and memory bounded.
CHUNK = 2**12
INT64_MAX = 2**63 - 1


@dataclass(frozen=True)
class Parse:
    """Bottom-up parse of a batch of strings (n of them).

    valid (n,): the whole string derives from a root class. level_valid (n, L): column l is True when every
    reduction from the leaves up to production level l succeeded. root (n,): root class, -1 if invalid.
    symbols[l] (n, s**l): parent symbol of each node at level l; productions[l] (n, s**l): production index k;
    ids[l] (n, s**l): flat production id parent*m + k. All three are -1 where a node is not derivable.
    """

    valid: np.ndarray
    level_valid: np.ndarray
    root: np.ndarray
    symbols: list[np.ndarray]
    productions: list[np.ndarray]
    ids: list[np.ndarray]


class Grammar:
    """A fixed RHM grammar: rules (interop layout), rule probabilities, and the vectorized algorithms on it.

    Public attributes (read-only arrays): spec; rules[l] (n_parents(l), m, s); probs[l] / log_probs[l]
    (n_parents(l), m), rows summing to 1; root_probs / root_log_probs (n_c,); rank_to_index[l] (n_parents(l), m),
    the index k holding rank r+1; root_rank_to_class (n_c,). `reweighted` gives the same rules with other
    production probabilities (per parent symbol, zeros allowed), e.g. the empirical grammar of a training set.
    """

    # Per-parent sampling tables of a reweighted grammar (None: probabilities shared by rank, per level).
    _row_cdf: list[np.ndarray] | None = None
    _root_class_cdf: np.ndarray | None = None

    def __init__(self, spec: GrammarSpec, rules: Sequence[np.ndarray]):
        """Use Grammar.from_spec or Grammar.from_rules; this assumes `rules` already match `spec`."""
        self.spec = spec
        v, n_c, m, s, L = spec.v, spec.n_c, spec.m, spec.s, spec.L
        self.rules: list[np.ndarray] = []
        for arr in rules:
            arr = np.array(arr, dtype=np.int64, copy=True)
            arr.flags.writeable = False
            self.rules.append(arr)

        # Ranks -> production indices: one permutation per parent symbol (and one over root classes), from a seed
        # stream separate from the rules' so that grammars differing only in their tails share rules and ranks.
        _, rank_ss = np.random.SeedSequence(spec.seed).spawn(2)
        rank_rng = np.random.default_rng(rank_ss)
        root_order = rank_rng.permutation(n_c)  # root_order[r] = class with rank r+1
        self.root_rank_to_class = root_order
        root_logp_rank = spec.root.log_probs(n_c)
        self.root_log_probs = np.empty(n_c)
        self.root_log_probs[root_order] = root_logp_rank
        self.root_probs = np.exp(self.root_log_probs)
        self.root_probs /= self.root_probs.sum()
        self._root_cdf = _cdf(spec.root.probs(n_c))

        self.rank_to_index: list[np.ndarray] = []  # [l] (n_parents, m): index k of the production with rank r+1
        self.log_probs: list[np.ndarray] = []
        self.probs: list[np.ndarray] = []
        self._cdf: list[np.ndarray] = []
        self._child_by_rank: list[np.ndarray] = []  # [l] (n_parents*m, s): children of (parent, rank)
        self._child_by_index: list[np.ndarray] = []  # [l] (n_parents*m, s): children of (parent, index k)
        for level in range(L):
            n_par = spec.n_parents(level)
            dist = spec.levels[level]
            order = rank_rng.permuted(np.tile(np.arange(m), (n_par, 1)), axis=1)
            logp = np.empty((n_par, m))
            np.put_along_axis(logp, order, np.broadcast_to(dist.log_probs(m), (n_par, m)), axis=1)
            p = np.exp(logp)
            p /= p.sum(1, keepdims=True)
            self.rank_to_index.append(order)
            self.log_probs.append(logp)
            self.probs.append(p)
            self._cdf.append(_cdf(dist.probs(m)))
            by_index = self.rules[level].reshape(n_par * m, s)
            flat_order = (np.arange(n_par)[:, None] * m + order).ravel()
            self._child_by_index.append(np.ascontiguousarray(by_index))
            self._child_by_rank.append(np.ascontiguousarray(by_index[flat_order]))

        # Parse tables. A block's code is sum_j (x_j + 1) * (v+1)**(s-1-j), digit 0 meaning "not derivable" (-1).
        base = v + 1
        self._code_w = np.array([base ** (s - 1 - j) for j in range(s)], dtype=np.int64)
        self._code_off = int(self._code_w.sum())
        self._tables: list[tuple[str, np.ndarray, np.ndarray | None]] = []
        self._parent_of_id: list[np.ndarray] = []  # [l] (n_parents*m + 1,): last entry -1, indexed by id=-1
        self._k_of_id: list[np.ndarray] = []
        self._logp_of_id: list[np.ndarray] = []  # last entry -inf
        for level in range(L):
            n_par = spec.n_parents(level)
            codes = (self._child_by_index[level] + 1) @ self._code_w
            ids = np.arange(n_par * m, dtype=np.int64)
            if base**s <= DENSE_TABLE_MAX:
                table = np.full(base**s, -1, dtype=np.int64)
                table[codes] = ids
                self._tables.append(("dense", table, None))
            else:
                order = np.argsort(codes)
                self._tables.append(("sorted", codes[order], ids[order]))
            self._parent_of_id.append(np.append(ids // m, -1))
            self._k_of_id.append(np.append(ids % m, -1))
            self._logp_of_id.append(np.append(self.log_probs[level].ravel(), -np.inf))

        for arr in (self.root_probs, self.root_log_probs, self.root_rank_to_class,
                    *self.probs, *self.log_probs, *self.rank_to_index):
            arr.flags.writeable = False

        # Mixed-radix index of a derivation: root class most significant, then level 0..L-1 nodes left to right.
        self._index_ok = spec.P_max - 1 <= INT64_MAX
        if self._index_ok:
            self._level_radix = [m ** spec.n_nodes(level) for level in range(L)]
            self._digit_w = [m ** np.arange(spec.n_nodes(level) - 1, -1, -1, dtype=np.int64) for level in range(L)]

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_spec(cls, spec: GrammarSpec) -> Grammar:
        """Draw the rules from spec.seed: per level, n_parents*m distinct s-tuples out of the v**s possible ones."""
        if not isinstance(spec, GrammarSpec):
            raise ValueError(f"spec must be a GrammarSpec, got {type(spec).__name__}")
        rule_ss, _ = np.random.SeedSequence(spec.seed).spawn(2)
        rng = np.random.default_rng(rule_ss)
        v, m, s = spec.v, spec.m, spec.s
        digit_w = v ** np.arange(s - 1, -1, -1, dtype=np.int64)
        rules = []
        for level in range(spec.L):
            n_par = spec.n_parents(level)
            codes = rng.choice(v**s, size=n_par * m, replace=False)
            tuples = (codes[:, None] // digit_w) % v
            rules.append(tuples.reshape(n_par, m, s))
        return cls(spec, rules)

    @classmethod
    def from_rules(
        cls,
        rules: Sequence[np.ndarray],
        levels: RuleDist | tuple[RuleDist, ...] = RuleDist(),
        root: RuleDist = RuleDist(),
        seed: int = 0,
        v: int | None = None,
    ) -> Grammar:
        """Build a grammar from interop arrays: rules[0] (n_c, m, s), rules[l>=1] (v, m, s), symbols in [0, v).

        `seed` fixes the rank-to-production assignment; `v` is needed only when L == 1 (default: max symbol + 1).
        """
        if isinstance(rules, np.ndarray) or not isinstance(rules, Sequence) or len(rules) == 0:
            raise ValueError("rules must be a non-empty list of arrays: rules[0] (n_c, m, s), rules[l>=1] (v, m, s)")
        arrs = [np.asarray(r) for r in rules]
        for level, arr in enumerate(arrs):
            if arr.ndim != 3:
                raise ValueError(f"rules[{level}] must have 3 dimensions (parents, m, s), got shape {arr.shape}")
            if arr.size and arr.dtype.kind not in "iu":
                raise ValueError(f"rules[{level}] must hold integer symbols, got dtype {arr.dtype}")
        L = len(arrs)
        n_c, m, s = arrs[0].shape
        if L >= 2:
            if v is not None and v != arrs[1].shape[0]:
                raise ValueError(f"v={v} disagrees with rules[1].shape[0]={arrs[1].shape[0]}")
            v = arrs[1].shape[0]
        elif v is None:
            v = int(arrs[0].max()) + 1 if arrs[0].size else 1
        for level in range(1, L):
            if arrs[level].shape != (v, m, s):
                raise ValueError(
                    f"rules[{level}] must have shape (v, m, s) = {(v, m, s)}, got {arrs[level].shape}"
                )
        spec = GrammarSpec(v=v, n_c=n_c, m=m, s=s, L=L, seed=seed, levels=levels, root=root)
        w = v ** np.arange(s - 1, -1, -1, dtype=np.int64)
        for level, arr in enumerate(arrs):
            lo, hi = int(arr.min()), int(arr.max())
            if lo < 0 or hi >= v:
                bad = lo if lo < 0 else hi
                raise ValueError(f"rules[{level}] has symbol {bad} outside the alphabet [0, {v})")
            codes = arr.reshape(-1, s).astype(np.int64) @ w
            uniq, counts = np.unique(codes, return_counts=True)
            if (counts > 1).any():
                dup = tuple(int(c) for c in (uniq[counts > 1][0] // w) % v)
                raise ValueError(
                    f"rules[{level}] repeats the right-hand side {dup}: productions within a level must be distinct"
                )
        return cls(spec, arrs)

    def reweighted(self, root_probs: object, probs: Sequence[object]) -> Grammar:
        """These rules with other probabilities: root_probs (n_c,) over root classes, probs[l] (n_parents(l), m) over
        production index k, each row a distribution (zeros allowed: such a production is never drawn, its loglik is
        -inf). Parsing, likelihoods and counts are this grammar's; sampling is exact, by inverse CDF per parent."""
        sp = self.spec
        root = _check_dist("root_probs", root_probs, (sp.n_c,))
        if not isinstance(probs, Sequence) or len(probs) != sp.L:
            raise ValueError(f"probs must be a list of L = {sp.L} arrays (n_parents(l), m), got {type(probs).__name__}")
        rows = [_check_dist(f"probs[{lv}]", p, (sp.n_parents(lv), sp.m)) for lv, p in enumerate(probs)]
        g = copy.copy(self)
        with np.errstate(divide="ignore"):
            g.root_probs, g.root_log_probs = root, np.log(root)
            g.probs, g.log_probs = rows, [np.log(p) for p in rows]
        g._logp_of_id = [np.append(lp.ravel(), -np.inf) for lp in g.log_probs]
        g._root_class_cdf = _cdf(root)
        g._row_cdf = [_cdf(p) for p in rows]
        for arr in (g.root_probs, g.root_log_probs, *g.probs, *g.log_probs):
            arr.flags.writeable = False
        return g

    def to_rules(self) -> list[np.ndarray]:
        """The rules in the interop layout (copies): rules[0] (n_c, m, s), rules[l>=1] (v, m, s), int64."""
        return [r.copy() for r in self.rules]

    def __repr__(self) -> str:
        sp = self.spec
        tails = ",".join(d.label for d in sp.levels)
        return f"Grammar(v={sp.v}, n_c={sp.n_c}, m={sp.m}, s={sp.s}, L={sp.L}, seed={sp.seed}, levels=[{tails}])"

    # ------------------------------------------------------------------ sampling and enumeration
    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """n i.i.d. strings (n, d) from the grammar's distribution, drawn top-down with inverse-CDF on ranks."""
        n = _check_count("n", n)
        if not isinstance(rng, np.random.Generator):
            raise ValueError(f"rng must be a numpy Generator, got {type(rng).__name__}")
        out = np.empty((n, self.spec.d), dtype=np.int64)
        for start in range(0, n, CHUNK):
            stop = min(n, start + CHUNK)
            out[start:stop] = self._sample_chunk(stop - start, rng)
        return out

    def _sample_chunk(self, n: int, rng: np.random.Generator) -> np.ndarray:
        sp = self.spec
        m = sp.m
        if self._row_cdf is not None:  # reweighted: one distribution per parent symbol, over production index k
            cur = _inverse_cdf(self._root_class_cdf, rng.random(n))[:, None]
            for level in range(sp.L):
                k = _inverse_cdf_rows(self._row_cdf[level], cur, rng.random(cur.shape))
                cur = np.take(self._child_by_index[level], cur * m + k, axis=0).reshape(n, -1)
            return cur
        r = _inverse_cdf(self._root_cdf, rng.random(n))
        cur = np.take(self.root_rank_to_class, r)[:, None]
        for level in range(sp.L):
            r = _inverse_cdf(self._cdf[level], rng.random(cur.shape))
            r += cur * m
            cur = np.take(self._child_by_rank[level], r, axis=0).reshape(n, -1)
        return cur

    def _expand(self, root: np.ndarray, ks: list[np.ndarray]) -> np.ndarray:
        """Strings from root classes (n,) and production indices ks[l] (n, s**l), top-down."""
        m = self.spec.m
        cur = root[:, None]
        for level in range(self.spec.L):
            cur = np.take(self._child_by_index[level], cur * m + ks[level], axis=0).reshape(len(root), -1)
        return cur

    def _require_index(self) -> None:
        if not self._index_ok:
            raise ValueError(f"P_max = {self.spec.P_max} exceeds 2**63 - 1; string indices do not fit int64")

    def string_at(self, idx: object) -> np.ndarray:
        """Strings (n, d) with indices idx (n,) in [0, P_max): the inverse of index_of."""
        self._require_index()
        sp = self.spec
        arr = np.asarray(idx)
        if arr.ndim == 0:
            arr = arr[None]
        if arr.ndim != 1 or (arr.size and arr.dtype.kind not in "iu"):
            raise ValueError(f"idx must be a 1-D integer array of indices in [0, {sp.P_max}), got {arr.dtype} {arr.shape}")
        arr = arr.astype(np.int64)
        if arr.size and (arr.min() < 0 or arr.max() >= sp.P_max):
            bad = int(arr.min()) if arr.min() < 0 else int(arr.max())
            raise ValueError(f"idx has index {bad} outside [0, {sp.P_max})")
        out = np.empty((arr.size, sp.d), dtype=np.int64)
        for start in range(0, arr.size, CHUNK):
            rem = arr[start : start + CHUNK].copy()
            ks: list[np.ndarray] = [None] * sp.L  # type: ignore[list-item]
            for level in range(sp.L - 1, -1, -1):
                block = rem % self._level_radix[level]
                rem //= self._level_radix[level]
                ks[level] = (block[:, None] // self._digit_w[level]) % sp.m
            out[start : start + CHUNK] = self._expand(rem, ks)
        return out

    def index_of(self, x: object) -> np.ndarray:
        """Index (n,) int64 in [0, P_max) of each string: mixed radix over (root, productions level by level)."""
        self._require_index()
        x = as_strings(x, self.spec.v, self.spec.d)
        p = self.parse(x)
        if not p.valid.all():
            row = int(np.flatnonzero(~p.valid)[0])
            raise ValueError(f"x row {row} is not a valid string of this grammar; index_of needs valid strings")
        idx = p.root.astype(np.int64)
        for level in range(self.spec.L):
            idx = idx * self._level_radix[level] + p.productions[level] @ self._digit_w[level]
        return idx

    def enumerate(self, max_rows: int = 5_000_000) -> np.ndarray:
        """All P_max strings (P_max, d), row i = string_at(i); refuses when P_max > max_rows."""
        if self.spec.P_max > max_rows:
            raise ValueError(
                f"P_max = {self.spec.P_max} is too large to enumerate; enumeration needs P_max <= max_rows = {max_rows}"
            )
        return self.string_at(np.arange(self.spec.P_max, dtype=np.int64))

    # ------------------------------------------------------------------ parsing and per-string quantities
    def _lookup(self, level: int, codes: np.ndarray) -> np.ndarray:
        kind, keys, ids = self._tables[level]
        if kind == "dense":
            return np.take(keys, codes)
        pos = np.searchsorted(keys, codes)
        np.minimum(pos, len(keys) - 1, out=pos)
        return np.where(keys[pos] == codes, ids[pos], -1)

    def _parse_ids(
        self, x: np.ndarray, ids_out: list[np.ndarray] | None = None, sym_out: list[np.ndarray] | None = None
    ) -> list[np.ndarray]:
        """Flat production ids per level (n, s**l), -1 where not derivable; x already validated.

        When given, ids_out[l] / sym_out[l] (n, s**l) receive the ids and the parent symbols (-1 if not derivable).
        """
        sp = self.spec
        n, s = x.shape[0], sp.s
        ids: list[np.ndarray] = [None] * sp.L  # type: ignore[list-item]
        cur = x
        for level in range(sp.L - 1, -1, -1):
            blocks = cur.reshape(n, sp.n_nodes(level), s)
            code = blocks[:, :, 0] * self._code_w[0]
            for j in range(1, s):
                code += blocks[:, :, j] * self._code_w[j]
            code += self._code_off
            kind, keys, sorted_ids = self._tables[level]
            if kind == "dense" and ids_out is not None:
                ids_l = np.take(keys, code, out=ids_out[level])
            else:
                ids_l = self._lookup(level, code)
                if ids_out is not None:
                    ids_out[level][...] = ids_l
            ids[level] = ids_l
            cur = np.take(self._parent_of_id[level], ids_l, out=None if sym_out is None else sym_out[level])
        return ids

    def parse(self, x: object) -> Parse:
        """Parse strings (n, d) bottom-up: validity per level and the derivation (symbols, productions) per node."""
        sp = self.spec
        x = as_strings(x, sp.v, sp.d)
        n = x.shape[0]
        shapes = [(n, sp.n_nodes(level)) for level in range(sp.L)]
        ids = [np.empty(shape, dtype=np.int64) for shape in shapes]
        symbols = [np.empty(shape, dtype=np.int64) for shape in shapes]
        productions = [np.empty(shape, dtype=np.int64) for shape in shapes]
        level_ok = np.empty((n, sp.L), dtype=bool)
        for start in range(0, n, CHUNK):
            sl = slice(start, start + CHUNK)
            chunk_ids = self._parse_ids(x[sl], [a[sl] for a in ids], [a[sl] for a in symbols])
            for level in range(sp.L):
                np.take(self._k_of_id[level], chunk_ids[level], out=productions[level][sl])
                level_ok[sl, level] = chunk_ids[level].min(1) >= 0
        level_valid = np.ascontiguousarray(np.logical_and.accumulate(level_ok[:, ::-1], axis=1)[:, ::-1])
        root = symbols[0][:, 0].copy()
        return Parse(
            valid=level_valid[:, 0].copy(), level_valid=level_valid, root=root,
            symbols=symbols, productions=productions, ids=ids,
        )

    def production_ids(self, x: object) -> list[np.ndarray]:
        """Flat production ids per level (n, s**l), -1 where not derivable: the part of `parse` counts need."""
        sp = self.spec
        x = as_strings(x, sp.v, sp.d)
        out = [np.empty((x.shape[0], sp.n_nodes(level)), dtype=np.int64) for level in range(sp.L)]
        for start in range(0, x.shape[0], CHUNK):
            sl = slice(start, start + CHUNK)
            self._parse_ids(x[sl], [a[sl] for a in out])
        return out

    def loglik(self, x: object) -> np.ndarray:
        """Exact log-probability (n,) of each string: sum of log rule probabilities over its nodes; -inf if invalid."""
        sp = self.spec
        x = as_strings(x, sp.v, sp.d)
        out = np.empty(x.shape[0])
        for start in range(0, x.shape[0], CHUNK):
            ids = self._parse_ids(x[start : start + CHUNK])
            root = self._parent_of_id[0][ids[0][:, 0]]
            ll = np.where(root >= 0, self.root_log_probs[root], -np.inf)
            for level in range(sp.L):
                ll = ll + self._logp_of_id[level][ids[level]].sum(1)
            out[start : start + CHUNK] = ll
        return out

    def production_counts(self, x: object) -> list[np.ndarray]:
        """Per level, (n_parents(l), m) int64 counts of each production over the nodes of the valid strings of x."""
        return [c.reshape(self.spec.n_parents(level), self.spec.m) for level, c in enumerate(self._flat_counts(x))]

    def _flat_counts(self, x: object) -> list[np.ndarray]:
        sp = self.spec
        p = self.parse(x)
        return [
            np.bincount(p.ids[level][p.valid].ravel(), minlength=sp.n_parents(level) * sp.m).astype(np.int64)
            for level in range(sp.L)
        ]

    def prototypicality(self, x: object, reference: object) -> tuple[np.ndarray, np.ndarray]:
        """How common each string's parts are in `reference`: (overall (n,), per_level (n, L)).

        per_level[i, l] is the mean over the string's nodes at level l of log((c + 1) / (N_l + K_l)), with c the
        count of the node's production among reference's level-l productions (valid reference strings only),
        N_l their total and K_l = n_parents(l)*m (add-one smoothing). overall is the mean over all its nodes.
        NaN where a level (for overall: the string) is not derivable.
        """
        sp = self.spec
        x = as_strings(x, sp.v, sp.d)
        reference = as_strings(reference, sp.v, sp.d, name="reference")
        counts = self._flat_counts(reference)
        ids = self.parse(x).ids
        per_level = np.empty((x.shape[0], sp.L))
        total = np.zeros(x.shape[0])
        for level in range(sp.L):
            c = counts[level]
            logf = np.log((c + 1.0) / (c.sum() + c.size))
            logf = np.append(logf, np.nan)
            node_logf = logf[ids[level]].sum(1)
            total += node_logf
            per_level[:, level] = node_logf / sp.n_nodes(level)
        return total / sp.n_productions, per_level


def _inverse_cdf(cdf: np.ndarray, u: np.ndarray) -> np.ndarray:
    """Rank index (0-based, int64) of uniforms u under the cumulative probabilities cdf (last entry 1)."""
    m = len(cdf)
    if m <= 16:  # a few vectorized comparisons beat searchsorted for short tables
        r = np.zeros(u.shape, dtype=np.int64)
        for c in cdf[:-1]:
            r += u >= c
    else:
        r = np.searchsorted(cdf, u, side="right")
    np.minimum(r, m - 1, out=r)
    return r


def _inverse_cdf_rows(cdf: np.ndarray, parent: np.ndarray, u: np.ndarray) -> np.ndarray:
    """Index k (int64, parent's shape) of uniforms u under each parent's own cumulative row cdf[parent] (n_par, m)."""
    k = np.zeros(u.shape, dtype=np.int64)
    for c in range(cdf.shape[1] - 1):
        k += u >= np.take(cdf[:, c], parent)
    return k


def _cdf(p: np.ndarray) -> np.ndarray:
    """Cumulative sums of p along its last axis, exactly 1 from the last non-zero entry on: inverse-CDF never runs
    past the end, and never lands on a zero-probability entry (a zero adds nothing to the sum before it)."""
    c = np.cumsum(p, axis=-1)
    c /= c[..., -1:]
    last = (np.asarray(p) > 0).shape[-1] - 1 - np.argmax((np.asarray(p) > 0)[..., ::-1], axis=-1)
    c[np.arange(c.shape[-1]) >= np.expand_dims(last, -1)] = 1.0
    return c


def _check_dist(name: str, p: object, shape: tuple[int, ...]) -> np.ndarray:
    """p as a float64 array of `shape` whose last axis holds distributions (finite, >= 0, summing to 1)."""
    arr = np.array(p, dtype=np.float64)
    if arr.shape != shape:
        raise ValueError(f"{name} must have shape {shape}, got {arr.shape}")
    if not np.isfinite(arr).all() or (arr < 0).any():
        raise ValueError(f"{name} must hold finite probabilities >= 0, got min {np.nanmin(arr)}")
    sums = arr.sum(-1)
    if not np.allclose(sums, 1.0, rtol=0, atol=1e-9):
        bad = np.unravel_index(np.argmax(np.abs(sums - 1.0)), sums.shape) if sums.ndim else ()
        raise ValueError(f"{name} rows must sum to 1; row {tuple(int(i) for i in bad)} sums to {float(sums[bad])}")
    return arr


def _check_count(name: str, n: object) -> int:
    return _check_int(name, n, 0)
