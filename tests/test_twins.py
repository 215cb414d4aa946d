"""Twins and string entropy against independent references: a recursive Python derivation that records ranks node by
node, the brute-force probability table of tests/test_rhm.py, and -sum p log p over enumerated languages."""
from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rhm import Grammar, GrammarSpec, RuleDist, encode_strings, rank_trees, sample_unique, twin_set, twins
from test_rhm import brute_strings


def brute_derivations(g: Grammar) -> dict[tuple[int, tuple[int, ...]], tuple[int, ...]]:
    """{(root class, ranks of every node in level order): string}, by recursive expansion in plain Python."""
    rules, L, s = g.to_rules(), g.spec.L, g.spec.s
    order = [np.asarray(o).tolist() for o in g.rank_to_index]   # order[l][parent][rank] = production index

    def expand(level: int, syms: list[int]) -> list[tuple[list[int], list[int]]]:
        """Every (ranks of this level's nodes and below, level by level, flattened; leaves) below `syms`."""
        out = []
        choices = [range(g.spec.m)] * len(syms)
        for combo in np.ndindex(*[g.spec.m] * len(syms)) if syms else [()]:
            children = []
            for sym, rank in zip(syms, combo):
                children += [int(c) for c in rules[level][sym][order[level][sym][rank]]]
            if level == L - 1:
                out.append((list(combo), children))
            else:
                for ranks_below, leaves in expand(level + 1, children):
                    out.append((list(combo) + ranks_below, leaves))
        del choices
        return out

    table = {}
    for c in range(g.spec.n_c):
        for ranks, leaves in expand(0, [c]):
            assert len(leaves) == s**L
            table[(c, tuple(ranks))] = tuple(leaves)
    return table


SPECS = [
    dict(v=4, n_c=3, m=2, s=2, L=2),
    dict(v=3, n_c=2, m=2, s=3, L=2),
    dict(v=4, n_c=4, m=3, s=2, L=1),
    dict(v=4, n_c=3, m=2, s=2, L=3),
]
TAILS = [RuleDist(), RuleDist("power", a=1.5), RuleDist("exp", xi=0.7)]


@pytest.mark.parametrize("kw", SPECS)
@pytest.mark.parametrize("tail", TAILS, ids=lambda d: d.label)
def test_twins_match_recursive_derivation(kw, tail):
    g = Grammar.from_spec(GrammarSpec(**kw, seed=3, levels=tail, root=RuleDist("power", a=0.8)))
    table = brute_derivations(g)
    probs = brute_strings(g)
    by_string = {string: key for key, string in table.items()}
    E = g.enumerate()
    tree = rank_trees(g, E)
    flat = tree.flat()
    for i, row in enumerate(E):
        c, ranks = by_string[tuple(row.tolist())]
        assert tree.root[i] == c and tuple(flat[i].tolist()) == ranks
    tw = twins(g, E)
    n_c = g.spec.n_c
    assert tw.strings.shape == (len(E), n_c - 1, g.spec.d)
    for i, row in enumerate(E):
        c, ranks = by_string[tuple(row.tolist())]
        got = {int(r): tuple(s.tolist()) for r, s in zip(tw.root[i], tw.strings[i])}
        assert set(got) == set(range(n_c)) - {c}
        for c2, string in got.items():
            assert string == table[(c2, ranks)] != tuple(row.tolist())
            w = g.root_probs
            assert probs[string] == pytest.approx(w[c2] / w[c] * probs[tuple(row.tolist())], rel=1e-9)
        np.testing.assert_allclose(np.exp(tw.logprob[i]), [probs[got[int(r)]] for r in tw.root[i]], rtol=1e-9)


def test_twins_have_equal_probability_under_uniform_root_weights():
    g = Grammar.from_spec(GrammarSpec(v=16, n_c=4, m=4, s=2, L=3, levels=RuleDist("power", a=2.0)))
    x = g.sample(300, np.random.default_rng(1))
    tw = twins(g, x)
    assert g.parse(tw.strings.reshape(-1, g.spec.d)).valid.all()
    np.testing.assert_allclose(tw.logprob, np.repeat(g.loglik(x)[:, None], 3, axis=1), rtol=1e-12)


def check_twin_set(g: Grammar, train: np.ndarray) -> None:
    """T' against sets built from `twins` in plain Python: disjoint from T, deduplicated, complete; exact masses."""
    ts = twin_set(g, train)
    v = g.spec.v
    t_keys = set(encode_strings(train, v).tolist())
    all_twins = twins(g, train).strings.reshape(-1, g.spec.d)
    expected = set(encode_strings(all_twins, v).tolist()) - t_keys
    got = encode_strings(ts.strings, v).tolist()
    assert len(got) == len(set(got)) and set(got) == expected
    logp = {k: lp for k, lp in zip(encode_strings(all_twins, v).tolist(), twins(g, train).logprob.reshape(-1))}
    assert ts.mass == pytest.approx(math.fsum(math.exp(logp[k]) for k in expected), rel=1e-9, abs=1e-300)
    np.testing.assert_allclose(ts.prob, np.exp(g.loglik(ts.strings)), rtol=1e-9)
    distinct = np.unique(encode_strings(train, v), return_index=True)[1]
    assert ts.train_mass == pytest.approx(math.fsum(np.exp(g.loglik(train[distinct])).tolist()), rel=1e-9)
    # groups: training strings share a group iff they are twins of each other; a group's T' part is its twins
    for i in range(len(train)):
        twins_i = set(encode_strings(twins(g, train[i:i + 1]).strings[0], v).tolist())
        same = {j for j in range(len(train)) if ts.group[j] == ts.group[i]}
        assert {encode_strings(train[j:j + 1], v)[0] for j in same} <= twins_i | {encode_strings(train[i:i + 1], v)[0]}
        members = set(encode_strings(ts.strings[ts.group_of == ts.group[i]], v).tolist())
        assert members == twins_i - t_keys
        assert ts.group_mass[ts.group[i]] == pytest.approx(sum(math.exp(logp[k]) for k in members), rel=1e-9, abs=1e-300)


