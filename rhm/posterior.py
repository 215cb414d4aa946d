"""Exact posterior marginals p(x_i | z) of partially observed RHM strings, under the grammar and under a memorizer
(SCIENCE.md, "Early overestimation").

A partially observed string z enters as per-position evidence e_i(b) = q(z_i | x_i = b): for masked diffusion 1 at a
masked position and [b == z_i] at an observed one (`masked_evidence`); for uniform diffusion the symmetric channel
abar [b == z_i] + (1 - abar) / v (`channel_evidence`). Then p(x | z) is proportional to p(x) prod_i e_i(x_i).

Under the grammar, `GrammarPosterior` runs belief propagation on the RHM tree (every string has one derivation, so the
tree is the whole model): an inside pass bottom-up gives beta(a) = p(evidence below a node | its symbol a), each
node's beta rescaled to max 1 (the log scales are summed into log p(z)); a top-down pass pushes the posterior of each
node's symbol through q(k | a) = p(a, k) prod_j beta_j(c_j(a, k)) / beta(a), the production's posterior given the
evidence below, which is scale-free. The leaves' posteriors are p(x_i | z). Work is linear in the string length
(n_nodes(l) * n_parents(l) * m per level) and vectorized over strings; the Python loops run over levels only.

The memorizer's posterior (`memorizer_posterior`) is the same with the training set as the distribution: uniform over
the training rows, weighted by prod_i e_i(x_i) (for masked evidence: uniform over the rows consistent with z).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .grammar import Grammar
from .strings import as_strings

# Strings per vectorized chunk: keeps each level's (chunk, nodes, rules) temporaries in cache.
CHUNK = 256
# Masked strings take a fast path when the bottom level's tables ((v+1)**s codes x productions) stay this small.
MASKED_TABLE_MAX = 2**24


@dataclass(frozen=True)
class PosteriorResult:
    """marginals (n, d, v): p(x_i = b | z), rows summing to 1 (NaN where z has probability 0 under the model);
    log_evidence (n,): log p(z) = log sum_x p(x) prod_i e_i(x_i) (-inf where z is impossible)."""

    marginals: np.ndarray
    log_evidence: np.ndarray


def masked_evidence(z: object, v: int) -> np.ndarray:
    """Evidence (n, d, v) of masked strings z (n, d) with symbols in [0, v] (v = masked): 1 at every symbol of a
    masked position, [b == z_i] at an observed one."""
    z = _as_tokens(z, v + 1, "z")
    e = np.zeros((*z.shape, v))
    observed = z < v
    n_idx, i_idx = np.nonzero(observed)
    e[n_idx, i_idx, z[observed]] = 1.0
    e[~observed] = 1.0
    return e


def channel_evidence(z: object, abar: object, v: int) -> np.ndarray:
    """Evidence (n, d, v) of noisy strings z (n, d) in [0, v) through the symmetric channel
    q(z_i | x_i = b) = abar [b == z_i] + (1 - abar) / v; abar a scalar or one per string (n,), in [0, 1]."""
    z = _as_tokens(z, v, "z")
    a = np.asarray(abar, dtype=np.float64)
    if a.ndim > 1 or (a.ndim == 1 and a.shape[0] != z.shape[0]):
        raise ValueError(f"abar must be a scalar or one value per string ({z.shape[0]},), got shape {a.shape}")
    if not np.all((a >= 0) & (a <= 1)):
        raise ValueError(f"abar must lie in [0, 1] (the kept fraction of the channel), got {a}")
    a = np.broadcast_to(a, (z.shape[0],))[:, None, None]
    e = np.broadcast_to((1.0 - a) / v, (*z.shape, v)).copy()
    e += a * (np.arange(v) == z[..., None])
    return e


def _as_tokens(z: object, n_symbols: int, name: str) -> np.ndarray:
    if hasattr(z, "detach") and hasattr(z, "cpu"):
        z = z.detach().cpu().numpy()
    arr = np.asarray(z)
    if arr.ndim == 1:
        arr = arr[None, :]
    if arr.ndim != 2:
        raise ValueError(f"{name} must have shape (n, d), got shape {arr.shape}")
    if arr.size and arr.dtype.kind not in "iu":
        raise ValueError(f"{name} must hold integer tokens in [0, {n_symbols}), got dtype {arr.dtype}")
    if arr.size and (arr.min() < 0 or arr.max() >= n_symbols):
        bad = int(arr.min()) if arr.min() < 0 else int(arr.max())
        raise ValueError(f"{name} has token {bad} outside [0, {n_symbols})")
    return np.ascontiguousarray(arr, dtype=np.int64)


def _check_evidence(evidence: object, v: int, d: int) -> np.ndarray:
    e = np.asarray(evidence, dtype=np.float64)
    if e.ndim != 3 or e.shape[1:] != (d, v):
        raise ValueError(f"evidence must have shape (n, d={d}, v={v}), got shape {e.shape}")
    if e.size and not (np.isfinite(e).all() and e.min() >= 0):
        raise ValueError("evidence must hold finite non-negative likelihoods q(z_i | x_i = b)")
    return e


class GrammarPosterior:
    """Belief propagation on one grammar's tree; build once per grammar, call `marginals` on batches.

    Per production level l, productions are laid out k-major (flat r = k * n_parents + a) so that summing over k
    is m contiguous slabs: parent[l] (R,), child[l] (s, R) child symbols, p[l] (R,) rule probabilities, and
    scatter[l] (R, s * v) one-hot of the children (child j in columns j*v..), which sends production posteriors to
    their children's symbols in one matmul.
    """

    def __init__(self, grammar: Grammar):
        if not isinstance(grammar, Grammar):
            raise ValueError(f"grammar must be an rhm.Grammar, got {type(grammar).__name__}")
        self.grammar = grammar
        sp = grammar.spec
        self.parent, self.child, self.p, self.scatter = [], [], [], []
        for level in range(sp.L):
            n_par = sp.n_parents(level)
            rules = np.asarray(grammar.rules[level]).transpose(1, 0, 2).reshape(sp.m * n_par, sp.s)  # (k, a) order
            self.parent.append(np.tile(np.arange(n_par), sp.m))
            self.child.append(np.ascontiguousarray(rules.T))
            self.p.append(np.ascontiguousarray(np.asarray(grammar.probs[level]).T.reshape(-1)))
            self.scatter.append(np.concatenate([np.eye(sp.v)[rules[:, j]] for j in range(sp.s)], axis=1))
        self.root_probs = np.asarray(grammar.root_probs, dtype=np.float64)

    def marginals(self, evidence: object) -> PosteriorResult:
        """Posterior marginals p(x_i | z) and log p(z) of a batch of evidence arrays (n, d, v)."""
        sp = self.grammar.spec
        e = _check_evidence(evidence, sp.v, sp.d)
        n = e.shape[0]
        post = np.empty_like(e)
        loge = np.empty(n)
        for start in range(0, n, CHUNK):
            sl = slice(start, start + CHUNK)
            post[sl], loge[sl] = self._chunk(e[sl])
        return PosteriorResult(marginals=post, log_evidence=loge)

    def masked(self, z: object) -> PosteriorResult:
        """`marginals` of masked strings z (n, d) in [0, v], v = masked; the same numbers, faster: the bottom
        level's inside messages and its leaves' posteriors come from tables over the (v+1)**s masked blocks."""
        sp = self.grammar.spec
        z = _as_tokens(z, sp.v + 1, "z")
        if z.shape[1] != sp.d:
            raise ValueError(f"z must have shape (n, d={sp.d}), got shape {z.shape}")
        if (sp.v + 1) ** sp.s * sp.n_parents(sp.L - 1) * sp.m > MASKED_TABLE_MAX:
            return self.marginals(masked_evidence(z, sp.v))
        if not hasattr(self, "_blocks"):
            self._blocks = _BlockTables(self)
        post = np.empty((*z.shape, sp.v))
        loge = np.empty(z.shape[0])
        for start in range(0, z.shape[0], CHUNK):
            sl = slice(start, start + CHUNK)
            post[sl], loge[sl] = self._masked_chunk(z[sl])
        return PosteriorResult(marginals=post, log_evidence=loge)

    def _masked_chunk(self, z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        sp, tab = self.grammar.spec, self._blocks
        n, s, v, bottom = z.shape[0], sp.s, sp.v, sp.L - 1
        blocks = z.reshape(n, sp.n_nodes(bottom), s)
        code = blocks @ tab.digit                                       # (n, nodes): the block's masked pattern
        node_post, loge = self._propagate(tab.beta[code], tab.log_peak[code].sum(1), bottom)
        rho = node_post * tab.inv_beta[code]                            # post(a) / beta(a): the outside ratio
        flat = rho.reshape(-1, rho.shape[-1])
        out = np.empty((n, sp.n_nodes(bottom), s, v))
        rows = np.arange(flat.shape[0])[:, None] * flat.shape[1]
        for j in range(s):
            others = np.delete(blocks, j, axis=2) @ tab.other_digit     # (n, nodes): pattern of the siblings
            pat = others.reshape(-1)
            w = np.take(flat, tab.sparse_parent[j][pat] + rows) * tab.sparse_p[j][pat]
            leaf = w.reshape(n, -1, v, tab.width[j]).sum(-1)            # siblings partly observed
            free = pat == tab.all_masked
            leaf.reshape(-1, v)[free] = flat[free] @ tab.free[j]        # every sibling masked
            observed = blocks[:, :, j] < v
            leaf[observed] = 0.0
            leaf[observed, blocks[:, :, j][observed]] = 1.0             # an observed token is its own posterior
            out[:, :, j] = leaf
        out = out.reshape(n, sp.d, v)
        out[~np.isfinite(loge)] = np.nan
        return out, loge

    def _chunk(self, e: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        post, loge = self._propagate(e, np.zeros(e.shape[0]), self.grammar.spec.L)
        post[~np.isfinite(loge)] = np.nan                               # p(z) = 0: no posterior
        return post, loge

    def _propagate(self, beta: np.ndarray, log_scale: np.ndarray, top: int) -> tuple[np.ndarray, np.ndarray]:
        """From the inside messages beta (n, s**top, symbols) of the nodes at depth `top` (the leaves: top = L) and
        their summed log scales (n,): the posteriors of those nodes' symbols and log p(z)."""
        sp = self.grammar.spec
        n, s, m = beta.shape[0], sp.s, sp.m
        prods, norms = [None] * top, [None] * top
        for level in range(top - 1, -1, -1):                            # inside: beta of every node, bottom-up
            n_nodes, n_par = sp.n_nodes(level), sp.n_parents(level)
            ch = beta.reshape(n, n_nodes, s, beta.shape[-1])
            prod = np.take(ch[:, :, 0], self.child[level][0], axis=-1)     # np.take: 2x a fancy index here
            for j in range(1, s):
                prod *= np.take(ch[:, :, j], self.child[level][j], axis=-1)
            prod *= self.p[level]                                       # (n, nodes, R): p(a,k) prod_j beta_j
            b = prod.reshape(n, n_nodes, m, n_par).sum(2)               # (n, nodes, n_par)
            peak = b.max(-1, keepdims=True)
            peak += peak == 0                                           # no evidence for any symbol: scale 1
            norms[level] = b
            prods[level] = prod
            log_scale = log_scale + np.log(peak).sum((1, 2))
            beta = b / peak
        root = self.root_probs * beta[:, 0, :]                          # (n, n_c)
        z_root = root.sum(-1, keepdims=True)
        with np.errstate(divide="ignore", invalid="ignore"):
            log_evidence = np.log(z_root[:, 0]) + log_scale
            post = (root / z_root)[:, None, :]                          # NaN where p(z) = 0
        for level in range(top):                                        # outside: node posteriors, top-down
            n_nodes, b = sp.n_nodes(level), norms[level]
            ratio = post / (b + (b == 0))                               # post is 0 where b is: 0/0 -> 0
            w = prods[level].reshape(n, n_nodes, m, -1) * ratio[:, :, None, :]   # production r = (k, parent a)
            post = (w.reshape(n * n_nodes, -1) @ self.scatter[level]).reshape(n, n_nodes * s, sp.v)
        return post, log_evidence


