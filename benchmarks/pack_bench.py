"""Member-steps per second of packs (K trials in one vectorized step) against the lone-trial trainer of `main`.

Sides, timed in one process: `main`, the Trainer and network of commit BASELINE (the last `main` before packs),
imported from git history (`git show BASELINE:models/...`) into a private package, training one trial; and the
pack Trainer of this tree at K in --packs (default 1, 4, 16, 64) and each `train.compile` mode in --compile
(default off, network, step), each member a trial with its own seed and data. A compiled side's first steps pay
its compilation, printed as its warm-up (later sides of the same shapes reuse the process's compiled graphs).
Every side trains the same network (main's init, draw for draw), with AdamW, clipping 1.0, a batch of `batch`
strings per trial; timed are training steps (`Trainer._train_step`, no evaluations). A member-step is one
optimizer step of one trial, so `main` does one per step and a pack K.

Rounds alternate the sides (rotating which goes first), each side training for about --seconds per round, and
every figure is a median over rounds: the ratio to `main` is the median of the per-round ratios, so a machine whose
speed drifts (shared cores) slows both sides of a ratio alike. Rates are given per wall-clock second and per CPU
second of the process (on CPU): on a machine shared with other jobs the CPU clock leaves out the time they took. Memory per member: `estimate_memory` (weights,
gradients, AdamW moments, activations, data) and the measured peak RSS growth (VmHWM, reset first) of a fresh process that builds the
side and trains 3 steps, after a tiny warm-up model took torch's one-time allocations, divided by K
(`--no-memory` skips the subprocesses).

Models: `demo` (masked transformer width 64, depth 2, 4 heads, d = 8, v = 16, batch 32), `regime`
(sweeps/presets/regime.yaml: masked tree_conv width 64, depth 2, v = 8, d = 8, batch 32) and `paper`
(sweeps/presets/paper.yaml: width 128, depth 3, 4 heads, v = 32, d = 8 (--paper-L 4: d = 16), batch 128).
Targets (CPU, one thread), the best (K, compile) against the lone eager trial of this tree (K = 1, compile off):
>= 3x for `regime`, >= 2x for `demo`; and the best eager pack >= 1.5x main's for `demo`.
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import importlib
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from models import ModelConfig, TrainConfig, Trainer, build_model, estimate_memory  # noqa: E402

BASELINE = "9bdc025bdedb0771e721be16c2a31cfbe963b7a4"     # main before packs: one trial per Trainer
BASELINE_FILES = ("__init__", "backbones", "config", "diffusion", "train")
TARGET = 1.5                                   # demo: best eager pack against main
TARGETS = {"regime": 3.0, "demo": 2.0}         # best (K, compile) against this tree's lone eager trial


@dataclasses.dataclass(frozen=True)
class Bench:
    """One benchmarked network: model and training settings shared by every side."""

    name: str
    model: ModelConfig
    v: int
    s: int
    L: int
    batch: int
    lr: float

    @property
    def d(self) -> int:
        return self.s ** self.L

    def describe(self) -> str:
        m = self.model
        return (f"{self.name}: {m.process}/{m.backbone} width={m.width} depth={m.depth} heads={m.heads} "
                f"d={self.d} v={self.v} batch={self.batch}")


def benches(paper_L: int) -> dict[str, Bench]:
    return {
        "demo": Bench("demo", ModelConfig(width=64, depth=2, heads=4), v=16, s=2, L=3, batch=32, lr=1e-3),
        "regime": Bench("regime", ModelConfig(backbone="tree_conv", width=64, depth=2), v=8, s=2, L=3, batch=32,
                        lr=1e-3),
        "paper": Bench("paper", ModelConfig(width=128, depth=3, heads=4), v=32, s=2, L=paper_L, batch=128,
                       lr=3e-4),
    }


def load_baseline() -> object:
    """`models` as of BASELINE, from git history, importable as `baseline_models`."""
    pkg = Path(tempfile.mkdtemp(prefix="pack-bench-")) / "baseline_models"
    pkg.mkdir()
    for f in BASELINE_FILES:
        try:
            src = subprocess.run(["git", "-C", str(ROOT), "show", f"{BASELINE}:models/{f}.py"], check=True,
                                 capture_output=True, text=True).stdout
        except (OSError, subprocess.CalledProcessError) as e:
            raise SystemExit(f"cannot read the baseline models/{f}.py at commit {BASELINE[:7]} from git history "
                             f"({e}): run the benchmark from a git checkout of memsweep") from e
        (pkg / f"{f}.py").write_text(src)
    sys.path.insert(0, str(pkg.parent))
    return importlib.import_module("baseline_models")


def member_data(b: Bench, k: int) -> torch.Tensor:
    """Member k's training set: random strings (throughput does not depend on the grammar), P varying by member."""
    return torch.randint(b.v, (192 + 16 * (k % 5), b.d), generator=torch.Generator().manual_seed(k))


