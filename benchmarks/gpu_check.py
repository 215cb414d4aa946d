"""One prepared check of the CUDA paths and of the paper grid's throughput on a lent GPU, below Tune (`make gpu-check`).

The device machine has torch, numpy, scipy, pyarrow and pytest but no Ray, Optuna, DuckDB or pydantic (nor PyYAML),
so everything here runs on `rhm`, `models` and `analysis` alone. On a CUDA machine, within --budget seconds
(default 8 minutes; a section that would not fit what is left says so and is skipped), it prints:

1. the CUDA tests (those skipped on CPU, CUDA_TESTS) by name: passed / failed;
2. a packed member against its lone run on CUDA: losses, generated strings and every curve metric of
   `analysis.metrics.evaluate` (the values the store's rows hold);
3. 64 trials of the paper preset's model and grammar, --steps steps each, three ways: one at a time; one pack of
   64; 8 concurrent processes of 8 trials each (what Tune's `gpu: 0.125` does): trials per GPU-hour of each, and
   the ratio of packs to one at a time (target >= 30x);
4. member-steps/s of the `paper` preset's model at K = 1, 16, 64, 256, fp32 and bf16, eager and `compile: step`;
   the largest K whose memory estimate fits the card; the estimate against the measured peak.

Without a GPU it says so in one line and exits 0 after checking that every module it runs imports with Ray, Optuna,
DuckDB and pydantic blocked, that the paper slice's settings validate, and that the CUDA tests it names exist
(tests/test_gpu_check.py runs this mode).
"""
from __future__ import annotations

import argparse
import ast
import dataclasses
import importlib.abc
import json
import os
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

BLOCKED = ("ray", "optuna", "duckdb", "pydantic")
MODULES = ("rhm", "models", "analysis.metrics", "analysis.store", "benchmarks.gpu_check")
CUDA_TESTS = ("tests/test_pack.py::test_cuda_bf16_compiled_pack_member_matches_the_trial_alone",
              "tests/test_metrics.py::test_nn_hamming_cuda_matches_cpu")
PAPER = ROOT / "sweeps" / "presets" / "paper.yaml"
PACKS = (1, 16, 64, 256)
RATIO_TARGET = 30.0


class _Blocker(importlib.abc.MetaPathFinder):
    """Refuses to import the packages the device machine does not have."""

    def find_spec(self, name, path, target=None):  # noqa: ANN001 - the finder protocol
        if name.split(".")[0] in BLOCKED:
            raise ImportError(f"{name} is not on the device machine (blocked by gpu_check)")
        return None


def check_imports() -> None:
    """Import MODULES in a fresh interpreter with BLOCKED refused; raise naming the module that needs them."""
    code = ("import sys, importlib; sys.path.insert(0, %r); from benchmarks.gpu_check import _Blocker; "
            "sys.meta_path.insert(0, _Blocker()); [importlib.import_module(m) for m in %r]" % (str(ROOT), MODULES))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    if out.returncode:
        raise SystemExit(f"gpu_check: importing {', '.join(MODULES)} without {', '.join(BLOCKED)} failed:\n"
                         f"{out.stderr.strip().splitlines()[-1]}")


# ------------------------------------------------------------------------------------------------ the paper slice
def flow_section(text: str, name: str) -> dict:
    """A top-level YAML flow mapping (`name: {k: v, ...}`, possibly over several lines) of plain scalars, read
    without PyYAML (absent on the device machine); tests/test_gpu_check.py compares it with yaml.safe_load."""
    m = re.search(rf"^{name}:\s*\{{(.*?)\}}", text, re.M | re.S)
    if m is None:
        raise ValueError(f"{PAPER} has no one-line flow mapping `{name}: {{...}}`")
    out = {}
    for item in re.sub(r"#[^\n]*", "", m.group(1)).split(","):
        key, _, val = (x.strip() for x in item.partition(":"))
        out[key] = _scalar(val)
    return out


def _scalar(val: str) -> object:
    if val in ("true", "false"):
        return val == "true"
    if val in ("null", "~"):
        return None
    for cast in (int, float):
        try:
            return cast(val)
        except ValueError:
            pass
    return val.strip("'\"")


@dataclasses.dataclass(frozen=True)
class Slice:
    """The paper preset's grammar, model and training settings (validated by their own dataclasses)."""

    grammar: object
    model: object
    train: object


def paper_slice(device: str = "cuda") -> Slice:
    from models import ModelConfig, TrainConfig
    from rhm import GrammarSpec

    text = PAPER.read_text()
    train = {**flow_section(text, "train"), "device": device}
    if device == "cpu":
        train["bf16"] = False
    return Slice(GrammarSpec(**flow_section(text, "grammar")), ModelConfig(**flow_section(text, "model")),
                 TrainConfig(**train))


