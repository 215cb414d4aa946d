"""Sweep machinery overhead and scaling: the same trials as a bare loop (train_trial, no Ray, no store writes),
through run_sweep with 1 worker, and with 2 workers. The bare loop runs before and after the 1-worker sweep and its
mean is the reference, so that drift in the machine's speed is shown, not read as overhead. Targets: overhead < 10%
for minute-long trials; 2 workers >= 1.7x the throughput of 1. `--quick` uses seconds-long trials, where Ray's
start-up dominates (said in output)."""
from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time

os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

import torch  # noqa: E402

from sweeps.runner import run_sweep  # noqa: E402
from sweeps.spec import SweepSpec, load_spec  # noqa: E402
from sweeps.trial import train_trial  # noqa: E402


def make_spec(root: str, name: str, steps: int, n_trials: int) -> SweepSpec:
    """The tiny preset with `n_trials` P values and `steps` training steps, no early stop."""
    raw = dict(load_spec("tiny").raw)
    raw.update(name=name, store=os.path.join(root, name, "store"))
    raw["axes"] = {"tail": [{"family": "uniform"}], "P": [4 + 2 * i for i in range(n_trials)], "seed": [0]}
    raw["train"] = {**raw["train"], "steps": steps}
    raw.pop("stop", None)
    return SweepSpec.from_dict(raw)


def bare(spec: SweepSpec) -> float:
    """Seconds for every trial of `spec` one after another, without Ray and without store writes."""
    torch.set_num_threads(1)  # what a 1-CPU trial gets under Ray
    t0 = time.perf_counter()
    for t in spec.trials():
        train_trial(t, write_store=False)
    return time.perf_counter() - t0


def swept(spec: SweepSpec, workers: int) -> float:
    """Seconds for run_sweep (embedded Ray start-up included) over the same trials."""
    t0 = time.perf_counter()
    res = run_sweep(spec, workers=workers, progress=False)
    wall = time.perf_counter() - t0
    assert res.n_done == len(spec.trials()) and res.n_failed == 0, res
    return wall


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true", help="seconds-long trials (overhead then dominated by start-up)")
    ap.add_argument("--steps", type=int, default=None, help="training steps per trial (default 24000: about a minute per trial on one core here; quick 300)")
    ap.add_argument("--trials", type=int, default=4)
    args = ap.parse_args()
    steps = args.steps or (300 if args.quick else 24000)
    root = tempfile.mkdtemp(prefix="sweepbench-")
    try:
        train_trial(make_spec(root, "warm", 20, 1).trials()[0], write_store=False)  # imports, first-call costs
        # the bare loop runs before and after the 1-worker sweep and is averaged, so that a machine whose speed
        # drifts (shared cores) does not read as sweep overhead or as a sweep faster than no sweep at all
        t_before = bare(make_spec(root, "bare", steps, args.trials))
        t1 = swept(make_spec(root, "w1", steps, args.trials), 1)
        t_after = bare(make_spec(root, "bare2", steps, args.trials))
        t2 = swept(make_spec(root, "w2", steps, args.trials), 2)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    n = args.trials
    t_bare = (t_before + t_after) / 2
    drift = t_after / t_before - 1
    overhead = t1 / t_bare - 1
    speedup = t1 / t2
    note = " (quick: short trials, Ray start-up dominates; run without --quick for the real target)" if args.quick \
        else ""
    print(f"{n} trials x {steps} steps ({t_bare / n:.0f} s per bare trial), cores={os.cpu_count()}{note}")
    print(f"bare loop before the sweeps {t_before:.1f} s, after the 1-worker sweep {t_after:.1f} s: the machine "
          f"drifted {100 * drift:+.1f}%{' (over 10%: the overhead figure is unreliable)' if abs(drift) > 0.1 else ''}")
    print(f"bare loop (mean) {t_bare:8.1f} s   {n * steps / t_bare:8.0f} steps/s   {3600 * n / t_bare:7.0f} trials/h")
    print(f"sweep, 1 worker  {t1:8.1f} s   {n * steps / t1:8.0f} steps/s   {3600 * n / t1:7.0f} trials/h")
    print(f"sweep, 2 workers {t2:8.1f} s   {n * steps / t2:8.0f} steps/s   {3600 * n / t2:7.0f} trials/h")
    print(f"{'PASS' if overhead < 0.10 else 'MISS'} overhead (1 worker vs bare) = {100 * overhead:.1f}% (target < 10%)")
    print(f"{'PASS' if speedup >= 1.7 else 'MISS'} speedup 2 vs 1 workers = {speedup:.2f}x (target >= 1.7x)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
