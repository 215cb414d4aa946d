"""Added cost of the overestimation probe per evaluation (sweeps.overest_eval), on one CPU core, for the study
preset (sweeps/presets/study.yaml: v=32, d=8, width-64 masked transformer, n_gen=256, exact sampler, 256 held-out
strings) at P = 1,024 with the fat tail power(a=1): one evaluation (generate, score, held-out loss) against the
probe (one forward pass over 1,280 strings x 3 noise levels x 1 mask draw, and n_gen exact-sampler trajectories
with their collapse and grammar-posterior entropies: d more passes over n_gen strings), alternating the two over rounds
(this machine is shared and drifts: both sides see the same load). The probe's one-off setup (mask draws and exact
grammar posteriors, once per trial) is printed beside. Target: probe <= 25% of an evaluation, on average over the
evaluations: with eval.overest_every = k the probe runs at one evaluation in k, and the figure is probe / (k eval);
printed for k = 1 and for the smallest k that meets it. On a CPU the probe's one batched pass costs what its
strings cost; on a GPU the sampler's d sequential calls are latency-bound and the probe's one pass is not."""
import os

for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMEXPR_NUM_THREADS"):
    os.environ[_var] = "1"

import dataclasses  # noqa: E402
import math  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from sweeps.overest_eval import measure, probe_of  # noqa: E402
from sweeps.spec import SweepSpec, load_spec  # noqa: E402
from sweeps.trial import build_data, build_trainer, evaluate_step  # noqa: E402

ROUNDS = 3
TARGET = 0.25


def main() -> int:
    torch.set_num_threads(1)
    raw = dict(load_spec("study").raw)
    raw.update(store=str(Path(tempfile.mkdtemp()) / "store"))
    raw["axes"] = {"P": [1024], "tail": [{"family": "power", "a": 1.0}], "grammar.seed": [0], "seed": [0]}
    cfg = SweepSpec.from_dict(raw).trials()[0]
    data = build_data(cfg)
    trainer = build_trainer(cfg, data, "cpu")
    trainer.run(lambda t, step: step >= 10)                         # a few steps: a model, not an init
    t0 = time.perf_counter()
    tp = probe_of(dataclasses.replace(cfg, overest_every=1), data)
    setup = time.perf_counter() - t0
    n = tp.probe.masks.shape[0] * tp.probe.masks.shape[1] * tp.probe.masks.shape[2]
    print(f"overestimation probe, study grammar, P = {cfg.P}, {cfg.heldout} held-out, n_gen = {cfg.n_gen}: "
          f"{n} masked strings; one-off setup {setup:.2f} s ({n / setup:,.0f} posteriors/s)")
    evals, probes = [], []
    for r in range(ROUNDS):
        t0 = time.perf_counter()
        evaluate_step(cfg, trainer, data, trainer.step)
        evals.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        measure(trainer, [cfg], [data], trainer.step)
        probes.append(time.perf_counter() - t0)
        print(f"round {r}: evaluation {evals[-1]:.3f} s, probe {probes[-1]:.3f} s")
    ratio = min(probes) / min(evals)
    print(f"probe / evaluation (best of {ROUNDS} each), overest_every = 1: {ratio:.1%}  target <= {TARGET:.0%}  "
          f"{'PASS' if ratio <= TARGET else 'MISS'}")
    k = max(1, math.ceil(ratio / TARGET))
    verdict = "PASS" if ratio / k <= TARGET else "MISS"
    print(f"overest_every = {k}: {ratio / k:.1%} per evaluation on average  {verdict}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
