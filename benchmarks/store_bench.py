"""Store benchmark: write and read back TRIALS x EVALS curves rows, compaction, and flush overhead per evaluation.

Targets: reading every curve < 2 s (after compaction; the uncompacted time is reported too), and one evaluation's
append+flush (curves 1 row, level_curves L rows, copies ~100, parts ~100) < 50 ms. Prints PASS/MISS for each.
Usage: python benchmarks/store_bench.py [--trials 10000] [--evals 200] [--policy-trials 1000] [--out DIR]
"""
from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import pyarrow as pa

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from analysis.schema import CURVE_METRICS, LEVEL_METRICS  # noqa: E402
from analysis.store import Store  # noqa: E402

READ_TARGET_S = 2.0
FLUSH_TARGET_MS = 50.0


def _curves(evals: int, rng: np.random.Generator) -> pa.Table:
    """One trial's curves: `evals` log-spaced steps and every metric."""
    steps = np.unique(np.logspace(1, 6, evals * 3).astype(np.int64))[:evals]
    cols = {"step": steps, "wall_time": np.cumsum(rng.random(len(steps)))}
    cols.update({m: rng.random(len(steps)) for m in CURVE_METRICS})
    return pa.table(cols)


def _write(store: Store, sweep: str, trials: int, evals: int, every: int) -> float:
    """Write `trials` trials, flushing curves every `every` evaluations; returns seconds."""
    rng = np.random.default_rng(0)
    base = _curves(evals, rng)
    t0 = time.perf_counter()
    for i in range(trials):
        with store.writer(sweep, f"{sweep}-{i:05d}", attempt_ns=1_000 + i) as w:
            w.append("trials", {"status": "done", "P": 2 ** (4 + i % 8), "L": 2 + i % 3, "seed": i % 5,
                                "tail": "uniform", "cfg.train.lr": 1e-3, "cfg.model.width": 64})
            for a in range(0, evals, every):
                w.append("curves", base.slice(a, every))
                w.flush()
    return time.perf_counter() - t0


def _timed(fn, *args, **kw):
    t0 = time.perf_counter()
    out = fn(*args, **kw)
    return out, time.perf_counter() - t0


def _flush_overhead(store: Store, n: int = 100, L: int = 3) -> tuple[float, float]:
    """Median ms per evaluation for append only and append+flush (4 fragments)."""
    rng = np.random.default_rng(1)
    app, tot = [], []
    with store.writer("flush", "flush-trial") as w:
        for s in range(1, n + 1):
            t0 = time.perf_counter()
            w.append("curves", {"step": s, "wall_time": 0.1 * s, **{m: float(rng.random()) for m in CURVE_METRICS}})
            w.append("level_curves", {"step": s, "level": np.arange(L), **{m: rng.random(L) for m in LEVEL_METRICS}})
            idx = np.unique(rng.integers(0, 10_000, 100))
            w.append("copies", {"step": s, "train_index": idx, "count": rng.integers(1, 5, len(idx))})
            w.append("parts", {"step": s, "level": np.repeat(np.arange(L), 34)[:100], "production": np.arange(100),
                               "gen_count": rng.integers(0, 99, 100), "train_count": rng.integers(0, 99, 100),
                               "grammar_prob": rng.random(100)})
            t1 = time.perf_counter()
            w.flush()
            t2 = time.perf_counter()
            app.append(t1 - t0)
            tot.append(t2 - t0)
    return 1e3 * float(np.median(app)), 1e3 * float(np.median(tot))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=10_000)
    ap.add_argument("--evals", type=int, default=200)
    ap.add_argument("--policy-trials", type=int, default=1_000, help="trials for the flush-every-25-evals policy")
    ap.add_argument("--out", default=None, help="store directory (default: a temporary one, removed after)")
    args = ap.parse_args()
    tmp = Path(args.out or tempfile.mkdtemp(prefix="store_bench_"))
    ok = True
    warnings.simplefilter("error")        # a benchmark store must never have skipped fragments
    try:
        store = Store(tmp / "store")
        rows = args.trials * args.evals
        print(f"store at {tmp}; {args.trials} trials x {args.evals} evaluations = {rows:,} curves rows")

        # 1) one fragment per trial (the whole curve flushed once at the end)
        w = _write(store, "one", args.trials, args.evals, every=args.evals)
        print(f"[one fragment/trial] write: {w:.1f} s ({2 * args.trials:,} files: curves + trials), "
              f"{1e3 * w / args.trials:.2f} ms/trial")
        cu, r_raw = _timed(store.read, "curves", sweep="one")
        assert cu.num_rows == rows, cu.num_rows
        print(f"[one fragment/trial] read all curves, uncompacted: {r_raw:.2f} s")
        rep, c = _timed(store.compact, "one")
        print(f"[one fragment/trial] compact: {c:.1f} s "
              f"({rep['curves']['one']['fragments_in']:,} curves fragments -> 1)")
        cu2, r_c = _timed(Store(tmp / "store").read, "curves", sweep="one")
        assert cu2.equals(cu)
        _, r_c2 = _timed(Store(tmp / "store").read, "curves", sweep="one", columns=["trial_id", "step", "mem_excess"])
        ids = [f"one-{i:05d}" for i in range(0, args.trials, max(1, args.trials // 10))]
        _, r_sel = _timed(Store(tmp / "store").read, "curves", sweep="one", trials=ids)
        res = "PASS" if r_c < READ_TARGET_S else "MISS"
        ok &= res == "PASS"
        print(f"[one fragment/trial] read all curves, compacted: {r_c:.2f} s (target < {READ_TARGET_S} s) {res}; "
              f"3 columns: {r_c2:.2f} s; {len(ids)} trials by id: {r_sel:.3f} s")

        # 2) realistic flush policy: every 25 evaluations (8 fragments per trial), on fewer trials
        pt = args.policy_trials
        w2 = _write(store, "policy", pt, args.evals, every=25)
        nfr = pt * (-(-args.evals // 25) + 1)
        print(f"[flush every 25 evals] write {pt} trials: {w2:.1f} s ({nfr:,} files), "
              f"{1e3 * w2 / pt:.1f} ms/trial")
        cp, r_p = _timed(store.read, "curves", sweep="policy")
        assert cp.num_rows == pt * args.evals
        print(f"[flush every 25 evals] read {pt * args.evals:,} rows uncompacted: {r_p:.2f} s "
              f"(~{r_p * args.trials / pt:.0f} s extrapolated to {args.trials} trials)")
        _, c2 = _timed(store.compact, "policy")
        _, r_p2 = _timed(Store(tmp / "store").read, "curves", sweep="policy")
        print(f"[flush every 25 evals] compact: {c2:.1f} s; read after: {r_p2:.2f} s")

        # 3) flush overhead per evaluation
        a_ms, f_ms = _flush_overhead(store)
        res = "PASS" if f_ms < FLUSH_TARGET_MS else "MISS"
        ok &= res == "PASS"
        print(f"[per evaluation] append {a_ms:.2f} ms, append+flush (4 fragments: curves 1, level_curves 3, "
              f"copies ~100, parts 100 rows) {f_ms:.2f} ms (target < {FLUSH_TARGET_MS:.0f} ms) {res}")
        print("store_bench:", "PASS" if ok else "MISS")
    finally:
        if args.out is None:
            shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
