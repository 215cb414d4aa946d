"""analysis.metrics against brute-force references on small random cases (ties, duplicates, invalid strings)."""
from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.stats
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from analysis.hamming import _nn_matches_torch
from analysis.metrics import (
    CURVE_METRICS,
    LEVEL_METRICS,
    TrainIndex,
    copy_counts,
    evaluate,
    grammar_production_probs,
    index_training_set,
    near_copy,
    nn_hamming,
    slop_metrics,
    spearman,
)
from rhm import Grammar, GrammarSpec, RuleDist, encode_strings, sample_iid

SETTINGS = settings(max_examples=40, deadline=None)


# ------------------------------------------------------------------------------------------------ strategies
@st.composite
def token_pair(draw, max_d: int = 6, max_v: int = 4, max_n: int = 12, max_p: int = 12, min_p: int = 0):
    """(generated, train) small int64 arrays drawn from a small pool, so duplicates and ties are common."""
    d = draw(st.integers(1, max_d))
    v = draw(st.integers(2, max_v))
    seed = draw(st.integers(0, 2**31 - 1))
    rng = np.random.default_rng(seed)
    pool = rng.integers(0, v, (draw(st.integers(1, 8)), d))
    P = draw(st.integers(min_p, max_p))
    N = draw(st.integers(1, max_n))
    train = np.concatenate([pool[rng.integers(0, len(pool), P // 2)], rng.integers(0, v, (P - P // 2, d))])
    gen = np.concatenate([pool[rng.integers(0, len(pool), N // 2)], rng.integers(0, v, (N - N // 2, d))])
    return rng.permutation(gen), rng.permutation(train), v


def _dist_matrix(gen: np.ndarray, train: np.ndarray) -> np.ndarray:
    return (gen[:, None, :] != train[None, :, :]).sum(-1)


# ------------------------------------------------------------------------------------------------ copies
@SETTINGS
@given(token_pair())
def test_copy_counts_match_double_loop(case):
    gen, train, v = case
    is_copy, counts = copy_counts(gen, train, v=v)
    ref_copy = [any(list(a) == list(b) for b in train) for a in gen]
    ref_counts = [sum(list(a) == list(b) for a in gen) for b in train]
    assert is_copy.dtype == bool and counts.dtype == np.int64
    assert is_copy.tolist() == ref_copy
    assert counts.tolist() == ref_counts
    t_copy, t_counts = copy_counts(torch.from_numpy(gen), torch.from_numpy(train), v=v)
    assert np.array_equal(t_copy, is_copy) and np.array_equal(t_counts, counts)


def test_copy_counts_long_strings_use_byte_keys():
    """d*bits > 63: keys are byte strings; results must still be exact."""
    rng = np.random.default_rng(0)
    train = rng.integers(0, 300, (50, 40))
    gen = np.concatenate([train[:7], train[:3], rng.integers(0, 300, (5, 40))])
    is_copy, counts = copy_counts(gen, train)
    assert is_copy.tolist() == [True] * 10 + [False] * 5
    assert counts[:3].tolist() == [2, 2, 2] and counts[3:7].tolist() == [1] * 4 and counts[7:].sum() == 0


# ------------------------------------------------------------------------------------------------ Hamming
@SETTINGS
@given(token_pair(min_p=2), st.sampled_from([1, 2, 3, 5, 4096]))
def test_nn_hamming_matches_sorted_distance_matrix(case, chunk):
    gen, train, v = case
    d1, d2 = nn_hamming(gen, train, chunk=chunk, v=v)
    ref = np.sort(_dist_matrix(gen, train), axis=1)
    assert np.array_equal(d1, ref[:, 0]) and np.array_equal(d2, ref[:, 1])
    assert (d1 <= d2).all()
    td1, td2 = nn_hamming(torch.from_numpy(gen), torch.from_numpy(train), chunk=chunk, v=v)
    assert np.array_equal(td1, d1) and np.array_equal(td2, d2)


def test_nn_hamming_blocks_of_generated_strings():
    """Many generated strings: several generated blocks per training block, all merged correctly."""
    rng = np.random.default_rng(3)
    train = rng.integers(0, 3, (300, 7))
    gen = np.concatenate([train[:100], rng.integers(0, 3, (500, 7))])
    d1, d2 = nn_hamming(gen, train, chunk=64)
    ref = np.sort(_dist_matrix(gen, train), axis=1)
    assert np.array_equal(d1, ref[:, 0]) and np.array_equal(d2, ref[:, 1])


def test_nn_hamming_duplicates_and_small_training_sets():
    train = np.array([[0, 1, 2], [0, 1, 2], [2, 2, 2]])
    d1, d2 = nn_hamming(np.array([[0, 1, 2], [0, 1, 1]]), train)
    assert d1.tolist() == [0, 1] and d2.tolist() == [0, 1]
    d1, d2 = nn_hamming(np.array([[0, 1, 2]]), train[2:])
    assert d1.tolist() == [2] and d2.tolist() == [math.inf]
    d1, d2 = nn_hamming(np.array([[0, 1, 2]]), train[:0])
    assert np.isinf(d1).all() and np.isinf(d2).all()


@SETTINGS
@given(token_pair(min_p=2))
def test_near_copy_frac_brute_force(case):
    gen, train, v = case
    d1, d2 = nn_hamming(gen, train, v=v)
    ref = []
    for row in np.sort(_dist_matrix(gen, train), axis=1):
        a, b = int(row[0]), int(row[1])
        ref.append(True if b == 0 else a / b < 1 / 3)  # d1 = d2 = 0: exact copy of a duplicated string
    assert near_copy(d1, d2).tolist() == ref


@SETTINGS
@given(token_pair(min_p=2), st.sampled_from([2, 3, 4096, None]))
def test_torch_onehot_kernel_matches_distance_matrix(case, p_chunk):
    """The GPU kernel (one-hot matrix products, running top-2), run here on CPU tensors."""
    gen, train, v = case
    best = _nn_matches_torch(torch.from_numpy(gen), torch.from_numpy(train), v, p_chunk).numpy()
    ref = np.sort(_dist_matrix(gen, train), axis=1)
    d = gen.shape[1]
    assert np.array_equal(d - best[:, 0], ref[:, 0]) and np.array_equal(d - best[:, 1], ref[:, 1])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_nn_hamming_cuda_matches_cpu():
    rng = np.random.default_rng(5)
    train = rng.integers(0, 4, (3000, 9))
    gen = np.concatenate([train[:50], train[:50], rng.integers(0, 4, (400, 9))])
    cpu = nn_hamming(gen, train)
    gpu = nn_hamming(torch.from_numpy(gen).cuda(), torch.from_numpy(train).cuda())
    assert np.array_equal(cpu[0], gpu[0]) and np.array_equal(cpu[1], gpu[1])


# ------------------------------------------------------------------------------------------------ slop and ranks
def test_slop_metrics_definitions():
    rng = np.random.default_rng(0)
    train = rng.integers(0, 20, (3, 4)).astype(float)
    train[0, 0] = 50
    ref = rng.random((3, 4))
    ref /= ref.sum()                                  # the null's frequencies among the level's nodes
    same = slop_metrics(train, train, train / train.sum())
    assert same["overprod"] == pytest.approx(0.0, abs=1e-12)
    assert same["entropy_ratio"] == pytest.approx(1.0)
    # generated counts proportional to the null's: no over-production, and KL(gen || null) is zero
    gen = ref * 1000.0
    faithful = slop_metrics(gen, train, ref)
    assert faithful["overprod"] == pytest.approx(0.0, abs=1e-12)
    assert faithful["kl_gen_grammar"] == pytest.approx(0.0, abs=1e-12)
    probs = ref / ref.sum(1, keepdims=True)
    # Brute-force KL against eps-smoothed training conditionals, and the over-production of the top quarter.
    gen = rng.integers(0, 20, (3, 4)).astype(float)
    gen[1, 2] = 0
    res = slop_metrics(gen, train, ref, q=0.25, eps=0.5)
    kl = 0.0
    for a in range(3):
        for k in range(4):
            if gen[a, k] > 0:
                pg = gen[a, k] / gen[a].sum()
                pt = (train[a, k] + 0.5) / (train[a].sum() + 4 * 0.5)
                kl += gen[a].sum() / gen.sum() * pg * math.log(pg / pt)
    assert res["kl_gen_train"] == pytest.approx(kl)
    flat_t = train.ravel()
    thr = sorted(flat_t, reverse=True)[2]  # ceil(0.25 * 12) = 3rd largest, ties included
    common = (flat_t >= thr) & (flat_t > 0)
    want = (gen.ravel()[common].sum() / gen.sum()) / ref.ravel()[common].sum() - 1
    assert res["overprod"] == pytest.approx(want)
    kl_null = sum(gen[a].sum() / gen.sum() * scipy.stats.entropy(gen[a] / gen[a].sum(), probs[a])
                  for a in range(3) if gen[a].sum() > 0)
    assert res["kl_gen_grammar"] == pytest.approx(kl_null)

    def cond_h(c):
        return sum(c[a].sum() / c.sum() * scipy.stats.entropy(c[a]) for a in range(len(c)) if c[a].sum() > 0)

    assert res["entropy_ratio"] == pytest.approx(cond_h(gen) / cond_h(train))
    empty = slop_metrics(np.zeros((3, 4)), train, ref)
    assert all(math.isnan(x) for x in empty.values())


@SETTINGS
@given(st.lists(st.integers(0, 3), min_size=2, max_size=30), st.integers(0, 2**31 - 1))
def test_spearman_matches_scipy(a, seed):
    b = np.random.default_rng(seed).normal(size=len(a))
    a = np.asarray(a, dtype=float)
    got = spearman(a, b)
    if np.unique(a).size < 2:
        assert math.isnan(got)
    else:
        assert got == pytest.approx(scipy.stats.spearmanr(a, b).statistic, abs=1e-9)


# ------------------------------------------------------------------------------------------------ grammar metrics
def _small_grammar(seed: int = 0, a: float = 1.0) -> Grammar:
    # P_max = 2 * 2**3 = 16 strings of length 4 among 3**4 = 81.
    return Grammar.from_spec(GrammarSpec(v=3, n_c=2, m=2, s=2, L=2, seed=seed, levels=RuleDist("power", a=a),
                                         root=RuleDist("power", a=0.5)))


def _ref_parse(g: Grammar, x: np.ndarray):
    """Brute-force bottom-up parse of one string from the interop rules: (level_ok list[L], ids per level)."""
    sp = g.spec
    table = [{tuple(int(c) for c in g.rules[lv][a, k]): (a, k) for a in range(sp.n_parents(lv)) for k in range(sp.m)}
             for lv in range(sp.L)]
    cur = [int(c) for c in x]
    ok = [False] * sp.L
    ids: list[list[int]] = [[] for _ in range(sp.L)]
    alive = True
    for lv in range(sp.L - 1, -1, -1):
        nxt = []
        for j in range(0, len(cur), sp.s):
            block = tuple(cur[j : j + sp.s])
            hit = table[lv].get(block) if alive and -1 not in block else None
            nxt.append(hit[0] if hit else -1)
            ids[lv].append(hit[0] * sp.m + hit[1] if hit else -1)
        alive = alive and all(c >= 0 for c in nxt)
        ok[lv] = alive
        cur = nxt
    return ok, ids


@pytest.fixture(scope="module")
def small():
    g = _small_grammar()
    everything = np.array(np.meshgrid(*[np.arange(3)] * 4, indexing="ij")).reshape(4, -1).T
    return g, {tuple(r) for r in g.enumerate().tolist()}, everything


@SETTINGS
@given(st.integers(0, 2**31 - 1), st.integers(1, 20), st.integers(1, 25))
def test_evaluate_against_brute_force(small, seed, P, N):
    g, language, everything = small
    sp = g.spec
    rng = np.random.default_rng(seed)
    train = sample_iid(g, P, seed)  # i.i.d.: duplicates likely
    gen = np.concatenate([train[rng.integers(0, P, N // 3)], g.sample(N // 3, rng),
                          everything[rng.integers(0, len(everything), N - 2 * (N // 3))]])
    ev = evaluate(g, gen, train)
    assert tuple(ev.scalars) == CURVE_METRICS and tuple(ev.levels) == LEVEL_METRICS
    assert all(ev.levels[k].shape == (sp.L,) for k in LEVEL_METRICS)
    assert math.isnan(ev.scalars["train_loss"]) and math.isnan(ev.scalars["heldout_loss"])

    tr_set = {tuple(r) for r in train.tolist()}
    valid = np.array([tuple(r) in language for r in gen.tolist()])
    copy = np.array([tuple(r) in tr_set for r in gen.tolist()])
    assert ev.scalars["valid_frac"] == pytest.approx(valid.mean())
    assert ev.scalars["copy_frac"] == pytest.approx(copy.mean())
    assert ev.scalars["novel_valid_frac"] == pytest.approx((valid & ~copy).mean())
    assert ev.scalars["unique_gen_frac"] == pytest.approx(len({tuple(r) for r in gen.tolist()}) / N)
    base = sum(math.exp(g.loglik(np.array([r]))[0]) for r in tr_set)
    assert ev.scalars["copy_baseline"] == pytest.approx(base)
    assert ev.scalars["mem_excess"] == pytest.approx((copy.mean() - base) / (1 - base))

    # per-level validity and production counts from the reference parser
    parsed = [_ref_parse(g, r) for r in gen]
    for lv in range(sp.L):
        assert ev.levels["valid_frac"][lv] == pytest.approx(np.mean([ok[lv] for ok, _ in parsed]))
        k = sp.n_parents(lv) * sp.m
        ref_gen = np.zeros(k, dtype=np.int64)
        for (_, ids), is_copy in zip(parsed, copy):
            for i in ids[lv]:
                if i >= 0 and not is_copy:
                    ref_gen[i] += 1
        ref_train = np.zeros(k, dtype=np.int64)
        for r in train:
            for i in _ref_parse(g, r)[1][lv]:
                ref_train[i] += 1
        sel = ev.parts["level"] == lv
        assert ev.parts["production"][sel].tolist() == list(range(k))
        assert ev.parts["gen_count"][sel].tolist() == ref_gen.tolist()
        assert ev.parts["train_count"][sel].tolist() == ref_train.tolist()

    # copies: counts equal to the double loop, on the samples copied or with copied twins
    ref_counts = np.array([sum(list(a) == list(b) for a in gen) for b in train])
    idx, cnt = ev.copies["train_index"], ev.copies["count"]
    assert set(np.flatnonzero(ref_counts).tolist()) <= set(idx.tolist()) and cnt.tolist() == ref_counts[idx].tolist()
    assert (ev.copies["count"] > 0).sum() == np.count_nonzero(ref_counts)
    # Hamming-based scalars
    D = np.sort(_dist_matrix(gen, train), axis=1)
    if P >= 2:
        near = [(b == 0) or (a / b < 1 / 3) for a, b in D[:, :2]]
        assert ev.scalars["near_copy_frac"] == pytest.approx(np.mean(near))
    assert ev.scalars["mean_d1"] == pytest.approx(D[:, 0].mean() / sp.d)
    # rank correlations over the training samples
    proto = g.prototypicality(train, train)[0]
    for key, x in (("proto_spearman", proto), ("loglik_spearman", g.loglik(train))):
        if np.unique(ref_counts).size < 2 or np.unique(x).size < 2:
            assert math.isnan(ev.scalars[key])
        else:
            assert ev.scalars[key] == pytest.approx(scipy.stats.spearmanr(x, ref_counts).statistic, abs=1e-9)

    # torch inputs and the TrainIndex hot path give the same results
    ev_t = evaluate(g, torch.from_numpy(gen), index_training_set(g, torch.from_numpy(train)))
    _assert_same(ev, ev_t)


def _assert_same(a, b):
    for k in CURVE_METRICS:
        assert a.scalars[k] == pytest.approx(b.scalars[k], nan_ok=True), k
    for k in LEVEL_METRICS:
        np.testing.assert_allclose(a.levels[k], b.levels[k])
    for k in a.copies:
        assert np.array_equal(a.copies[k], b.copies[k]), k
    for k in a.parts:
        assert np.array_equal(a.parts[k], b.parts[k])


def test_valid_only_counts_and_train_prob(small):
    g, language, everything = small
    train = sample_iid(g, 10, 1)
    gen = everything[::3]
    ev = evaluate(g, gen, train, train_prob=np.full(10, 0.01), count_invalid=False)
    copy = np.isin(encode_strings(gen, 3), encode_strings(train, 3))
    want = g.production_counts(gen[~copy])
    got = ev.parts["gen_count"]
    assert got.tolist() == np.concatenate([c.ravel() for c in want]).tolist()
    assert ev.scalars["copy_baseline"] == pytest.approx(0.01 * len({tuple(r) for r in train.tolist()}))
    with pytest.raises(ValueError):
        evaluate(g, gen, index_training_set(g, train), train_prob=np.ones(10))


def test_grammar_production_probs_equal_enumerated_expectation(small):
    g, _, _ = small
    sp = g.spec
    strings = g.enumerate()
    p = np.exp(g.loglik(strings))
    assert p.sum() == pytest.approx(1.0)
    ids = g.parse(strings).ids
    for lv, probs in enumerate(grammar_production_probs(g)):
        k = sp.n_parents(lv) * sp.m
        want = np.zeros(k)
        for j in range(sp.n_nodes(lv)):
            want += np.bincount(ids[lv][:, j], weights=p, minlength=k)
        np.testing.assert_allclose(probs.ravel(), want / sp.n_nodes(lv), atol=1e-12)


def test_memorizer_and_generalizer_limits():
    g = Grammar.from_spec(GrammarSpec(v=8, n_c=4, m=4, s=2, L=3, seed=2, levels=RuleDist("power", a=1.0)))
    train = sample_iid(g, 400, 0)
    index = index_training_set(g, train)
    assert isinstance(index, TrainIndex) and index.proto_levels.shape == (400, 3)
    mem = evaluate(g, train, index)
    assert mem.scalars["copy_frac"] == 1.0 and mem.scalars["mem_excess"] == 1.0 and mem.scalars["mem_twin"] == 1.0
    assert mem.scalars["near_copy_frac"] == 1.0 and mem.scalars["mean_d1"] == 0.0
    assert mem.scalars["twin_frac"] == 0.0 and mem.scalars["novel_valid_frac"] == 0.0
    assert math.isnan(mem.scalars["overprod"]) and mem.scalars["slop_n"] == 0  # no non-copy strings: no slop
    heldout = sample_iid(g, 300, 7)
    held_index = index_training_set(g, train, heldout=heldout)
    fresh = evaluate(g, g.sample(4000, np.random.default_rng(9)), held_index)
    assert fresh.scalars["valid_frac"] == 1.0
    base, n = fresh.scalars["copy_baseline"], 4000
    se = math.sqrt(base * (1 - base) / n)             # of copy_frac; the twin term adds about as much again
    assert abs(fresh.scalars["copy_frac"] - base) < 4 * se
    assert abs(fresh.scalars["mem_twin"]) < 6 * se and abs(fresh.scalars["mem_heldout"]) < 6 * se
    assert 0 < fresh.scalars["twin_frac"] < 1 and 0 < fresh.scalars["heldout_frac"] < 1
    assert fresh.scalars["kl_gen_grammar"] < 0.02 and abs(fresh.scalars["overprod"]) < 0.05
    # copy counts follow the generated multiplicities: a sample copied 5 times has count 5
    gen = np.concatenate([np.repeat(train[:1], 5, 0), train[1:3]])
    copies = evaluate(g, gen, index, hamming=False).copies
    idx, cnt = copies["train_index"], copies["count"]
    dup = (train == train[0]).all(1)
    assert set(idx.tolist()) >= set(np.flatnonzero(dup).tolist())
    assert all(c == 5 for i, c in zip(idx, cnt) if dup[i])
