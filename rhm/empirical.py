"""The empirical grammar of a training set: the grammar's rules with production probabilities equal to their counts
in the parse trees of T (SCIENCE.md, "Nulls that match what they are compared with").

A generator that has learned T's production frequencies and stored no string: per level and parent symbol, each
production has probability count / (count of the parent's nodes in T); root classes are at their frequency in T;
productions unused in T get probability 0. It is a `Grammar` (`Grammar.reweighted`), so it samples exactly and
parses, scores and counts with the grammar's own code.
"""
from __future__ import annotations

import numpy as np

from .grammar import Grammar
from .strings import as_strings


def empirical_grammar(g: Grammar, train: object) -> Grammar:
    """`g`'s rules at the production frequencies of `train` (n, d), counted with multiplicity over its valid strings.

    A parent symbol that occurs in no parse tree of T is unreachable under these probabilities; its row is uniform
    only so that every row stays a distribution (it is never drawn)."""
    if not isinstance(g, Grammar):
        raise ValueError(f"g must be a Grammar, got {type(g).__name__}")
    t = as_strings(train, g.spec.v, g.spec.d, name="train")
    parse = g.parse(t)
    if not parse.valid.any():
        raise ValueError(f"train holds no valid string of this grammar ({t.shape[0]} rows): no parse tree to count")
    root = np.bincount(parse.root[parse.valid], minlength=g.spec.n_c).astype(np.float64)
    probs = []
    for counts in g.production_counts(t):
        total = counts.sum(1, keepdims=True).astype(np.float64)
        probs.append(np.where(total > 0, counts / np.maximum(total, 1.0), 1.0 / g.spec.m))
    return g.reweighted(root / root.sum(), probs)