class _BlockTables:
    """Tables of the bottom production level over the masked patterns of a block of s leaves (state v = masked;
    code = sum_j state_j (v+1)**(s-1-j)): beta (codes, n_par) the inside message rescaled to max 1, log_peak its log
    scale, inv_beta 1 / the unscaled message (0 where it is 0); per leaf j, over the siblings' patterns: free[j]
    (n_par, v) the child marginals when every sibling is masked; sparse_parent[j] / sparse_p[j] (patterns,
    v * width) the parent and probability of the productions consistent with the observed siblings, `width` slots
    per leaf symbol (1 when s = 2: a right-hand side is unique in its level), padded with probability 0."""

    def __init__(self, bp: GrammarPosterior):
        sp = bp.grammar.spec
        v, s, m, bottom = sp.v, sp.s, sp.m, sp.L - 1
        n_par = sp.n_parents(bottom)
        child, p, parent = bp.child[bottom], bp.p[bottom], bp.parent[bottom]
        R = child.shape[1]
        self.digit = (v + 1) ** np.arange(s - 1, -1, -1, dtype=np.int64)
        self.other_digit = self.digit[1:]
        self.all_masked = int(v * self.other_digit.sum())
        states = (np.arange((v + 1) ** s)[:, None] // self.digit) % (v + 1)             # (codes, s)
        fits = (states[:, :, None] == v) | (states[:, :, None] == child[None])         # (codes, s, R)
        beta = (fits.all(1) * p).reshape(-1, m, n_par).sum(1)                           # (codes, n_par)
        peak = beta.max(1, keepdims=True)
        self.beta = np.divide(beta, peak, out=np.zeros_like(beta), where=peak > 0)
        self.log_peak = np.log(np.where(peak[:, 0] > 0, peak[:, 0], 1.0))
        self.inv_beta = np.divide(1.0, beta, out=np.zeros_like(beta), where=beta > 0)
        self.parent_ext, self.p_ext = np.append(parent, 0), np.append(p, 0.0)
        self.child_ext = [np.append(c, 0) for c in child]
        others = (np.arange((v + 1) ** (s - 1))[:, None] // self.other_digit) % (v + 1)   # (patterns, s-1)
        self.free, self.sparse_parent, self.sparse_p, self.width = [], [], [], []
        for j in range(s):
            sib = np.delete(child, j, axis=0)                                           # (s-1, R)
            ok = ((others[:, :, None] == v) | (others[:, :, None] == sib[None])).all(1)  # (patterns, R)
            ok[self.all_masked] = False                                                 # that one is `free`
            pat, rule = np.nonzero(ok)
            key = pat * v + child[j][rule]                                              # (pattern, leaf symbol)
            order = np.argsort(key, kind="stable")
            key, rule = key[order], rule[order]
            width = max(int(np.bincount(key).max()), 1) if key.size else 1
            lists = np.full((ok.shape[0] * v, width), R, dtype=np.int64)
            lists[key, np.arange(key.size) - np.searchsorted(key, key)] = rule
            lists = lists.reshape(ok.shape[0], v * width)
            free = np.zeros((n_par, v))
            np.add.at(free, (parent, child[j]), p)
            self.free.append(free)
            self.sparse_parent.append(self.parent_ext[lists])
            self.sparse_p.append(self.p_ext[lists])
            self.width.append(width)


def grammar_posterior(grammar: Grammar, evidence: object) -> PosteriorResult:
    """One-off `GrammarPosterior(grammar).marginals(evidence)`; build the class once for repeated batches."""
    return GrammarPosterior(grammar).marginals(evidence)


def memorizer_posterior(train: object, evidence: object) -> PosteriorResult:
    """Posterior marginals when the distribution is uniform over the rows of `train` (P, d): each row weighted by
    prod_i e_i(x_i) (evidence (n, d, v)); log_evidence = log of the mean weight. NaN rows (and -inf) where no row is
    consistent with z. A row present twice counts twice."""
    e = np.asarray(evidence, dtype=np.float64)
    if e.ndim != 3:
        raise ValueError(f"evidence must have shape (n, d, v), got shape {e.shape}")
    n, d, v = e.shape
    t = as_strings(train, v, d, name="train")
    P = t.shape[0]
    e = _check_evidence(e, v, d)
    if P == 0:
        raise ValueError("train must hold at least one string for the memorizer's posterior")
    with np.errstate(divide="ignore"):
        loge = np.log(e)
    ll = np.zeros((n, P))
    for i in range(d):
        ll += loge[:, i, t[:, i]]                                       # (n, P): log prod_i e_i(train_p[i])
    top = ll.max(-1, keepdims=True)
    finite = np.isfinite(top)
    w = np.exp(ll - np.where(finite, top, 0.0))
    total = w.sum(-1, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        w /= total
        log_evidence = np.where(finite[:, 0], np.log(total[:, 0]) + top[:, 0] - np.log(P), -np.inf)
    onehot = (t[:, :, None] == np.arange(v)).reshape(P, d * v).astype(np.float64)
    marg = (w @ onehot).reshape(n, d, v)
    marg[~finite[:, 0]] = np.nan
    return PosteriorResult(marginals=marg, log_evidence=log_evidence)