def check_tests_exist() -> None:
    """Each CUDA_TESTS node names a test function that exists (a rename must not silently drop it)."""
    for node in CUDA_TESTS:
        path, name = node.split("::")
        tree = ast.parse((ROOT / path).read_text())
        if name not in {f.name for f in tree.body if isinstance(f, ast.FunctionDef)}:
            raise SystemExit(f"gpu_check: {node} does not exist: update CUDA_TESTS")


# ------------------------------------------------------------------------------------------------ GPU sections
class Clock:
    """The wall-clock budget: sections ask whether their estimated seconds still fit."""

    def __init__(self, budget: float) -> None:
        self.t0, self.budget = time.perf_counter(), budget

    def left(self) -> float:
        return self.budget - (time.perf_counter() - self.t0)

    def fits(self, what: str, seconds: float) -> bool:
        if seconds <= self.left():
            return True
        print(f"  skipped {what}: needs ~{seconds:.0f} s, {self.left():.0f} s of the budget left")
        return False


def run_cuda_tests() -> None:
    print("1. CUDA tests (skipped on CPU)")
    out = subprocess.run([sys.executable, "-m", "pytest", "-q", "-rA", "-p", "no:cacheprovider", *CUDA_TESTS],
                         capture_output=True, text=True, cwd=ROOT)
    for node in CUDA_TESTS:
        found = re.search(rf"^(PASSED|FAILED|ERROR|SKIPPED)\S* {re.escape(node)}", out.stdout, re.M)
        print(f"  {found.group(1) if found else 'NOT RUN'} {node}")
    if out.returncode:
        print("  " + "\n  ".join(out.stdout.strip().splitlines()[-15:]))


def _trainer(sl: Slice, seeds: list[int], steps: int, bf16: bool, compile_: str, P: int = 256):
    """A pack of the paper model, one member per seed (member seed s: init s, its own P strings drawn with s)."""
    import torch

    from models import Trainer, build_model
    from rhm import Grammar, sample_unique

    g = sl.grammar
    grammar = Grammar.from_spec(g)
    data = [torch.as_tensor(sample_unique(grammar, P, seed=s), dtype=torch.long) for s in seeds]
    cfg = dataclasses.replace(sl.train, steps=steps, bf16=bf16, compile=compile_, device="cuda")
    return Trainer(build_model(sl.model, g.v, g.d, g.s, g.L, seed=seeds), data, cfg, seeds=seeds)


def throughput(sl: Slice, clock: Clock, seconds: float) -> None:
    import torch

    from models.memory import GiB

    print(f"4. member-steps/s, paper model ({sl.model.backbone} width {sl.model.width} depth {sl.model.depth}, "
          f"batch {sl.train.batch_size}, d = {sl.grammar.d})")
    total = torch.cuda.get_device_properties(0).total_memory
    print(f"  {'dtype':6s}{'compile':>9s}{'K':>6s}{'m-steps/s':>12s}{'x K=1':>8s}{'est GiB':>9s}{'peak GiB':>10s}")
    for bf16 in (False, True):
        for compile_ in ("off", "step"):
            base = None
            for K in PACKS:
                if not clock.fits(f"{'bf16' if bf16 else 'fp32'} {compile_} K={K}", seconds + 60 * (compile_ != "off")):
                    continue
                torch.cuda.empty_cache()
                torch.cuda.reset_peak_memory_stats()
                tr = _trainer(sl, list(range(K)), 10 ** 6, bf16, compile_)
                est = tr.memory_estimate()
                if est.total > total:
                    print(f"  {'bf16' if bf16 else 'fp32':6s}{compile_:>9s}{K:6d}  over the card: estimate "
                          f"{est.total / GiB:.1f} GiB")
                    continue
                for _ in range(3):
                    tr._train_step()                           # warm-up (and compilation)
                torch.cuda.synchronize()
                n, t0 = 0, time.perf_counter()
                while time.perf_counter() - t0 < seconds:
                    for _ in range(10):
                        tr._train_step()
                    torch.cuda.synchronize()
                    n += 10
                rate = K * n / (time.perf_counter() - t0)
                base = base or rate
                print(f"  {'bf16' if bf16 else 'fp32':6s}{compile_:>9s}{K:6d}{rate:12.0f}{rate / base:8.1f}"
                      f"{est.total / GiB:9.2f}{torch.cuda.max_memory_allocated() / GiB:10.2f}")
                del tr
            if base is not None:
                est = _trainer(sl, [0], 10, bf16, "off").memory_estimate()
                print(f"  largest K whose estimate fits this card ({total / GiB:.0f} GiB, "
                      f"{'bf16' if bf16 else 'fp32'}): {est.max_members(total)}")


def _train_lone(sl: Slice, seeds: list[int], steps: int) -> None:
    """Train the trials `seeds` one after another, each a pack of one (what one Tune trial per GPU share does)."""
    import torch

    for s in seeds:
        tr = _trainer(sl, [s], steps, sl.train.bf16, "off")
        for _ in range(steps):
            tr._train_step()
        torch.cuda.synchronize()


