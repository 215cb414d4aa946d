"""Added cost of the overestimation probe per evaluation (sweeps.overest_eval), on one CPU core, at P = 1,024 on the
`regime` preset's model and grammar (tree_conv width 64, v=8 n_c=2 m=8 s=3 L=2) and on the `study` preset's (width-64
masked transformer, v=32 n_c=8 m=8 s=2 L=3, the fat tail power(a=1)); n_gen = 256 exact-sampler generations and
256 held-out strings as in both presets. Side by side, alternating over rounds: one evaluation without the probe
(generate, score, held-out loss) and the same evaluation with it (`eval.overest_every: 1`: its n_gen generations'
trajectories recorded for the collapse, and one forward pass over the probe's eval.overest_strings = 64 training
and 64 held-out strings x 3 noise levels, the default); for reference, the probe of all P training strings and all
held-out strings (`overest_strings: null`, as the committed regime run). Per CPU second (time.process_time, one thread): this machine is shared with other jobs, which inflate wall
time and, less, CPU time; both sides of a round see the same load. The figure is the median over rounds of
(probed - plain) / plain; target <= 25%. The probe's one-off setup (subset, mask draws and exact grammar posteriors,
once per trial) is printed beside."""
import os

for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMEXPR_NUM_THREADS"):
    os.environ[_var] = "1"

import dataclasses  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from analysis.overest import OVEREST_STRINGS  # noqa: E402
from sweeps.overest_eval import probe_of  # noqa: E402
from sweeps.spec import SweepSpec, load_spec  # noqa: E402
from sweeps.trial import build_data, build_trainer, evaluate_step  # noqa: E402

ROUNDS = 5
TARGET = 0.25
P = 1024
PRESETS = {"regime": {}, "study": {"tail": [{"family": "power", "a": 1.0}]}}


def _trial(preset: str) -> object:
    raw = dict(load_spec(preset).raw)
    raw.update(store=str(Path(tempfile.mkdtemp()) / "store"))
    raw["train"] = {**raw["train"], "compile": "off"}              # the evaluation never runs the compiled step
    raw["axes"] = {"P": [P], **PRESETS[preset], "grammar.seed": [0], "seed": [0]}
    return SweepSpec.from_dict(raw).trials()[0]


def _cpu(fn) -> float:
    t0 = time.process_time()
    fn()
    return time.process_time() - t0


def bench(preset: str) -> bool:
    cfg = _trial(preset)
    data = build_data(cfg)
    trainer = build_trainer(cfg, data, "cpu")
    trainer.run(lambda t, step: step >= 10)                         # a few steps: a model, not an init
    sides = {"plain": dataclasses.replace(cfg, overest_every=0),   # the regime preset itself probes every 2nd
             "probed": dataclasses.replace(cfg, overest_every=1, overest_strings=OVEREST_STRINGS),
             "probed, all strings": dataclasses.replace(cfg, overest_every=1, overest_strings=None)}
    for name in ("probed", "probed, all strings"):                  # each side's probe: built once per trial
        data._overest_probe = None
        t0 = time.process_time()
        probe = probe_of(sides[name], data)
        setup = time.process_time() - t0
        sides[name] = (sides[name], probe)
        print(f"{preset}: {name}: {probe.is_train.sum()} training + {(~probe.is_train).sum()} held-out strings x "
              f"{probe.probe.ts.size} levels; one-off setup {setup:.2f} cpu s")
    times: dict[str, list[float]] = {k: [] for k in sides}
    for _ in range(ROUNDS):
        for name, side in sides.items():
            c, probe = (side, None) if name == "plain" else side
            data._overest_probe = probe
            times[name].append(_cpu(lambda: evaluate_step(c, trainer, data, trainer.step)))
    plain = times["plain"]
    print(f"{preset}: cpu s per evaluation over {ROUNDS} alternated rounds: "
          + "; ".join(f"{k} " + " ".join(f"{t:.3f}" for t in v) for k, v in times.items()))
    ok = True
    for name in ("probed", "probed, all strings"):
        added = [(p - q) / q for p, q in zip(times[name], plain)]
        med = statistics.median(added)
        verdict = f"target <= {TARGET:.0%}  {'PASS' if med <= TARGET else 'MISS'}" if name == "probed" else "(reference)"
        print(f"{preset}: added cost of the probe ({name}), median over rounds: {med:+.1%} of an evaluation "
              f"(range {min(added):+.1%} .. {max(added):+.1%})  {verdict}")
        ok &= name != "probed" or med <= TARGET
    return ok


def main() -> int:
    torch.set_num_threads(1)
    print(f"overestimation probe cost at P = {P}, one thread, per CPU second (shared machine; load "
          f"{os.getloadavg()[0]:.1f})")
    ok = all([bench(p) for p in PRESETS])
    print("ALL PASS" if ok else "SOME MISS")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
