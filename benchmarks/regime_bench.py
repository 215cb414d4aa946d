"""The `regime` preset's wall time before and after compiled packs (issue 21), on a fixed slice run end to end.

A slice of sweeps/presets/regime.yaml (default: P in {1024, 256} x grammar seeds {0, 1} x data seeds {0, 1} = 8
trials of --steps training steps, no early stop, the preset's model and evaluations) runs through `memsweep run`
(embedded Ray, --workers 2, the path of a user's sweep), each run a new process writing a fresh temporary store:

  before  `pack.size=1 train.compile=off`: one eager trial per worker at a time (the preset before issue 21);
  after   `pack.size=ceil(trials / workers) train.compile=step`: one compiled pack per worker.

A run's time is its process's wall time, start to exit: Python and Ray start-up, the compile, training, every
evaluation and store write. Rounds alternate the sides, rotating which goes first; the ratio is the median over
rounds of before / after of the same round, so a shared machine whose speed drifts slows both sides of a ratio
alike. Member-steps/s: trials x steps / wall (every trial is checked in the store to have trained all its steps).

Inductor's on-disk cache (TORCHINDUCTOR_CACHE_DIR) is the benchmark's own, empty at the start, unless
--inductor-cache names one. Every run is a cold process, so a compiled run traces its graphs again; what the disk
cache keeps is inductor's generated code. Before the rounds, one compiled run fills the cache: it is timed and
reported apart, outside the ratio, as the cold-cache figure (a worker's first compile on a fresh machine); in the
rounds the compiled runs start with a warm disk cache, as every run after the first does on one machine.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

PRESET = "regime"
SIDES = ("before", "after")


@dataclass(frozen=True)
class Slice:
    """The trials and steps of the preset that both sides run."""

    P: tuple[int, ...]
    grammar_seeds: tuple[int, ...]
    seeds: tuple[int, ...]
    steps: int
    workers: int
    extra: tuple[str, ...] = ()          # further overrides, applied to both sides (e.g. eval.n_gen=16 in a test)
    compile: str = "step"                # the after side's train.compile (off only to test the benchmark itself)

    @property
    def n_trials(self) -> int:
        return len(self.P) * len(self.grammar_seeds) * len(self.seeds)

    @property
    def pack_size(self) -> int:
        """Packs sized so every worker trains one (the after side)."""
        return math.ceil(self.n_trials / self.workers)

    def overrides(self, side: str) -> list[str]:
        """`memsweep run` overrides of the preset for `side`."""
        sides = {"before": ["pack.size=1", "train.compile=off"],
                 "after": [f"pack.size={self.pack_size}", f"train.compile={self.compile}"]}
        return [f"axes.P={list(self.P)}", f"axes.grammar.seed={list(self.grammar_seeds)}",
                f"axes.seed={list(self.seeds)}", f"train.steps={self.steps}", "~stop", *self.extra, *sides[side]]


@dataclass(frozen=True)
class Run:
    """One timed `memsweep run` process."""

    side: str
    started: float             # time.time() at the start
    wall_s: float
    load_start: float          # the machine's 1-minute load average when the run started and when it ended
    load_end: float

    def member_steps_per_s(self, sl: Slice) -> float:
        return sl.n_trials * sl.steps / self.wall_s


RAY_START_FAILED = "timed out during startup"   # Ray's message when its processes did not come up within 30 s
RAY_START_TRIES = 5


def run_side(sl: Slice, side: str, cache_dir: str) -> Run:
    """Run the slice as `side` in a fresh process and a fresh temporary store; its wall time, start to exit. A
    run whose embedded Ray did not start (a starved machine) is started again, up to RAY_START_TRIES times, and
    said; its time is the run that started."""
    for attempt in range(1, RAY_START_TRIES + 1):
        run, err = _run_once(sl, side, cache_dir)
        if run is not None:
            return run
        if RAY_START_FAILED not in err or attempt == RAY_START_TRIES:
            raise SystemExit(err)
        say(f"  {side}: Ray did not start (try {attempt} of {RAY_START_TRIES}, load {os.getloadavg()[0]:.1f}); "
            "starting the run again")
    raise AssertionError("unreachable")


def _run_once(sl: Slice, side: str, cache_dir: str) -> tuple[Run | None, str]:
    """One `memsweep run` of the slice as `side`: (its Run, "") or (None, what went wrong)."""
    from sweeps.runner import trial_outcomes

    root = tempfile.mkdtemp(prefix=f"regimebench-{side}-")
    store = os.path.join(root, "store")
    cmd = [sys.executable, "-m", "sweeps.cli", "run", PRESET, "--store", store, "--workers", str(sl.workers),
           "--no-progress", *sl.overrides(side)]
    env = {"RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0", **os.environ,
           "TORCHINDUCTOR_CACHE_DIR": cache_dir}
    try:
        load_start, started = os.getloadavg()[0], time.time()
        t0 = time.perf_counter()
        out = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
        wall = time.perf_counter() - t0
        load_end = os.getloadavg()[0]
        if out.returncode != 0:
            return None, (f"regime_bench: the {side} run failed (exit {out.returncode}): {' '.join(cmd)}\n"
                          f"{out.stdout[-3000:]}\n{out.stderr[-3000:]}")
        outcomes = trial_outcomes(store, PRESET)
        short = {tid: o for tid, o in outcomes.items() if o[0] != "done" or o[1] != sl.steps}
        if len(outcomes) != sl.n_trials or short:
            return None, (f"regime_bench: the {side} run stored {len(outcomes)} trials, expected {sl.n_trials} "
                          f"done at step {sl.steps}; not so: {short}")
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return Run(side, started, wall, load_start, load_end), ""


def say(line: str) -> None:
    """Print a progress line at once (a long benchmark's output may go to a file)."""
    print(line, flush=True)


def run_rounds(sl: Slice, rounds: int, cache_dir: str) -> list[dict[str, Run]]:
    """`rounds` rounds of both sides, alternating which goes first."""
    out = []
    for r in range(rounds):
        order = SIDES if r % 2 == 0 else SIDES[::-1]
        runs = {}
        for side in order:
            runs[side] = run_side(sl, side, cache_dir)
            say(f"  round {r + 1} {side:6s} {runs[side].wall_s:7.1f} s  (load {runs[side].load_start:.1f} -> "
                f"{runs[side].load_end:.1f})")
        out.append(runs)
    return out


def summarize(sl: Slice, rounds: list[dict[str, Run]], warmup: Run | None, cold: bool) -> dict:
    """Per side the wall times (each round, median) and member-steps/s; the ratio before / after (median over
    rounds of the ratio within a round, and of the medians); the warm-up run (`cold`: it started with an empty
    inductor disk cache) with its ratio to the median before."""
    sides = {}
    for side in SIDES:
        walls = [r[side].wall_s for r in rounds]
        sides[side] = {"wall_s": walls, "median_s": statistics.median(walls),
                       "member_steps_per_s": sl.n_trials * sl.steps / statistics.median(walls)}
    per_round = [r["before"].wall_s / r["after"].wall_s for r in rounds]
    res = {"preset": PRESET, "slice": {**asdict(sl), "n_trials": sl.n_trials, "pack_size": sl.pack_size},
           "overrides": {s: sl.overrides(s) for s in SIDES}, "sides": sides,
           "rounds": [{s: asdict(r[s]) for s in SIDES} for r in rounds], "ratio_per_round": per_round,
           "ratio": statistics.median(per_round),
           "ratio_of_medians": sides["before"]["median_s"] / sides["after"]["median_s"]}
    if warmup is not None:
        res["warmup"] = {**asdict(warmup), "cold_cache": cold, "ratio": sides["before"]["median_s"] / warmup.wall_s}
    return res


def cache_note(own: bool, cache_dir: str, warm: bool, warmup: bool) -> str:
    """What state inductor's disk cache was in, at the start and in the rounds."""
    start = "the benchmark's own, empty" if own else f"{cache_dir}, {'warm' if warm else 'empty'}"
    if warmup:
        rounds = "the warm-up run filled it" if not warm else "the warm-up run used it"
        return f"{start} at the start; {rounds}, so every compiled run of the rounds started with it warm"
    return f"{start} at the start; no warm-up run, so round 1's compiled run " + \
        ("found it warm" if warm else "filled it (its time includes the cold compile)")


def report(res: dict, note: str) -> None:
    """Print the result."""
    sl = res["slice"]
    print(f"{PRESET} slice: P {sl['P']} x grammar seeds {sl['grammar_seeds']} x seeds {sl['seeds']} = "
          f"{sl['n_trials']} trials x {sl['steps']} steps, no early stop, --workers {sl['workers']}, "
          f"cores={os.cpu_count()}")
    for side in SIDES:
        s = res["sides"][side]
        each = ", ".join(f"{w:.1f}" for w in s["wall_s"])
        print(f"{side:6s} {' '.join(res['overrides'][side][-2:]):32s} median {s['median_s']:7.1f} s "
              f"(rounds {each})  {s['member_steps_per_s']:6.0f} member-steps/s")
    per = ", ".join(f"{x:.2f}" for x in res["ratio_per_round"])
    print(f"ratio before / after: {res['ratio']:.2f}x (median of the rounds' {per}; of the medians "
          f"{res['ratio_of_medians']:.2f}x)")
    if "warmup" in res:
        w = res["warmup"]
        print(f"warm-up: a compiled run with a {'cold' if w['cold_cache'] else 'warm'} inductor disk cache, outside "
              f"the ratio: {w['wall_s']:.1f} s, {w['ratio']:.2f}x against the median before")
    print(f"inductor cache: {res['inductor_cache']}")
    loads = [x for r in res["rounds"] for side in SIDES for x in (r[side]["load_start"], r[side]["load_end"])]
    print(f"load average (1 min) at the runs' starts and ends: {min(loads):.1f}-{max(loads):.1f} on "
          f"{os.cpu_count()} cores; other jobs' load falls on both sides alike as far as the alternation evens it")
    if note:
        print(f"note: {note}")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=2000, help="training steps per trial (default 2000)")
    ap.add_argument("--rounds", type=int, default=2, help="rounds of both sides, alternated (default 2)")
    ap.add_argument("--P", type=int, nargs="+", default=[1024, 256], help="the slice's P values (default 1024 256)")
    ap.add_argument("--grammar-seeds", type=int, nargs="+", default=[0, 1])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1], help="data seeds")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--set", dest="extra", action="append", default=[], metavar="KEY=VALUE",
                    help="a further override of the preset for both sides (repeatable)")
    ap.add_argument("--compile", default="step", choices=("step", "network", "off"),
                    help="the after side's train.compile (default step; the test uses off: it checks the benchmark, "
                         "not the compile, which tests/test_compile.py checks)")
    ap.add_argument("--no-warmup", action="store_true", help="no cold-cache compiled run before the rounds")
    ap.add_argument("--inductor-cache", default=None, metavar="DIR",
                    help="inductor's disk cache to use (default: a fresh empty one, removed at the end)")
    ap.add_argument("--note", default="", help="a line printed with the result (e.g. what else loads the machine)")
    ap.add_argument("--json", default=None, metavar="FILE", help="also write the result as JSON")
    args = ap.parse_args(argv)
    for name in ("steps", "rounds", "workers"):
        if getattr(args, name) < 1:
            ap.error(f"--{name} must be a positive integer, got {getattr(args, name)}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    sl = Slice(tuple(args.P), tuple(args.grammar_seeds), tuple(args.seeds), args.steps, args.workers,
               tuple(args.extra), args.compile)
    own_cache = args.inductor_cache is None
    cache_dir = tempfile.mkdtemp(prefix="regimebench-inductor-") if own_cache else args.inductor_cache
    warm = Path(cache_dir).is_dir() and any(Path(cache_dir).iterdir())
    try:
        warmup = None
        if not args.no_warmup:
            warmup = run_side(sl, "after", cache_dir)
            say(f"  warm-up after {warmup.wall_s:7.1f} s  (compiled, {'warm' if warm else 'cold'} inductor disk "
                  "cache; outside the ratio)")
        rounds = run_rounds(sl, args.rounds, cache_dir)
    finally:
        if own_cache:
            shutil.rmtree(cache_dir, ignore_errors=True)
    res = summarize(sl, rounds, warmup, cold=not warm)
    res["inductor_cache"] = cache_note(own_cache, cache_dir, warm, warmup is not None)
    res["note"] = args.note
    report(res, args.note)
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