class Side:
    """One side of the comparison: `main` (K = 1, baseline code) or a pack of K members of this tree."""

    def __init__(self, b: Bench, K: int | None, device: str, base: object | None, compile_: str = "off") -> None:
        self.K, self.compile = (1 if K is None else K), compile_
        self.label = f"main ({BASELINE[:7]})" if K is None else f"K={K} {compile_}"
        self.warmup = float("nan")
        tcfg = dict(steps=10, batch_size=b.batch, lr=b.lr, device=device)
        if K is None:
            model = base.build_model(base.ModelConfig(**dataclasses.asdict(b.model)), b.v, b.d, b.s, b.L, seed=0)
            self.trainer = base.Trainer(model, member_data(b, 0), base.TrainConfig(**tcfg))
        else:
            seeds = list(range(K))
            model = build_model(b.model, b.v, b.d, b.s, b.L, seed=seeds)
            self.trainer = Trainer(model, [member_data(b, k) for k in seeds], TrainConfig(**tcfg, compile=compile_),
                                   seeds=seeds)
        self.device = torch.device(device)

    def train(self, steps: int) -> tuple[float, float]:
        """Member-steps per second over `steps` training steps: per wall-clock second and per CPU second of this
        process (on a shared machine the second does not count the time other processes took the core)."""
        tr = self.trainer
        # main's trainer runs its steps with its own global-RNG state swapped in (dropout); packs need no swap
        ctx = tr._fork_global_rng() if self.K == 1 and hasattr(tr, "_fork_global_rng") else contextlib.nullcontext()
        _sync(self.device)
        t0, c0 = time.perf_counter(), time.process_time()
        with ctx:
            for _ in range(steps):
                tr._train_step()
        _sync(self.device)
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        return self.K * steps / wall, self.K * steps / max(cpu, 1e-9)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def run_rounds(sides: list[Side], rounds: int, seconds: float) -> dict[str, dict[str, list[float]]]:
    """Per clock ("wall", "cpu") and side, member-steps/s in each round; sides alternate, the first one rotating
    round by round."""
    steps = {}
    for s in sides:                                          # warm-up, and steps per segment from its speed
        t0 = time.perf_counter()
        s.train(2)
        s.warmup = time.perf_counter() - t0
        rate, _ = s.train(3)
        steps[s.label] = max(2, round(seconds * rate / s.K))
    rates: dict[str, dict[str, list[float]]] = {c: {s.label: [] for s in sides} for c in ("wall", "cpu")}
    for r in range(rounds):
        for s in sides[r % len(sides):] + sides[:r % len(sides)]:
            wall, cpu = s.train(steps[s.label])
            rates["wall"][s.label].append(wall)
            rates["cpu"][s.label].append(cpu)
    return rates


def measured_memory(bench: str, K: int | None, paper_L: int, device: str) -> float:
    """Peak resident-memory growth per member (bytes) of a fresh process building the side and training 3 steps."""
    cmd = [sys.executable, __file__, "--_memory", bench, str(K or 0), "--paper-L", str(paper_L), "--device", device]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return float(json.loads(out.strip().splitlines()[-1])["per_member"])


def _memory_child(bench: str, K: int, paper_L: int, device: str) -> None:
    torch.set_num_threads(1)
    b = benches(paper_L)[bench]
    base = load_baseline() if K == 0 else None
    dev = torch.device(device)
    warm = Bench("warm-up", ModelConfig(width=8, depth=1, heads=2), v=4, s=2, L=2, batch=4, lr=1e-3)
    Side(warm, 1, device, None).train(2)          # torch's one-time allocations are not the side's memory
    rss0 = _rss_now()
    _reset_peak_rss()
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
    side = Side(b, None if K == 0 else K, device, base)
    side.train(3)
    peak = (torch.cuda.max_memory_allocated(dev) if dev.type == "cuda"
            else _peak_rss() - rss0)
    print(json.dumps({"per_member": peak / side.K}))


def _rss_now() -> int:
    return _status_kib("VmRSS") * 1024


def _peak_rss() -> int:
    return _status_kib("VmHWM") * 1024


def _reset_peak_rss() -> None:
    """Linux: writing 5 to clear_refs resets the peak resident set size (VmHWM) to the current one."""
    Path("/proc/self/clear_refs").write_text("5")


def _status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"/proc/self/status has no {field}: the memory measurement needs Linux")


