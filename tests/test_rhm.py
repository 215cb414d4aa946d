"""Tests of the rhm package against independent expectations (brute-force expansion, closed forms, scipy)."""
from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy import stats

from rhm import (
    Grammar,
    GrammarSpec,
    RuleDist,
    encode_strings,
    sample_heldout,
    sample_iid,
    sample_unique,
)

SMALL_SPECS = [
    dict(v=3, n_c=2, m=2, s=2, L=2),
    dict(v=4, n_c=3, m=2, s=2, L=3),
    dict(v=2, n_c=2, m=2, s=3, L=2),
    dict(v=3, n_c=1, m=3, s=2, L=2),
    dict(v=5, n_c=4, m=1, s=2, L=3),
    dict(v=4, n_c=4, m=4, s=2, L=1),
]
TAILS = [RuleDist(), RuleDist("power", a=1.5), RuleDist("exp", xi=0.7)]


# ---------------------------------------------------------------- independent reference implementations
def brute_strings(g: Grammar) -> dict[tuple[int, ...], float]:
    """Every string with its probability, by recursive expansion of the rules (no use of the grammar's algorithms)."""
    rules, L = g.to_rules(), g.spec.L

    def expand(level: int, sym: int) -> list[tuple[tuple[int, ...], float]]:
        out = []
        for k, children in enumerate(rules[level][sym]):
            p = g.probs[level][sym, k]
            if level == L - 1:
                out.append((tuple(int(c) for c in children), p))
                continue
            parts = [expand(level + 1, int(c)) for c in children]
            for combo in itertools.product(*parts):
                out.append((sum((t for t, _ in combo), ()), p * math.prod(q for _, q in combo)))
        return out

    table: dict[tuple[int, ...], float] = {}
    for c in range(g.spec.n_c):
        for string, p in expand(0, c):
            assert string not in table, "two derivations of one string"
            table[string] = g.root_probs[c] * p
    return table


def regenerate(g: Grammar, parse) -> np.ndarray:
    """Rebuild the leaves top-down from a parse's symbols/productions and the interop rules."""
    rules, s = g.to_rules(), g.spec.s
    for level in range(g.spec.L):
        children = rules[level][parse.symbols[level], parse.productions[level]]  # (n, s**l, s)
        children = children.reshape(len(parse.valid), -1)
        if level + 1 < g.spec.L:
            assert np.array_equal(children, parse.symbols[level + 1])
    assert children.shape[1] == s**g.spec.L
    return children


# ---------------------------------------------------------------- spec and rule distributions
def test_rule_dist_probs_match_closed_forms():
    k = np.arange(1, 7)
    np.testing.assert_allclose(RuleDist().probs(6), np.full(6, 1 / 6))
    w = k**-1.3
    np.testing.assert_allclose(RuleDist("power", a=1.3).probs(6), w / w.sum())
    w = np.exp(-k / 0.5)
    np.testing.assert_allclose(RuleDist("exp", xi=0.5).probs(6), w / w.sum())
    np.testing.assert_allclose(RuleDist("power", a=0.0).probs(5), np.full(5, 0.2))
    steep = RuleDist("power", a=2000.0)
    assert np.isfinite(steep.log_probs(4)).all() and steep.probs(4).sum() == pytest.approx(1.0)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(family="cauchy"), "family"),
        (dict(family="power", a=-0.5), "a must"),
        (dict(family="power", a=float("nan")), "a must"),
        (dict(family="power", a=float("inf")), "a must"),
        (dict(family="exp", xi=0.0), "xi must"),
        (dict(family="exp", xi=-1.0), "xi must"),
        (dict(family="exp", xi=float("nan")), "xi must"),
    ],
)
def test_rule_dist_rejects_bad_values(kwargs, match):
    with pytest.raises(ValueError, match=match):
        RuleDist(**kwargs)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(v=4, n_c=2, m=5, s=2, L=2), r"v\*m"),  # 20 > 16
        (dict(v=3, n_c=5, m=2, s=2, L=2), r"n_c\*m"),  # 10 > 9
        (dict(v=4, n_c=2, m=2, s=1, L=2), "s must be an integer >= 2"),
        (dict(v=4, n_c=2, m=2, s=2, L=0), "L must be an integer >= 1"),
        (dict(v=0, n_c=2, m=2, s=2, L=2), "v must"),
        (dict(v=4, n_c=0, m=2, s=2, L=2), "n_c must"),
        (dict(v=4, n_c=2, m=0, s=2, L=2), "m must"),
        (dict(v=4.0, n_c=2, m=2, s=2, L=2), "v must be an integer"),
        (dict(v=4, n_c=2, m=2, s=2, L=2, seed=-1), "seed must"),
        (dict(v=4, n_c=2, m=2, s=2, L=2, levels=(RuleDist(),)), "levels must"),
        (dict(v=4, n_c=2, m=2, s=2, L=2, levels="power"), "levels must"),
        (dict(v=4, n_c=2, m=2, s=2, L=2, root="uniform"), "root must"),
    ],
)
def test_grammar_spec_rejects_bad_values(kwargs, match):
    with pytest.raises(ValueError, match=match):
        GrammarSpec(**kwargs)


