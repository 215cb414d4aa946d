"""Twins: strings that share a valid string's rank tree under another root class (SCIENCE.md, "Memorization
against a null").

A valid string is its root class plus its rank tree (the rank of the production used at every node). Its twin under
class c' is the string derived from c' with the same rank tree: valid, distinct from it, with probability
w(c')/w(c) * p(x). A model that has not memorized a training string has no reason to prefer it over its twins, so
generations that hit the twins of the training set are the null against which copies are memorization.

Every string has exactly one derivation, so a string is identified by (root class, rank tree); the twin set of a
training set is computed on those pairs, never by hashing strings.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .grammar import Grammar
from .strings import as_strings, encode_strings


@dataclass(frozen=True)
class RankTree:
    """Derivations of n valid strings as ranks: root (n,) class ids; ranks[l] (n, s**l) the 0-based rank of each
    level-l node's production among its parent symbol's m productions (0 = most probable)."""

    root: np.ndarray
    ranks: list[np.ndarray]

    def flat(self) -> np.ndarray:
        """The ranks of all nodes, level by level, as one (n, n_productions) array."""
        return np.concatenate(self.ranks, axis=1)


@dataclass(frozen=True)
class Twins:
    """The twins of n strings under the n_c - 1 other root classes: strings (n, n_c-1, d), their classes
    root (n, n_c-1) and exact log-probabilities logprob (n, n_c-1)."""

    strings: np.ndarray
    root: np.ndarray
    logprob: np.ndarray


@dataclass(frozen=True)
class TwinSet:
    """The twin set T' of a training set T: the twins of its strings that are not themselves in T, deduplicated.

    Training strings with the same rank tree form a *group* (up to n_c strings, all twins of each other).
    group (P,): each training string's group. strings (K, d), root (K,), group_of (K,), prob (K,): the members of T'.
    group_mass (G,) / group_size (G,): mass and number of the T' members of each group (0 when every twin of the
    group is in T). train_mass = p(T) over distinct training strings; mass = p(T').
    """

    group: np.ndarray
    strings: np.ndarray
    root: np.ndarray
    group_of: np.ndarray
    prob: np.ndarray
    group_mass: np.ndarray
    group_size: np.ndarray
    train_mass: float
    mass: float

    @property
    def n_groups(self) -> int:
        return int(self.group_mass.shape[0])


def _rank_of_index(g: Grammar) -> list[np.ndarray]:
    """Per level (n_parents, m): the 0-based rank of production index k (inverse of g.rank_to_index)."""
    return [np.argsort(order, axis=1) for order in g.rank_to_index]


def rank_trees(g: Grammar, x: object) -> RankTree:
    """Root classes and per-node production ranks of valid strings x (n, d); ValueError naming the first invalid
    row, since an invalid string has no derivation and so no twins."""
    x = as_strings(x, g.spec.v, g.spec.d)
    p = g.parse(x)
    if not p.valid.all():
        row = int(np.flatnonzero(~p.valid)[0])
        raise ValueError(f"x row {row} is not a valid string of this grammar; only valid strings have a rank tree "
                         "(and twins)")
    rank_of = _rank_of_index(g)
    ranks = [rank_of[lvl][p.symbols[lvl], p.productions[lvl]] for lvl in range(g.spec.L)]
    return RankTree(root=p.root.astype(np.int64), ranks=ranks)


def derive(g: Grammar, root: np.ndarray, ranks: list[np.ndarray]) -> np.ndarray:
    """Strings (n, d) from root classes (n,) and rank trees ranks[l] (n, s**l), top-down."""
    sp = g.spec
    root = np.asarray(root, dtype=np.int64)
    cur = root[:, None]
    for lvl in range(sp.L):
        k = g.rank_to_index[lvl][cur, ranks[lvl]]                       # production index of every node
        cur = g.rules[lvl][cur, k].reshape(root.shape[0], -1)            # (n, s**(l+1)) children
    return cur


def _check_classes(g: Grammar) -> None:
    if g.spec.n_c < 2:
        raise ValueError(f"this grammar has n_c = {g.spec.n_c} root class: no string has a twin, so twin_frac and "
                         "mem_twin are undefined; use n_c >= 2")


def twins(g: Grammar, x: object) -> Twins:
    """The twins of valid strings x (n, d) under every other root class, with their exact log-probabilities."""
    _check_classes(g)
    x = as_strings(x, g.spec.v, g.spec.d)
    tree = rank_trees(g, x)
    n, n_c = x.shape[0], g.spec.n_c
    others = (tree.root[:, None] + np.arange(1, n_c)[None, :]) % n_c    # (n, n_c-1) every other class
    flat_root = others.reshape(-1)
    rep = np.repeat(np.arange(n), n_c - 1)
    strings = derive(g, flat_root, [r[rep] for r in tree.ranks]).reshape(n, n_c - 1, g.spec.d)
    logw = np.asarray(g.root_log_probs)
    logprob = g.loglik(x)[:, None] - logw[tree.root][:, None] + logw[others]
    return Twins(strings=strings, root=others, logprob=logprob)


def twin_set(g: Grammar, train: object) -> TwinSet:
    """The twin set T' of training strings `train` (P, d) (all valid), with p(T) and p(T') exact."""
    _check_classes(g)
    train = as_strings(train, g.spec.v, g.spec.d, name="train")
    tree = rank_trees(g, train)
    n_c = g.spec.n_c
    keys = encode_strings(tree.flat(), max(g.spec.m, 2)) if train.shape[0] else np.zeros(0, np.uint64)
    _, first, group = np.unique(keys, return_index=True, return_inverse=True)
    group = group.reshape(-1).astype(np.int64)
    G = first.shape[0]
    logw = np.asarray(g.root_log_probs)
    tree_logp = g.loglik(train[first]) - logw[tree.root[first]]      # log p of each group's rank tree, no root
    present = np.zeros((G, n_c), dtype=bool)
    present[group, tree.root] = True
    gid, cls = np.nonzero(~present)                                     # T' = (group, class) pairs not in T
    prob = np.exp(tree_logp[gid] + logw[cls])
    strings = derive(g, cls, [r[first[gid]] for r in tree.ranks]) if gid.size else np.zeros((0, g.spec.d), np.int64)
    tg, tc = np.nonzero(present)                                        # distinct training strings
    train_mass = math.fsum(np.exp(tree_logp[tg] + logw[tc]).tolist())
    return TwinSet(
        group=group, strings=strings, root=cls.astype(np.int64), group_of=gid.astype(np.int64), prob=prob,
        group_mass=np.bincount(gid, weights=prob, minlength=G), group_size=np.bincount(gid, minlength=G),
        train_mass=train_mass, mass=math.fsum(prob.tolist()),
    )