def report(b: Bench, sides: list[Side], rates: dict[str, dict[str, list[float]]], memory: dict[str, float] | None,
           args: argparse.Namespace) -> dict[str, dict[str, tuple[float, str]]]:
    """Print the table of one model; return per clock the best eager pack's median ratio to main ("main") and the
    best side's median ratio to the lone eager trial ("lone"), each with the side's label."""
    main, lone = sides[0].label, "K=1 off"
    print(f"\n{b.describe()}; threads={args.threads} device={args.device} rounds={args.rounds}")
    print(f"{'side':16s}{'wall m-steps/s':>15s}{'x main':>8s}{'x lone':>8s}{'cpu m-steps/s':>15s}{'x lone':>8s}"
          f"{'warm-up s':>10s}{'MiB/member: est':>17s}{'measured':>10s}   per-round wall x lone")
    best = {c: {"main": (0.0, ""), "lone": (0.0, "")} for c in ("wall", "cpu")}
    for s in sides:
        cols = []
        for clock in ("wall", "cpu"):
            vs_main = statistics.median([r / m for r, m in zip(rates[clock][s.label], rates[clock][main])])
            ratios = [r / m for r, m in zip(rates[clock][s.label], rates[clock][lone])]
            if s is not sides[0] and s.compile == "off":
                best[clock]["main"] = max(best[clock]["main"], (vs_main, s.label))
            if s is not sides[0]:
                best[clock]["lone"] = max(best[clock]["lone"], (statistics.median(ratios), s.label))
            cols.append((statistics.median(rates[clock][s.label]), vs_main, statistics.median(ratios), ratios))
        model = s.trainer.model if not s.label.startswith("main") else build_model(b.model, b.v, b.d, b.s, b.L, 0)
        est = estimate_memory(model, b.batch, max(member_data(b, k).shape[0] for k in range(s.K))).per_member
        meas = f"{memory[s.label] / 2 ** 20:10.1f}" if memory and s.label in memory else f"{'-':>10s}"
        (w, wm, wl, wls), (c, _, cl, _) = cols
        print(f"{s.label:16s}{w:15.1f}{wm:8.2f}{wl:8.2f}{c:15.1f}{cl:8.2f}{s.warmup:10.1f}{est / 2 ** 20:17.1f}"
              f"{meas}   {', '.join(f'{x:.2f}' for x in wls)}")
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--models", default="regime,demo,paper", help="comma-separated: regime, demo, paper")
    ap.add_argument("--packs", default="1,4,16,64", help="pack sizes K to time")
    ap.add_argument("--compile", default="off,network,step", help="train.compile modes to time (off always is)")
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--seconds", type=float, default=1.0, help="training time per side and round")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--paper-L", type=int, default=3, choices=(3, 4), help="paper model depth of grammar (d = 2**L)")
    ap.add_argument("--no-memory", action="store_true", help="skip the per-side memory subprocesses")
    ap.add_argument("--_memory", nargs=2, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args._memory:
        _memory_child(args._memory[0], int(args._memory[1]), args.paper_L, args.device)
        return
    torch.set_num_threads(args.threads)
    packs = [int(k) for k in args.packs.split(",")]
    modes = ["off"] + [m for m in args.compile.split(",") if m and m != "off"]
    base = load_baseline()
    results = {}
    for name in args.models.split(","):
        b = benches(args.paper_L)[name]
        sides = [Side(b, None, args.device, base), Side(b, 1, args.device, None)]      # main, the lone eager trial
        sides += [Side(b, K, args.device, None, m) for m in modes for K in packs if (K, m) != (1, "off")]
        rates = run_rounds(sides, args.rounds, args.seconds)
        memory = None if args.no_memory else {    # compiling does not change what a pack holds: eager sides only
            s.label: measured_memory(name, None if s.label.startswith("main") else s.K, args.paper_L, args.device)
            for s in sides if s.compile == "off"}
        results[name] = report(b, sides, rates, memory, args)
        del sides
    for name, best in results.items():
        for clock in ("wall", "cpu"):
            if name == "demo":
                (r, who) = best[clock]["main"]
                print(f"demo: best eager pack ({who}) {r:.2f}x main's member-steps per {clock} second "
                      f"(target >= {TARGET}): {'PASS' if r >= TARGET else 'MISS'}")
            (r, who) = best[clock]["lone"]
            target = TARGETS.get(name)
            verdict = f" (target >= {target}): {'PASS' if r >= target else 'MISS'}" if target else ""
            print(f"{name}: best side ({who}) {r:.2f}x the lone eager trial's member-steps per {clock} second"
                  f"{verdict}")


if __name__ == "__main__":
    main()
