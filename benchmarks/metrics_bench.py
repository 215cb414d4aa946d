"""Benchmark analysis.metrics: exact copies and nearest/second-nearest Hamming distances, N=4096 generated strings
against P=1e5 training strings (d=16, v=16), one CPU thread, each beside the dense one-hot matrix-product approach;
and the cost of the null-controlled metrics (twins, held-out copies, per-sample twin contrast) within one
evaluation at N=1024, P=4096; and the cost of the nulls that match (issue 20: the empirical grammar and each
sample's probability there, the slop references' nulls at the trial's N, once per trial; overprod_train per
evaluation) against today's metric cost of a trial of `--evals` evaluations, same N and P.

Time: best of `--repeats` wall-clock runs (time.perf_counter); the null cost alternates the two sides over rounds
and reports the median ratio. Peak memory: tracemalloc, which sees numpy's allocations (our CPU kernels are numpy)
but not torch's, so the dense torch baseline's peak is its largest tensor sizes computed from the shapes (labelled
"est."). Targets: copies < 0.2 s; Hamming < 10 s and < 2 GiB; the nulls < 20% of an evaluation; the matching
nulls < 20% of a trial's metric cost (alternated rounds, median ratio; the machine is shared, so rounds drift).
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import time
import tracemalloc

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402

from analysis.metrics import copy_counts, evaluate, index_training_set, nn_hamming  # noqa: E402
from analysis.slop import slop_nulls  # noqa: E402
from rhm import Grammar, GrammarSpec, RuleDist, empirical_grammar, sample_iid  # noqa: E402

GIB = 2**30
COPY_TARGET_S = 0.2
HAMMING_TARGET_S = 10.0
HAMMING_TARGET_BYTES = 2 * GIB
DENSE_LIMIT_BYTES = 6 * GIB
NULL_TARGET = 0.20


def without_nulls(index):
    """The same training index with the twin and held-out nulls removed: what an evaluation cost before them."""
    P = index.P
    return dataclasses.replace(
        index, twin_keys=index.twin_keys[:0], twin_key_group=index.twin_key_group[:0],
        twin_group=np.full(P, -1), n_twins=np.zeros(P, np.int64), twin_mass=np.full(P, np.nan),
        twin_set_mass=float("nan"), heldout_keys=index.heldout_keys[:0], heldout_mass=float("nan"),
        twin_note="removed for the benchmark")


def null_cost(rounds: int) -> None:
    """Share of one evaluation (N=1024 against P=4096, study grammar at L=4, d=16) spent on the nulls."""
    gram = Grammar.from_spec(GrammarSpec(v=16, n_c=4, m=4, s=2, L=4, levels=RuleDist("power", a=1.0)))
    train = sample_iid(gram, 4096, 0)
    held = sample_iid(gram, 1024, 1)
    gen = np.concatenate([train[:300], gram.sample(724, np.random.default_rng(2))])
    t0 = time.perf_counter()
    index = index_training_set(gram, train, heldout=held)
    t_idx = time.perf_counter() - t0
    bare = without_nulls(index)
    with_t, bare_t = [], []
    for _ in range(rounds):
        for which, idx, out in (("with", index, with_t), ("bare", bare, bare_t)):
            t0 = time.perf_counter()
            evaluate(gram, gen, idx)
            out.append(time.perf_counter() - t0)
    ratios = [w / b - 1 for w, b in zip(with_t, bare_t)]
    share = float(np.median(ratios))
    ev = evaluate(gram, gen, index).scalars
    ok = "PASS" if share < NULL_TARGET else "MISS"
    print(f"nulls  : evaluate {np.median(with_t):6.3f} s with the nulls, {np.median(bare_t):6.3f} s without "
          f"(median of {rounds} alternating rounds): +{100 * share:4.1f}% (per round: "
          f"{', '.join(f'{100 * r:+.0f}%' for r in ratios)}) | target < {100 * NULL_TARGET:.0f}%: {ok} | "
          f"index_training_set {t_idx:5.3f} s once per trial  [copy_frac={ev['copy_frac']:.3f} "
          f"mem_twin={ev['mem_twin']:.3f} mem_heldout={ev['mem_heldout']:.3f}]")


def matching_null_cost(rounds: int, n_evals: int) -> None:
    """Added cost of issue 20's nulls per trial (empirical grammar, emp_prob, slop_nulls) over today's metric cost
    of the trial (index_training_set + n_evals evaluations), same grammar, N=1024, P=4096; alternated rounds."""
    gram = Grammar.from_spec(GrammarSpec(v=16, n_c=4, m=4, s=2, L=4, levels=RuleDist("power", a=1.0)))
    train = sample_iid(gram, 4096, 0)
    held = sample_iid(gram, 1024, 1)
    gen = np.concatenate([train[:300], gram.sample(724, np.random.default_rng(2))])
    index = index_training_set(gram, train, heldout=held)
    today_t, added_t = [], []
    for _ in range(rounds):
        t0 = time.perf_counter()
        index_training_set(gram, train, heldout=held)   # includes the empirical grammar: overstates today slightly
        for _ in range(n_evals):
            evaluate(gram, gen, index)                   # includes overprod_train: a few sums per level
        today_t.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        emp = empirical_grammar(gram, train)
        np.exp(emp.loglik(train))
        slop_nulls(gram, emp, index.sorted_keys, index.production_counts, index.slop_ref, len(gen))
        added_t.append(time.perf_counter() - t0)
    ratios = [a / t for a, t in zip(added_t, today_t)]
    share = float(np.median(ratios))
    ok = "PASS" if share < NULL_TARGET else "MISS"
    print(f"match  : a trial's metrics ({n_evals} evaluations + index) {np.median(today_t):6.3f} s, the matching "
          f"nulls once per trial {np.median(added_t):6.3f} s (median of {rounds} alternating rounds): "
          f"+{100 * share:4.1f}% (per round: {', '.join(f'{100 * r:+.0f}%' for r in ratios)}) | target < "
          f"{100 * NULL_TARGET:.0f}%: {ok} | per evaluation +{1e3 * np.median(added_t) / n_evals:.1f} ms")


def timed(fn, repeats: int):
    """(result, best seconds, tracemalloc peak bytes of the first run)."""
    tracemalloc.start()
    t0 = time.perf_counter()
    out = fn()
    best = time.perf_counter() - t0
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    for _ in range(repeats - 1):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return out, best, peak


def onehot(x: torch.Tensor, v: int) -> torch.Tensor:
    d = x.shape[1]
    o = torch.zeros(x.shape[0], d * v)
    o.scatter_(1, x + torch.arange(d) * v, 1.0)
    return o


def dense_matches(g: torch.Tensor, t: torch.Tensor, v: int) -> torch.Tensor:
    """The dense baseline: one-hot (N, d*v) @ one-hot (P, d*v)^T -> (N, P) match counts, float32."""
    return onehot(g, v) @ onehot(t, v).T


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--N", type=int, default=4096)
    ap.add_argument("--P", type=int, default=100_000)
    ap.add_argument("--d", type=int, default=16)
    ap.add_argument("--v", type=int, default=16)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=7, help="alternating rounds of the null-cost comparison")
    ap.add_argument("--evals", type=int, default=20, help="evaluations per trial in the matching-null comparison")
    args = ap.parse_args()
    torch.set_num_threads(1)
    N, P, d, v = args.N, args.P, args.d, args.v
    rng = np.random.default_rng(0)
    train = rng.integers(0, v, (P, d))
    # a quarter exact copies (some of duplicated strings), a quarter one-symbol edits, half random
    gen = np.concatenate([train[rng.integers(0, P, N // 4)], train[rng.integers(0, P, N // 4)], rng.integers(0, v, (N - N // 2, d))])
    gen[N // 4 : N // 2, 0] = (gen[N // 4 : N // 2, 0] + 1) % v
    g_t, t_t = torch.from_numpy(gen), torch.from_numpy(train)
    print(f"metrics_bench: N={N} P={P} d={d} v={v}, 1 CPU thread, best of {args.repeats}")
    null_cost(args.rounds)
    matching_null_cost(args.rounds, args.evals)

    # ---- exact copies
    (is_copy, counts), t_copy, m_copy = timed(lambda: copy_counts(gen, train, v=v), args.repeats)
    dense_bytes = N * P * 4 + (N + P) * d * v * 4
    sub = P if dense_bytes <= DENSE_LIMIT_BYTES else max(1, int(P * DENSE_LIMIT_BYTES / dense_bytes))
    scale = P / sub

    def dense_copies():
        eq = dense_matches(g_t, t_t[:sub], v) == d
        return eq.any(1).numpy(), eq.sum(0).numpy()

    (dc, dcnt), t_dcopy, _ = timed(dense_copies, 1)
    t_dcopy *= scale
    label = "" if sub == P else f" (extrapolated x{scale:.1f} from P={sub})"
    if sub == P:
        assert np.array_equal(dc, is_copy) and np.array_equal(dcnt, counts), "dense and hashed copies disagree"
    ok = "PASS" if t_copy < COPY_TARGET_S else "MISS"
    print(f"copies : hashed {t_copy:8.3f} s (numpy peak {m_copy / 2**20:7.1f} MiB) | dense one-hot {t_dcopy:8.3f} s"
          f"{label} | speed-up x{t_dcopy / t_copy:7.1f} | target < {COPY_TARGET_S} s: {ok}"
          f"  [copy_frac={is_copy.mean():.3f}]")

    # ---- nearest / second-nearest Hamming
    (d1, d2), t_nn, m_nn = timed(lambda: nn_hamming(gen, train, v=v), args.repeats)

    def dense_nn():
        top = dense_matches(g_t, t_t[:sub], v).topk(2, dim=1).values
        return (d - top[:, 0]).numpy(), (d - top[:, 1]).numpy()

    (dd1, dd2), t_dnn, _ = timed(dense_nn, 1)
    t_dnn *= scale
    dense_peak = N * P * 4 + (N + P) * d * v * 4
    if sub == P:
        assert np.array_equal(dd1, d1) and np.array_equal(dd2, d2), "dense and chunked distances disagree"
    ok = "PASS" if t_nn < HAMMING_TARGET_S and m_nn < HAMMING_TARGET_BYTES else "MISS"
    print(f"hamming: chunked {t_nn:7.3f} s (numpy peak {m_nn / 2**20:7.1f} MiB) | dense one-hot {t_dnn:8.3f} s{label}, "
          f"est. peak {dense_peak / 2**20:7.1f} MiB | speed-up x{t_dnn / t_nn:5.1f}, memory /{dense_peak / m_nn:5.0f} | "
          f"target < {HAMMING_TARGET_S} s and < 2 GiB: {ok}  [mean d1={d1.mean():.2f}, mean d2={d2.mean():.2f}]")

    # ---- the trial's hot path: index the training set once, then evaluate N generated strings per evaluation
    spec = GrammarSpec(v=v, n_c=v, m=4, s=2, L=int(round(np.log2(d))), levels=RuleDist("power", a=1.0))
    if spec.d == d:
        gram = Grammar.from_spec(spec)
        gtrain = sample_iid(gram, P, 0)
        ggen = np.concatenate([gtrain[: N // 2], gram.sample(N - N // 2, np.random.default_rng(1))])
        index, t_idx, m_idx = timed(lambda: index_training_set(gram, gtrain), 1)
        ev, t_ev, m_ev = timed(lambda: evaluate(gram, ggen, index), args.repeats)
        _, t_ev_nh, _ = timed(lambda: evaluate(gram, ggen, index, hamming=False), args.repeats)
        print(f"evaluate: index_training_set {t_idx:6.3f} s (numpy peak {m_idx / 2**20:6.1f} MiB); evaluate "
              f"{t_ev:6.3f} s, {t_ev_nh:6.3f} s without Hamming (numpy peak {m_ev / 2**20:6.1f} MiB)"
              f"  [copy_frac={ev.scalars['copy_frac']:.3f} mem_twin={ev.scalars['mem_twin']:.3f} "
              f"overprod={ev.scalars['overprod']:.3f}]")


if __name__ == "__main__":
    main()
