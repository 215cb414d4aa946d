"""Throughput of the exact grammar posterior (rhm.posterior) on one CPU core, on the study preset's grammar
(sweeps/presets/study.yaml: v=32, n_c=8, m=8, s=2, L=3) with its fat tail power(a=1): posterior computations
(string x mask) per second, masked strings at 90/75/50% masked and the uniform-diffusion channel; the memorizer's
posterior at P = 1,024 beside it. Wall-clock figures, CPU-time ones in brackets (this machine is shared: CPU time is
the per-core figure when other jobs load it). Target: 1e5 per second per core."""
import os

for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMEXPR_NUM_THREADS"):
    os.environ[_var] = "1"

import dataclasses  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from rhm import Grammar, GrammarSpec, RuleDist  # noqa: E402
from rhm.posterior import GrammarPosterior, channel_evidence, masked_evidence, memorizer_posterior  # noqa: E402
from sweeps.spec import load_spec  # noqa: E402

from rhm_bench import REPEATS, best_of  # noqa: E402 - the same timing rule (shortest wall and CPU time of 3 calls)

N = 2**15
TARGET = 1e5


def report(name: str, n: int, t: float, c: float, target: float | None) -> bool:
    ok = target is None or n / c >= target
    tgt = "" if target is None else f"  target >= {target:g}  {'PASS' if ok else 'MISS'} (on cpu time)"
    print(f"{name:<44} {n / t:>10.3g} /s  (cpu {n / c:>9.3g} /s){tgt}")
    return ok


def main() -> int:
    g_values = load_spec("study").grammar.values
    spec = dataclasses.replace(GrammarSpec(**g_values), levels=RuleDist("power", a=1.0))
    g = Grammar.from_spec(spec)
    bp = GrammarPosterior(g)
    rng = np.random.default_rng(0)
    x = g.sample(N, rng)
    print(f"grammar posterior on one core: {g!r}, batches of {N} strings, best of {REPEATS}")
    ok = True
    for rate in (0.9, 0.75, 0.5):
        z = np.where(rng.random(x.shape) < rate, spec.v, x)
        t, c = best_of(lambda: bp.masked(z))
        ok &= report(f"masked, {rate:.0%} masked", N, t, c, TARGET)
        e = masked_evidence(z, spec.v)
        t, c = best_of(lambda: bp.marginals(e))
        report(f"  the same by general propagation (no target)", N, t, c, None)
    z = np.where(rng.random(x.shape) < 0.5, x, rng.integers(0, spec.v, x.shape))
    e = channel_evidence(z, 0.5, spec.v)
    t, c = best_of(lambda: bp.marginals(e))
    ok &= report("uniform channel, abar = 0.5", N, t, c, TARGET)
    train = g.sample(1024, rng)
    z = np.where(rng.random(x.shape) < 0.75, spec.v, x)
    e = masked_evidence(z, spec.v)
    t, c = best_of(lambda: memorizer_posterior(train, e))
    report("memorizer posterior, P = 1024 (no target)", N, t, c, None)
    print("ALL PASS" if ok else "SOME MISS")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
