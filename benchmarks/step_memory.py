"""Memory held by a training segment (the steps between two evaluations), `Trainer.run`'s way against the way it
had before: each step's losses copied into one (K, steps) buffer, against a list of every step's output tensor
stacked at the evaluation. The tails sweep's packs (K = 20 tree_conv members, compile: step) grew to 10.8 GB each
over one late segment of 10,500 steps and Ray's OOM killer ended the sweep.

Each side runs in its own process (one thread, the `tails` preset's model and batch, K members, compile: step),
trains a few steps to warm the compile, then one segment of --steps steps; it prints its resident memory (RSS)
every 30 s and the growth per 1,000 steps. Both processes run at once, so they see the same machine.

    .venv/bin/python benchmarks/step_memory.py [--steps 5000] [--K 20]
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SIDES = ("buffer", "list")


def _rss_mb() -> float:
    return int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def side(name: str, steps: int, K: int) -> None:
    """One side's segment, RSS printed as it goes; the last line: 'name start_mb end_mb'."""
    import torch
    sys.path.insert(0, str(ROOT))
    from models import ModelConfig, TrainConfig
    from models.diffusion import build_model
    from models.train import Trainer

    torch.set_num_threads(1)
    model = build_model(ModelConfig(process="masked", backbone="tree_conv", width=64, depth=2), 8, 9, 3, 2,
                        seed=list(range(K)))
    tokens = [torch.randint(0, 8, (640, 9), generator=torch.Generator().manual_seed(k)) for k in range(K)]
    tr = Trainer(model, tokens, TrainConfig(steps=10**7, batch_size=32, lr=1e-3, device="cpu", compile="step"),
                 seeds=list(range(K)))
    for _ in range(20):                                     # the compile, outside the segment
        tr._train_step()
    start, t0, done = _rss_mb(), time.time(), threading.Event()

    def monitor() -> None:
        while not done.wait(30):
            print(f"  {name:6s} {time.time() - t0:5.0f} s  rss {_rss_mb():7.0f} MB", flush=True)

    threading.Thread(target=monitor, daemon=True).start()
    if name == "list":                                      # the code before: every step's output kept to the end
        recent = [tr._train_step() for _ in range(steps)]
        torch.stack(recent, dim=1)
    else:                                                   # Trainer.run's way
        out = torch.empty(K, steps)
        for i in range(steps):
            out[:, i] = tr._train_step()
    end = _rss_mb()
    done.set()
    print(f"{name} {start:.1f} {end:.1f}", flush=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=5000, help="steps in the segment (default 5000)")
    ap.add_argument("--K", type=int, default=20, help="members in the pack (default 20, the tails preset's)")
    ap.add_argument("--side", choices=SIDES, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.side:
        side(args.side, args.steps, args.K)
        return 0
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    procs = {s: subprocess.Popen([sys.executable, __file__, "--side", s, "--steps", str(args.steps), "--K",
                                  str(args.K)], stdout=subprocess.PIPE, text=True, env=env) for s in SIDES}
    result = {}
    for s, p in procs.items():
        out, _ = p.communicate()
        lines = out.strip().splitlines()
        print("\n".join(lines[:-1]))
        name, start, end = lines[-1].split()
        result[name] = (float(start), float(end))
    print(f"segment of {args.steps} steps, K = {args.K} tree_conv members, compile: step, one thread each, "
          f"both sides at once")
    for s, (start, end) in result.items():
        print(f"{s:6s} rss {start:7.0f} -> {end:7.0f} MB   {(end - start) / args.steps * 1000:+8.1f} MB per 1,000 steps")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