def three_ways(sl: Slice, clock: Clock, trials: int, steps: int, procs: int) -> None:
    print(f"3. {trials} trials of the paper model and grammar, {steps} training steps each")
    rates = {}
    t0 = time.perf_counter()
    _train_lone(sl, [0], steps)                               # first one alone: time to extrapolate if needed
    one = time.perf_counter() - t0
    if clock.fits("one at a time", one * trials):
        t0 = time.perf_counter()
        _train_lone(sl, list(range(trials)), steps)
        rates["one at a time"] = trials / (time.perf_counter() - t0) * 3600
    else:
        rates["one at a time (extrapolated from one trial)"] = 3600 / one
    if clock.fits("one pack", 60):
        import torch

        t0 = time.perf_counter()
        tr = _trainer(sl, list(range(trials)), steps, sl.train.bf16, "off")
        for _ in range(steps):
            tr._train_step()
        torch.cuda.synchronize()
        rates[f"one pack of {trials}"] = trials / (time.perf_counter() - t0) * 3600
        del tr
    if clock.fits(f"{procs} processes", one * trials / procs * 2 + 30):
        t0 = time.perf_counter()
        per = trials // procs
        cmd = [sys.executable, __file__, "--_lone", str(per), str(steps)]
        ps = [subprocess.Popen(cmd, cwd=ROOT) for _ in range(procs)]
        bad = [p.wait() for p in ps]
        if any(bad):
            print(f"  {procs} processes: exit codes {bad}")
        else:
            rates[f"{procs} processes of one trial each"] = procs * per / (time.perf_counter() - t0) * 3600
    for name, r in rates.items():
        print(f"  {name:45s}{r:12.0f} trials per GPU-hour")
    one_key = next((k for k in rates if k.startswith("one at a time")), None)
    pack_key = f"one pack of {trials}"
    if one_key and pack_key in rates:
        ratio = rates[pack_key] / rates[one_key]
        print(f"  packs / one at a time: {ratio:.1f}x (target >= {RATIO_TARGET:g}x): "
              f"{'PASS' if ratio >= RATIO_TARGET else 'MISS'}")


def member_equals_lone(sl: Slice, steps: int) -> None:
    """Member 2 of a pack of 4 against the same trial alone, on CUDA: losses, generations, every curve metric."""
    import numpy as np
    import torch

    from analysis.metrics import evaluate, index_training_set
    from rhm import Grammar

    print(f"2. a packed member against its lone run on CUDA ({steps} steps, fp32)")
    grammar = Grammar.from_spec(sl.grammar)
    runs = {}
    for name, seeds, member in (("pack", [0, 1, 2, 3], 2), ("lone", [2], 0)):
        tr = _trainer(sl, seeds, steps, False, "off")
        tr.run()
        gen = tr.sample_members(256, None, [7] * tr.K)[member].cpu().numpy()
        train = tr.tokens[member, :tr.P[member]].cpu().numpy()
        ev = evaluate(grammar, gen, index_training_set(grammar, train))
        runs[name] = (tr.step_losses[member], gen, ev.scalars)
    (lp, gp, sp), (ll, gl, sl_) = runs["pack"], runs["lone"]
    loss_diff = float((lp - ll).abs().max())
    same = float(np.mean((gp == gl).all(1)))
    diff = {k: (sp[k], sl_[k]) for k in sp if not (sp[k] == sl_[k] or (np.isnan(sp[k]) and np.isnan(sl_[k])))}
    print(f"  max |loss difference| over the last evaluation's steps: {loss_diff:.2e}; generations identical: "
          f"{same:.1%}; metrics that differ: {diff if diff else 'none'}")
    print(f"  {'PASS' if not diff and same == 1.0 else 'DIFFERS'}")


# ------------------------------------------------------------------------------------------------ main
def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--budget", type=float, default=480.0, help="wall-clock seconds for the whole check")
    ap.add_argument("--seconds", type=float, default=2.0, help="timed seconds per throughput row")
    ap.add_argument("--trials", type=int, default=64)
    ap.add_argument("--steps", type=int, default=300, help="training steps per trial in section 3")
    ap.add_argument("--procs", type=int, default=8)
    ap.add_argument("--_lone", nargs=2, type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args._lone:
        _train_lone(paper_slice(), list(range(args._lone[0])), args._lone[1])        # seeds: throughput only
        return 0
    clock = Clock(args.budget)
    check_imports()
    sl = paper_slice()
    check_tests_exist()
    import torch

    if not torch.cuda.is_available():
        print(f"gpu_check: no CUDA GPU here; checked that {', '.join(MODULES)} import without "
              f"{', '.join(BLOCKED)}, the paper slice's settings validate and the CUDA tests exist; nothing run")
        return 0
    print(f"gpu_check on {torch.cuda.get_device_name(0)}, torch {torch.__version__}, budget {args.budget:.0f} s")
    run_cuda_tests()
    member_equals_lone(sl, 200)
    three_ways(sl, clock, args.trials, args.steps, args.procs)
    throughput(sl, clock, args.seconds)
    print(f"gpu_check: done in {args.budget - clock.left():.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