@st.composite
def small_grammars(draw):
    s = draw(st.integers(2, 3))
    L = draw(st.integers(1, 3 if s == 2 else 2))
    v = draw(st.integers(2, 5))
    m = draw(st.integers(1, min(4, v ** (s - 1))))
    n_c = draw(st.integers(2, min(5, v**s // m)))
    fam = draw(st.sampled_from(["uniform", "power", "exp"]))
    dist = RuleDist(fam, a=draw(st.floats(0, 3)), xi=draw(st.floats(0.2, 5)))
    root = RuleDist("power", a=draw(st.floats(0, 2)))
    return GrammarSpec(v=v, n_c=n_c, m=m, s=s, L=L, seed=draw(st.integers(0, 2**31)), levels=dist, root=root)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(small_grammars(), st.integers(0, 2**31))
def test_twin_sets_of_random_small_grammars(spec, seed):
    g = Grammar.from_spec(spec)
    rng = np.random.default_rng(seed)
    train = g.sample(int(rng.integers(1, 40)), rng)        # i.i.d.: duplicates and twin pairs inside T happen
    check_twin_set(g, train)


def test_twin_set_when_every_twin_is_in_the_training_set():
    g = Grammar.from_spec(GrammarSpec(v=4, n_c=2, m=2, s=2, L=1))
    E = g.enumerate()                                        # the whole language: every twin is a training string
    ts = twin_set(g, E)
    assert ts.strings.shape == (0, 2) and ts.mass == 0.0 and ts.train_mass == pytest.approx(1.0)
    assert (ts.group_mass == 0).all() and (ts.group_size == 0).all()


def test_twins_refuse_invalid_strings_and_single_class_grammars():
    g = Grammar.from_spec(GrammarSpec(v=8, n_c=2, m=2, s=2, L=2))
    x = g.sample(4, np.random.default_rng(0))
    bad = x.copy()
    while g.parse(bad[2:3]).valid[0]:
        bad[2, 0] = (bad[2, 0] + 1) % 8
    with pytest.raises(ValueError, match="row 2 is not a valid string"):
        twins(g, bad)
    with pytest.raises(ValueError, match="row 2 is not a valid string"):
        twin_set(g, bad)
    one = Grammar.from_spec(GrammarSpec(v=8, n_c=1, m=2, s=2, L=2))
    with pytest.raises(ValueError, match="n_c = 1 root class: no string has a twin"):
        twins(one, one.sample(2, np.random.default_rng(0)))
    with pytest.raises(ValueError, match="mem_twin are undefined"):
        twin_set(one, one.sample(2, np.random.default_rng(0)))


# ---------------------------------------------------------------- entropy
@pytest.mark.parametrize("kw", SPECS + [dict(v=3, n_c=1, m=3, s=2, L=2)])
@pytest.mark.parametrize("tail", TAILS, ids=lambda d: d.label)
def test_string_entropy_equals_enumerated_entropy(kw, tail):
    levels = tuple(TAILS[(i + 1) % 3] if i % 2 else tail for i in range(kw["L"]))   # mixed families per level
    spec = GrammarSpec(**kw, levels=levels, root=RuleDist("exp", xi=1.3))
    p = np.array(list(brute_strings(Grammar.from_spec(spec)).values()))
    assert spec.entropy == pytest.approx(float(-(p * np.log(p)).sum()), rel=1e-10, abs=1e-12)
    parts = spec.level_entropies()
    assert parts.shape == (kw["L"],)
    assert spec.root_entropy + parts.sum() == pytest.approx(spec.entropy)


def test_level_entropies_follow_node_counts():
    spec = GrammarSpec(v=32, n_c=8, m=8, s=2, L=3, levels=RuleDist("power", a=1.0))
    h = RuleDist("power", a=1.0).entropy(8)
    np.testing.assert_allclose(spec.level_entropies(), [h, 2 * h, 4 * h])
    assert spec.root_entropy == pytest.approx(math.log(8))
    uni = GrammarSpec(v=32, n_c=8, m=8, s=2, L=3)
    assert uni.entropy == pytest.approx(math.log(uni.P_max))


def test_unique_training_set_twins_at_study_scale():
    g = Grammar.from_spec(GrammarSpec(v=16, n_c=4, m=4, s=2, L=3, levels=RuleDist("power", a=2.0)))
    check_twin_set(g, sample_unique(g, 64, seed=0))