def test_grammar_spec_normalizes_levels_and_counts():
    spec = GrammarSpec(v=np.int64(8), n_c=4, m=2, s=2, L=3, levels=[RuleDist("power", a=1.0)] * 3)
    assert isinstance(spec.v, int) and spec.levels == (RuleDist("power", a=1.0),) * 3
    assert GrammarSpec(v=8, n_c=4, m=2, s=2, L=3).levels == (RuleDist(),) * 3
    assert spec.d == 8 and spec.P_max == 4 * 2**7
    big = GrammarSpec(v=32, n_c=32, m=8, s=2, L=6)
    assert big.P_max == 32 * 8**63 and isinstance(big.P_max, int)


# ---------------------------------------------------------------- enumeration, bijection, likelihood
@pytest.mark.parametrize("kw", SMALL_SPECS)
@pytest.mark.parametrize("tail", TAILS)
def test_enumeration_matches_brute_force(kw, tail):
    g = Grammar.from_spec(GrammarSpec(**kw, seed=3, levels=tail, root=tail))
    table = brute_strings(g)
    assert g.spec.P_max == len(table) == kw["n_c"] * kw["m"] ** ((kw["s"] ** kw["L"] - 1) // (kw["s"] - 1))
    E = g.enumerate()
    assert E.shape == (g.spec.P_max, g.spec.d) and E.dtype == np.int64
    assert {tuple(r) for r in E.tolist()} == set(table)  # all rows distinct and exactly the language
    assert np.array_equal(g.index_of(E), np.arange(g.spec.P_max))
    assert np.array_equal(g.string_at(np.arange(g.spec.P_max)), E)
    ll = g.loglik(E)
    assert np.exp(ll).sum() == pytest.approx(1.0, abs=1e-12)
    np.testing.assert_allclose(np.exp(ll), [table[tuple(r)] for r in E.tolist()], rtol=1e-10)


def test_enumeration_refuses_large_grammars():
    g = Grammar.from_spec(GrammarSpec(v=16, n_c=16, m=4, s=2, L=4))
    with pytest.raises(ValueError, match="P_max = 17179869184 is too large"):
        g.enumerate()
    with pytest.raises(ValueError, match="max_rows = 100"):
        Grammar.from_spec(GrammarSpec(v=4, n_c=2, m=2, s=2, L=3)).enumerate(max_rows=100)
    with pytest.raises(ValueError, match="outside"):
        g.string_at([g.spec.P_max])
    huge = Grammar.from_spec(GrammarSpec(v=16, n_c=16, m=4, s=2, L=6))
    with pytest.raises(ValueError, match="2\\*\\*63"):
        huge.index_of(huge.sample(2, np.random.default_rng(0)))
    assert huge.parse(huge.sample(5, np.random.default_rng(0))).valid.all()  # parsing still works


def test_index_bijection_on_large_grammar():
    g = Grammar.from_spec(GrammarSpec(v=16, n_c=16, m=4, s=2, L=4, levels=RuleDist("power", a=1.0)))
    x = g.sample(2000, np.random.default_rng(1))
    idx = g.index_of(x)
    assert idx.min() >= 0 and idx.max() < g.spec.P_max
    assert np.array_equal(g.string_at(idx), x)
    rand_idx = np.random.default_rng(2).integers(0, g.spec.P_max, 2000)
    assert np.array_equal(g.index_of(g.string_at(rand_idx)), rand_idx)


# ---------------------------------------------------------------- parsing
@pytest.mark.parametrize("kw", SMALL_SPECS[:4])
def test_parser_agrees_with_membership(kw):
    g = Grammar.from_spec(GrammarSpec(**kw, seed=11))
    lang = set(brute_strings(g))
    rng = np.random.default_rng(0)
    d, v = g.spec.d, g.spec.v
    uniform = rng.integers(0, v, (3000, d))  # mostly invalid
    valid = g.sample(1000, rng)
    mutated = valid.copy()
    pos = rng.integers(0, d, len(mutated))
    mutated[np.arange(len(mutated)), pos] = rng.integers(0, v, len(mutated))  # often invalid, sometimes valid
    x = np.concatenate([uniform, valid, mutated])
    p = g.parse(x)
    truth = np.array([tuple(r) in lang for r in x.tolist()])
    assert 0 < truth.mean() < 1
    assert np.array_equal(p.valid, truth)
    assert np.array_equal(p.valid, p.level_valid[:, 0])
    assert np.array_equal(p.root >= 0, truth)
    assert np.array_equal(np.isfinite(g.loglik(x)), truth)
    # level_valid is monotone: valid at level l implies valid at every deeper level
    assert (p.level_valid[:, :-1] <= p.level_valid[:, 1:]).all()
    for level in range(g.spec.L):
        derivable = (p.productions[level] >= 0).all(1)
        assert np.array_equal(derivable, p.level_valid[:, level])
        assert np.array_equal(p.ids[level], np.where(p.symbols[level] >= 0, p.symbols[level] * g.spec.m
                                                     + p.productions[level], -1))


def test_level_valid_on_partially_valid_strings():
    g = Grammar.from_spec(GrammarSpec(v=8, n_c=2, m=2, s=2, L=3, seed=5))
    rules = g.to_rules()
    used = {tuple(r) for r in rules[2].reshape(-1, 2).tolist()}
    bad = next(t for t in itertools.product(range(8), repeat=2) if t not in used)
    x = g.sample(1, np.random.default_rng(0))
    x[0, 2:4] = bad  # leaf block invalid -> nothing valid
    p = g.parse(x)
    assert p.level_valid.tolist() == [[False, False, False]]
    # every leaf block valid but the level-2 symbols spell no level-1 right-hand side
    used1 = {tuple(r) for r in rules[1].reshape(-1, 2).tolist()}
    bad1 = next(t for t in itertools.product(range(8), repeat=2) if t not in used1)
    y = np.concatenate([rules[2][bad1[0], 0], rules[2][bad1[1], 0], rules[2][0, 0], rules[2][0, 0]])[None]
    p = g.parse(y)
    assert p.level_valid.tolist() == [[False, False, True]]
    assert p.symbols[2][0].tolist() == [bad1[0], bad1[1], 0, 0] and p.symbols[1][0, 0] == -1


@pytest.mark.parametrize("tail", TAILS)
def test_samples_parse_and_regenerate(tail):
    g = Grammar.from_spec(GrammarSpec(v=16, n_c=16, m=4, s=2, L=4, seed=2, levels=tail, root=tail))
    x = g.sample(5000, np.random.default_rng(0))
    assert x.shape == (5000, 16) and x.dtype == np.int64 and x.min() >= 0 and x.max() < 16
    p = g.parse(x)
    assert p.valid.all() and p.level_valid.all()
    assert np.array_equal(regenerate(g, p), x)
    assert np.array_equal(p.root, p.symbols[0][:, 0])


def test_parse_accepts_torch_and_single_string():
    import torch
    g = Grammar.from_spec(GrammarSpec(v=6, n_c=3, m=3, s=2, L=3))
    x = g.sample(10, np.random.default_rng(0))
    assert g.parse(torch.from_numpy(x)).valid.all()
    assert g.parse(x[0]).valid.shape == (1,)
    np.testing.assert_array_equal(g.loglik(x.astype(np.uint8)), g.loglik(x))


@pytest.mark.parametrize(
    "x, match",
    [
        (np.zeros((3, 7), dtype=np.int64), r"shape \(n, d\) with d = 8"),
        (np.zeros((2, 2, 8), dtype=np.int64), "shape"),
        (np.full((3, 8), 6), r"symbol 6 .*\[0, 6\)"),
        (np.full((3, 8), -1), r"symbol -1 .*\[0, 6\)"),
        (np.zeros((3, 8), dtype=np.float64), "integer"),
    ],
)
def test_bad_strings_rejected(x, match):
    g = Grammar.from_spec(GrammarSpec(v=6, n_c=3, m=3, s=2, L=3))
    for fn in (g.parse, g.loglik, g.index_of, g.production_counts):
        with pytest.raises(ValueError, match=match):
            fn(x)
    with pytest.raises(ValueError, match=match):
        g.prototypicality(x, g.sample(4, np.random.default_rng(0)))


def test_index_of_rejects_invalid_strings():
    g = Grammar.from_spec(GrammarSpec(v=6, n_c=3, m=3, s=2, L=3))
    x = np.random.default_rng(0).integers(0, 6, (50, 8))
    x = x[~g.parse(x).valid]
    with pytest.raises(ValueError, match="row 0 is not a valid string"):
        g.index_of(x)


# ---------------------------------------------------------------- rule statistics
@pytest.mark.parametrize("tail", [RuleDist(), RuleDist("power", a=1.0), RuleDist("exp", xi=2.0)])
def test_production_frequencies_match_rule_probabilities(tail):
    spec = GrammarSpec(v=8, n_c=4, m=4, s=2, L=3, seed=7, levels=tail, root=RuleDist("power", a=0.5))
    g = Grammar.from_spec(spec)
    # probability rows are the family's closed form, permuted per parent
    k = np.arange(1, 5)
    w = {"uniform": np.ones(4), "power": k**-1.0, "exp": np.exp(-k / 2.0)}[tail.family]
    for level in range(3):
        np.testing.assert_allclose(np.sort(g.probs[level], 1)[:, ::-1], np.tile(w / w.sum(), (spec.n_parents(level), 1)))
    x = sample_iid(g, 40_000, seed=0)
    counts = g.production_counts(x)
    for level, c in enumerate(counts):
        assert c.shape == (spec.n_parents(level), 4) and c.dtype == np.int64
        assert c.sum() == 40_000 * 2**level
        parents = c.sum(1)
        seen = parents > 0
        expected = parents[seen, None] * g.probs[level][seen]
        chi2 = ((c[seen] - expected) ** 2 / expected).sum()
        pval = stats.chi2.sf(chi2, df=seen.sum() * 3)
        assert pval > 1e-3, (level, pval)
    roots = np.bincount(g.parse(x).root, minlength=4)
    wr = np.arange(1, 5) ** -0.5
    np.testing.assert_allclose(np.sort(g.root_probs)[::-1], wr / wr.sum())
    assert stats.chisquare(roots, 40_000 * g.root_probs).pvalue > 1e-3


def test_same_seed_different_tails_share_rules_and_ranks():
    base = dict(v=8, n_c=4, m=4, s=2, L=3, seed=9)
    g1 = Grammar.from_spec(GrammarSpec(**base))
    g2 = Grammar.from_spec(GrammarSpec(**base, levels=RuleDist("power", a=1.0)))
    for a, b in zip(g1.to_rules(), g2.to_rules()):
        assert np.array_equal(a, b)
    for a, b in zip(g1.rank_to_index, g2.rank_to_index):
        assert np.array_equal(a, b)
    assert np.array_equal(np.argmax(g2.probs[1], 1), g2.rank_to_index[1][:, 0])
    g3 = Grammar.from_spec(GrammarSpec(**{**base, "seed": 10}))
    assert any(not np.array_equal(a, b) for a, b in zip(g1.to_rules(), g3.to_rules()))


def test_prototypicality_matches_direct_computation():
    g = Grammar.from_spec(GrammarSpec(v=6, n_c=3, m=3, s=2, L=3, levels=RuleDist("power", a=1.0)))
    ref = sample_iid(g, 300, seed=1)
    x = np.concatenate([sample_iid(g, 20, seed=2), np.zeros((1, 8), dtype=np.int64)])
    overall, per_level = g.prototypicality(x, ref)
    assert overall.shape == (21,) and per_level.shape == (21, 3)
    rp = g.parse(ref)
    xp = g.parse(x)
    for i in range(20):
        all_logs = []
        for level in range(3):
            pairs = list(zip(rp.symbols[level].ravel().tolist(), rp.productions[level].ravel().tolist()))
            K = g.spec.n_parents(level) * 3
            logs = [math.log((pairs.count((s, k)) + 1) / (len(pairs) + K))
                    for s, k in zip(xp.symbols[level][i].tolist(), xp.productions[level][i].tolist())]
            assert per_level[i, level] == pytest.approx(np.mean(logs))
            all_logs += logs
        assert overall[i] == pytest.approx(np.mean(all_logs))
    if not xp.valid[20]:
        assert np.isnan(overall[20])
    # a string's most common parts make it more prototypical: the empirical mode beats a rare string
    assert overall[:20].max() > overall[:20].min()


# ---------------------------------------------------------------- training sets
def test_iid_sets_are_reproducible():
    g = Grammar.from_spec(GrammarSpec(v=8, n_c=4, m=2, s=2, L=3))
    assert np.array_equal(sample_iid(g, 100, seed=4), sample_iid(g, 100, seed=4))
    assert not np.array_equal(sample_iid(g, 100, seed=4), sample_iid(g, 100, seed=5))
    assert sample_iid(g, 0, seed=0).shape == (0, 8)


@pytest.mark.parametrize("tail", TAILS)
def test_unique_and_heldout_sets(tail):
    g = Grammar.from_spec(GrammarSpec(v=8, n_c=4, m=2, s=2, L=3, levels=tail))
    train = sample_unique(g, 300, seed=0)
    assert train.shape == (300, 8) and g.parse(train).valid.all()
    assert len(np.unique(train, axis=0)) == 300
    assert np.array_equal(train, sample_unique(g, 300, seed=0))
    held = sample_heldout(g, 200, train, seed=1)
    assert held.shape == (200, 8) and g.parse(held).valid.all()
    assert not np.isin(encode_strings(held, 8), encode_strings(train, 8)).any()
    held_u = sample_heldout(g, 100, train, seed=1, unique=True)
    assert len(np.unique(held_u, axis=0)) == 100
    assert not np.isin(encode_strings(held_u, 8), encode_strings(train, 8)).any()


def test_unique_set_can_exhaust_a_small_grammar():
    g = Grammar.from_spec(GrammarSpec(v=3, n_c=2, m=2, s=2, L=2))
    full = sample_unique(g, g.spec.P_max, seed=0)
    assert {tuple(r) for r in full.tolist()} == {tuple(r) for r in g.enumerate().tolist()}
    with pytest.raises(ValueError, match="exceeds P_max = 16"):
        sample_unique(g, 17, seed=0)
    with pytest.raises(ValueError, match="all P_max = 16"):
        sample_heldout(g, 1, full, seed=0)
    with pytest.raises(ValueError, match="only P_max - \\|exclude\\| = 6"):
        sample_heldout(g, 7, full[:10], seed=0, unique=True)


def test_unreachable_unique_set_raises_with_count():
    # steep exponential tail: most strings have vanishing probability; P close to P_max cannot be reached
    spec = GrammarSpec(v=8, n_c=2, m=4, s=2, L=3, levels=RuleDist("exp", xi=0.1))
    g = Grammar.from_spec(spec)
    with pytest.raises(ValueError, match=r"could only find \d+ of the 30000 requested distinct strings"):
        sample_unique(g, 30_000, seed=0)
    with pytest.raises(ValueError, match="could only find"):
        sample_unique(g, 500, seed=0, max_draws=2000)


def test_sets_reject_bad_arguments():
    g = Grammar.from_spec(GrammarSpec(v=8, n_c=4, m=2, s=2, L=3))
    with pytest.raises(ValueError, match="P must be an integer >= 0"):
        sample_iid(g, -1, seed=0)
    with pytest.raises(ValueError, match="seed must"):
        sample_unique(g, 10, seed=-2)
    with pytest.raises(ValueError, match="exclude must have shape"):
        sample_heldout(g, 10, np.zeros((4, 5), dtype=np.int64), seed=0)
    with pytest.raises(ValueError, match="g must be a Grammar"):
        sample_iid("grammar", 10, seed=0)


# ---------------------------------------------------------------- interop
def test_from_rules_round_trip_and_public_layout():
    spec = GrammarSpec(v=6, n_c=3, m=3, s=2, L=3, seed=4, levels=RuleDist("power", a=1.0))
    g = Grammar.from_spec(spec)
    rules = g.to_rules()
    assert [r.shape for r in rules] == [(3, 3, 2), (6, 3, 2), (6, 3, 2)]
    g2 = Grammar.from_rules(rules, levels=spec.levels, root=spec.root, seed=spec.seed)
    assert g2.spec == spec
    for a, b in zip(rules, g2.to_rules()):
        assert np.array_equal(a, b)
    for a, b in zip(g.probs, g2.probs):
        assert np.array_equal(a, b)
    x = g.sample(100, np.random.default_rng(0))
    assert np.array_equal(g.loglik(x), g2.loglik(x))
    rules[0][0, 0, 0] = 99  # to_rules returns copies
    assert g.rules[0][0, 0, 0] != 99
    one = Grammar.from_rules([np.array([[[0, 1], [2, 3]]])], v=5)  # L = 1 needs v explicitly (or max + 1)
    assert one.spec.v == 5 and one.spec.P_max == 2


def test_from_rules_rejects_bad_arrays():
    g = Grammar.from_spec(GrammarSpec(v=6, n_c=3, m=3, s=2, L=3))
    rules = g.to_rules()
    dup = [r.copy() for r in rules]
    dup[1][2, 1] = dup[1][4, 0]
    with pytest.raises(ValueError, match=r"rules\[1\] repeats the right-hand side"):
        Grammar.from_rules(dup)
    out = [r.copy() for r in rules]
    out[2][0, 0, 1] = 6
    with pytest.raises(ValueError, match=r"rules\[2\] has symbol 6 outside the alphabet \[0, 6\)"):
        Grammar.from_rules(out)
    with pytest.raises(ValueError, match=r"rules\[2\] must have shape \(v, m, s\) = \(6, 3, 2\)"):
        Grammar.from_rules([rules[0], rules[1], rules[2][:, :2]])
    with pytest.raises(ValueError, match="3 dimensions"):
        Grammar.from_rules([rules[0][0]])
    with pytest.raises(ValueError, match="non-empty list"):
        Grammar.from_rules([])
    with pytest.raises(ValueError, match="s must be an integer >= 2"):
        Grammar.from_rules([np.zeros((2, 1, 1), dtype=np.int64)])
    with pytest.raises(ValueError, match="integer"):
        Grammar.from_rules([r.astype(float) for r in rules])


# ---------------------------------------------------------------- keys
def test_encode_strings_equality_and_order():
    rng = np.random.default_rng(0)
    for v, d in [(4, 8), (16, 16), (16, 32), (300, 4), (70000, 2)]:
        x = rng.integers(0, min(v, 3), (400, d))  # small effective alphabet -> many duplicate rows
        x[:, 0] = rng.integers(v - 2, v, 400)
        keys = encode_strings(x, v)
        assert keys.shape == (400,)
        same_rows = (x[:, None, :] == x[None, :, :]).all(-1)
        assert np.array_equal(keys[:, None] == keys[None, :], same_rows)
        assert len({k for k in keys.tolist()}) == len(np.unique(x, axis=0))
        order = np.argsort(keys, kind="stable")
        assert np.array_equal(x[order], x[np.lexsort(x.T[::-1])])
    assert encode_strings(np.zeros((3, 16), dtype=np.int64), 16).dtype == np.uint64
    assert encode_strings(np.zeros((3, 17), dtype=np.int64), 16).dtype.kind == "S"
    top = np.full((2, 16), 15)
    top[1, -1] = 14
    keys = encode_strings(top, 16)
    assert keys[0] == np.iinfo(np.uint64).max and keys[1] < keys[0]


# ---------------------------------------------------------------- property-based
@st.composite
def small_specs(draw):
    s = draw(st.integers(2, 3))
    v = draw(st.integers(2, 5))
    L = draw(st.integers(1, 3 if s == 2 else 2))
    m = draw(st.integers(1, v ** (s - 1)))
    n_c = draw(st.integers(1, max(1, min(6, v**s // m))))
    fam = draw(st.sampled_from(["uniform", "power", "exp"]))
    dist = RuleDist(fam, a=draw(st.floats(0, 3)), xi=draw(st.floats(0.2, 5)))
    spec = GrammarSpec(v=v, n_c=n_c, m=m, s=s, L=L, seed=draw(st.integers(0, 2**31)), levels=dist, root=dist)
    if spec.P_max > 5000:
        m = 1
        spec = GrammarSpec(v=v, n_c=n_c, m=1, s=s, L=L, seed=spec.seed, levels=dist, root=dist)
    return spec


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(small_specs())
def test_properties_of_random_small_grammars(spec):
    g = Grammar.from_spec(spec)
    E = g.enumerate()
    assert len(E) == spec.P_max == len(np.unique(encode_strings(E, spec.v)))
    assert np.array_equal(g.index_of(E), np.arange(spec.P_max))
    assert np.exp(g.loglik(E)).sum() == pytest.approx(1.0, abs=1e-9)
    p = g.parse(E)
    assert p.valid.all()
    assert np.array_equal(regenerate(g, p), E)
    x = g.sample(64, np.random.default_rng(spec.seed))
    assert g.parse(x).valid.all()
    g2 = Grammar.from_rules(g.to_rules(), levels=spec.levels, root=spec.root, seed=spec.seed, v=spec.v)
    assert g2.spec == spec and all(np.array_equal(a, b) for a, b in zip(g.probs, g2.probs))
    counts = g.production_counts(E)
    assert [c.sum() for c in counts] == [spec.P_max * spec.s**level for level in range(spec.L)]
    # random strings: parser agrees with membership in the enumeration
    r = np.random.default_rng(0).integers(0, spec.v, (200, spec.d))
    member = np.isin(encode_strings(r, spec.v), encode_strings(E, spec.v))
    assert np.array_equal(g.parse(r).valid, member)


# ---------------------------------------------------------------- edge cases and the sparse parse path
def test_sparse_parse_tables_agree_with_dense(monkeypatch):
    import rhm.grammar as grammar_mod

    spec = GrammarSpec(v=10, n_c=3, m=4, s=3, L=3, seed=1, levels=RuleDist("power", a=1.0))
    dense = Grammar.from_spec(spec)
    monkeypatch.setattr(grammar_mod, "DENSE_TABLE_MAX", 0)
    sparse = Grammar.from_spec(spec)
    assert sparse._tables[0][0] == "sorted" and dense._tables[0][0] == "dense"
    rng = np.random.default_rng(0)
    x = np.concatenate([dense.sample(500, rng), rng.integers(0, 10, (500, 27))])
    x[600:700, :9] = x[:100, :9]  # partly valid strings
    pd, ps = dense.parse(x), sparse.parse(x)
    assert 0 < pd.valid.mean() < 1
    assert np.array_equal(pd.level_valid, ps.level_valid)
    for a, b in zip(pd.ids, ps.ids):
        assert np.array_equal(a, b)
    assert np.array_equal(dense.loglik(x), sparse.loglik(x))


def test_empty_batches():
    g = Grammar.from_spec(GrammarSpec(v=6, n_c=3, m=3, s=2, L=3))
    empty = np.zeros((0, 8), dtype=np.int64)
    assert g.sample(0, np.random.default_rng(0)).shape == (0, 8)
    p = g.parse(empty)
    assert p.valid.shape == (0,) and p.level_valid.shape == (0, 3) and p.symbols[2].shape == (0, 4)
    assert g.loglik(empty).shape == (0,) and g.index_of(empty).shape == (0,)
    assert [c.sum() for c in g.production_counts(empty)] == [0, 0, 0]
    overall, per_level = g.prototypicality(g.sample(3, np.random.default_rng(0)), empty)
    np.testing.assert_allclose(per_level, np.log(1 / np.array([9, 18, 18]))[None].repeat(3, 0))
    assert sample_unique(g, 0, seed=0).shape == (0, 8)
    assert sample_heldout(g, 5, empty, seed=0).shape == (5, 8)
