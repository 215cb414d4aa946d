"""The empirical grammar of a training set against brute force: its probabilities are the production counts of T's
parse trees (counted by a pure-Python parser over the interop rules), its exact sampler's string frequencies match
the probabilities it assigns, and its log-likelihood is the sum over nodes of log(count ratio)."""
from __future__ import annotations

import math

import numpy as np
import pytest

from rhm import Grammar, GrammarSpec, RuleDist, empirical_grammar, encode_strings, sample_iid

from tests.test_rhm import brute_strings

TINY = dict(v=3, n_c=2, m=2, s=2, L=2)


def brute_counts(g: Grammar, train: np.ndarray) -> tuple[np.ndarray, list[np.ndarray]]:
    """Root-class counts and per level (parent, k) counts over the nodes of T's strings, by scanning the rules."""
    rules, sp = g.to_rules(), g.spec
    root = np.zeros(sp.n_c)
    levels = [np.zeros((sp.n_parents(lv), sp.m)) for lv in range(sp.L)]
    for x in train.tolist():
        cur, used = x, []
        for level in range(sp.L - 1, -1, -1):
            parents = []
            for j in range(0, len(cur), sp.s):
                block = cur[j:j + sp.s]
                hits = [(a, k) for a in range(rules[level].shape[0]) for k in range(sp.m)
                        if list(rules[level][a, k]) == block]
                assert len(hits) == 1
                used.append((level, *hits[0]))
                parents.append(hits[0][0])
            cur = parents
        root[cur[0]] += 1
        for level, a, k in used:
            levels[level][a, k] += 1
    return root, levels


@pytest.mark.parametrize("tail", [RuleDist(), RuleDist("power", a=1.5)])
def test_empirical_probabilities_are_the_counts_of_T(tail):
    g = Grammar.from_spec(GrammarSpec(**TINY, seed=3, levels=tail))
    train = sample_iid(g, 7, seed=1)
    emp = empirical_grammar(g, train)
    root, levels = brute_counts(g, train)
    assert np.allclose(emp.root_probs, root / root.sum())
    for level, counts in enumerate(levels):
        seen = counts.sum(1) > 0
        assert np.allclose(emp.probs[level][seen], counts[seen] / counts[seen].sum(1, keepdims=True))
        assert (emp.probs[level][seen][counts[seen] == 0] == 0).all()   # unused in T: probability 0


def test_empirical_sampler_and_loglik_match_its_probabilities():
    g = Grammar.from_spec(GrammarSpec(**TINY, seed=0, levels=RuleDist("power", a=1.0)))
    train = sample_iid(g, 6, seed=2)
    emp = empirical_grammar(g, train)
    table = brute_strings(emp)   # every string of the rules, probability by recursive expansion of emp.probs
    strings = np.array(list(table), dtype=np.int64)
    p = np.array(list(table.values()))
    assert math.isclose(p.sum(), 1.0)
    # loglik: the sum of log count ratios over the string's nodes (-inf for a production unused in T)
    with np.errstate(divide="ignore"):
        assert np.allclose(emp.loglik(strings), np.log(p))
    # exact sampler: frequencies of every string within 4.5 binomial sd of p; strings with p = 0 never drawn
    n = 200_000
    x = emp.sample(n, np.random.default_rng(7))
    keys, ref = encode_strings(x, g.spec.v), encode_strings(strings, g.spec.v)
    freq = np.array([(keys == k).sum() for k in ref]) / n
    sd = np.sqrt(p * (1 - p) / n)
    assert (np.abs(freq - p) <= 4.5 * sd + 1e-12).all(), np.abs(freq - p) / np.maximum(sd, 1e-12)
    assert (freq[p == 0] == 0).all() and (p == 0).any()
    # the support is what T's parts can build: every training string is in it
    assert np.isfinite(emp.loglik(train)).all()


def test_reweighted_rejects_bad_probabilities():
    g = Grammar.from_spec(GrammarSpec(**TINY, seed=0))
    good = [p.copy() for p in g.probs]
    with pytest.raises(ValueError, match="root_probs must have shape"):
        g.reweighted(np.ones(3) / 3, good)
    with pytest.raises(ValueError, match="sums to"):
        g.reweighted(g.root_probs, [good[0] * 2, good[1]])
    with pytest.raises(ValueError, match=">= 0"):
        g.reweighted(g.root_probs, [good[0] * np.array([-1, 2]), good[1]])
    with pytest.raises(ValueError, match="list of L = 2"):
        g.reweighted(g.root_probs, good[:1])
    valid = set(brute_strings(g))
    invalid = next(x for x in np.ndindex(*(g.spec.v,) * g.spec.d) if x not in valid)
    with pytest.raises(ValueError, match="no valid string"):
        empirical_grammar(g, np.array([invalid] * 3, np.int64))
