"""What `memsweep run` and `memsweep demo` do around `sweeps.runner.run_sweep`: load the spec with its overrides,
print it, check what the spec alone cannot tell before any work, run, and end as the user asked (a Ctrl-C exits
130 with the command that resumes the sweep). Heavy modules are imported inside the functions (see sweeps.cli).
"""
from __future__ import annotations

import argparse
import os
import shlex
from typing import Any

EXIT_INTERRUPTED = 130

# Ray Tune's own console output is replaced by sweeps.progress: the legacy reporter at verbose=0 prints no
# experiment banner, and the checkpoint-sync warning is noise for trials that checkpoint at every evaluation.
RAY_QUIET_ENV = {"RAY_AIR_NEW_OUTPUT": "0", "TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S": "0",
                 "RAY_USAGE_STATS_ENABLED": "0"}


def load(args: argparse.Namespace, spec_arg: str | None = None) -> Any:
    """The validated spec of a file path or preset name, with the overrides and --store applied."""
    from sweeps.spec import load_spec

    spec = load_spec(spec_arg or args.spec, getattr(args, "overrides", ()))
    return spec.with_store(args.store) if getattr(args, "store", None) else spec


def preflight(spec: Any, local: bool) -> None:
    """Everything a run needs that the spec alone cannot tell, checked before any work: the store is reachable
    (remote stores: a bounded-time probe), Tune's directory and the Optuna journal can be created, and, for a
    run on this machine, every trial fits its memory. SpecError listing the problems."""
    from sweeps.optuna_mode import journal_path
    from sweeps.runner import default_storage_path
    from sweeps.spec import SpecError, bounds, check_access
    from sweeps.spec.storage import check_run_paths

    tune_dir = default_storage_path(spec.store)
    journal = journal_path(spec, tune_dir) if spec.mode != "grid" else None
    problems = check_access(spec.store) + check_run_paths(spec, tune_dir, journal)
    if local:
        device, host = bounds.local_limits(spec.resources.gpu)
        seen = set()
        for trial in spec.trials():
            for kind, msg in bounds.problems(trial, spec.resources.gpu, device, host):
                if kind not in seen:
                    seen.add(kind)
                    problems.append(f"on this machine, trial {trial.trial_id} {msg.replace('per trial', 'here')}")
    if problems:
        raise SpecError(problems, spec.source)


def print_spec(spec: Any, console: Any) -> None:
    """Name, mode, store, resources and the grid of a spec, then the effective spec as compact YAML."""
    console.print(f"[bold]{spec.name}[/bold]: {spec.description}" if spec.description else f"[bold]{spec.name}[/bold]")
    console.print(f"  mode {spec.mode}, store {spec.store}", highlight=False)
    res = spec.resources
    unit = f"pack of up to {spec.pack.size} trials" if spec.packed else "trial"
    console.print(f"  per {unit}: cpu {res.cpu:g}, gpu {res.gpu:g}")
    grid = spec.grid_summary()
    sizes = " x ".join(f"{len(values)} {name}" for name, values in grid)
    console.print(f"  {spec.n_trials} trials = {sizes}")
    for name, values in grid:
        console.print(f"    {name}: {', '.join(values)}", highlight=False)
    console.print("  effective spec:", highlight=False)
    for line in spec.to_yaml().splitlines():
        console.print(f"    {line}", highlight=False, markup=False)


def resume_command(args: argparse.Namespace) -> str:
    """The command that continues this invocation's sweep: the same arguments plus --resume."""
    argv = ["memsweep", args.command]
    if args.command == "run":
        argv.append(args.spec)
    else:
        argv += ["--out", args.out] + (["--spec", args.spec] if args.spec != "demo" else [])
    argv += list(args.overrides)
    for flag in ("store", "workers", "address"):
        if getattr(args, flag, None) is not None:
            argv += [f"--{flag}", str(getattr(args, flag))]
    return shlex.join(argv + ["--resume"])


def all_finished(spec: Any) -> bool:
    """Whether the store lists every trial of a grid-like spec as finished (optuna-boundary: never known)."""
    from sweeps.runner import finished_trials

    if spec.mode == "optuna-boundary":
        return False
    return {t.trial_id for t in spec.trials()} <= finished_trials(spec.store, spec.name)


def run(spec: Any, args: argparse.Namespace, console: Any) -> Any:
    """Run a spec through the runner; prints what happened; returns the SweepResult (None: nothing to resume)."""
    for key, value in RAY_QUIET_ENV.items():
        os.environ.setdefault(key, value)
    if args.resume and all_finished(spec):
        console.print(f"{spec.name}: all {spec.n_trials} trials are already finished in {spec.store}; nothing to "
                      "resume", highlight=False)
        return None
    print_spec(spec, console)
    preflight(spec, local=args.address is None)
    from sweeps.runner import run_sweep
    from sweeps.spec.storage import spec_copy_uri

    console.print(f"  effective spec kept at {spec_copy_uri(spec)}", highlight=False)
    result = run_sweep(spec, workers=args.workers, address=args.address, resume=args.resume,
                       progress=not args.no_progress)
    if result.interrupted:
        console.print(f"{spec.name}: interrupted: {result.n_done} trials finished, {result.n_failed} failed, "
                      f"{result.n_interrupted} interrupted, {result.n_not_started} not started; rows up to each "
                      f"trial's last evaluation are in {result.store}", highlight=False)
        console.print(f"resume with: {resume_command(args)}", highlight=False, markup=False)
        raise SystemExit(EXIT_INTERRUPTED)
    console.print(f"{spec.name}: {result.n_done} trials finished, {result.n_failed} failed, "
                  f"{result.n_skipped} already in the store; store {result.store}", highlight=False)
    return result
