"""What `memsweep run` and `memsweep demo` do around `sweeps.runner.run_sweep`: load the spec with its overrides,
print it, check what the spec alone cannot tell before any work, run, and end as the user asked (a Ctrl-C exits
130 with the command that resumes the sweep). Heavy modules are imported inside the functions (see sweeps.cli).
"""
from __future__ import annotations

import argparse
import shlex
from collections.abc import Sequence
from typing import Any

from sweeps.plan import plan_line, planned

EXIT_INTERRUPTED = 130


def load(args: argparse.Namespace, spec_arg: str | None = None) -> Any:
    """The validated spec of a file path or preset name, with the overrides and --store applied."""
    from sweeps.spec import load_spec

    spec = load_spec(spec_arg or args.spec, getattr(args, "overrides", ()))
    return spec.with_store(args.store) if getattr(args, "store", None) else spec


def _base(args: argparse.Namespace) -> Any:
    """The spec the command names, without its overrides (whose description was written for it); None when it
    does not validate alone."""
    from sweeps.spec import SpecError, load_spec

    try:
        return load_spec(args.spec) if getattr(args, "overrides", ()) else None
    except SpecError:
        return None


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


def print_spec(spec: Any, console: Any, overrides: Sequence[str] = (), workers: int | None = None,
               base: Any = None) -> None:
    """Name, mode, store, resources and the grid of a spec (with the Optuna study and journal of the Optuna modes),
    then the effective spec as compact YAML. With overrides, the spec's own description (which they may have made
    wrong) is followed by the plan recomputed: trials, packs, time, idle workers."""
    console.print(f"[bold]{spec.name}[/bold]: {spec.description}" if spec.description else f"[bold]{spec.name}[/bold]")
    if overrides:
        console.print(f"  with {' '.join(overrides)}: {plan_line(spec, workers, base)}", highlight=False,
                      markup=False)
    console.print(f"  mode {spec.mode}, store {spec.store}", highlight=False)
    res = spec.resources
    unit = f"pack of up to {spec.pack.size} trials" if spec.packed else "trial"
    console.print(f"  per {unit}: cpu {res.cpu:g}, gpu {res.gpu:g}")
    grid = spec.grid_summary()
    sizes = " x ".join(f"{len(values)} {name}" for name, values in grid)
    if spec.mode == "optuna-boundary":
        console.print(f"  {spec.optuna.trials} trials chosen by Optuna (TPE) among {spec.n_trials} grid points = "
                      f"{sizes}")
    else:
        console.print(f"  {spec.n_trials} trials = {sizes}")
    if spec.mode != "grid":
        print_study(spec, console)
    for name, values in grid:
        console.print(f"    {name}: {', '.join(values)}", highlight=False)
    _print_chance(spec, console)
    console.print("  effective spec:", highlight=False)
    for line in spec.to_yaml().splitlines():
        console.print(f"    {line}", highlight=False, markup=False)


def _print_chance(spec: Any, console: Any) -> None:
    """A warning per grammar of the spec whose chance level of validity exceeds 1% (analysis.flags)."""
    from analysis.flags import chance_warning

    shapes = {(g.v, g.n_c, g.m, g.s, g.L): g for g in (t.grammar for t in spec.trials())} if spec.mode != \
        "optuna-boundary" else {}
    for g in shapes.values():
        text = chance_warning(g)
        if text:
            console.print(f"  [yellow]warning[/yellow]: {text}", highlight=False, soft_wrap=True)


def print_study(spec: Any, console: Any) -> None:
    """Where an Optuna mode keeps its study: the study's name and its journal file."""
    from sweeps.optuna_mode import journal_path, study_name
    from sweeps.runner import default_storage_path

    name = study_name(spec)
    why = (" (its last part hashes the grid's axes: Optuna cannot change a parameter's choices within a study, so a "
           "changed grid is a new study)") if spec.mode == "optuna-grid" else ""
    console.print(f"  optuna study {name!r}{why}", highlight=False)
    console.print(f"  optuna journal {journal_path(spec, default_storage_path(spec.store))}", highlight=False)


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
    """Whether nothing is left to run: the store lists every trial of a grid (`optuna.trials` of an optuna-grid's
    points) as finished; an optuna-boundary study's journal holds its `optuna.trials` complete trials. Read from
    the store and the journal, before Ray starts."""
    from sweeps.runner import finished_trials

    if spec.mode == "optuna-boundary":
        from sweeps.optuna_mode import complete_trials, journal_path
        from sweeps.runner import default_storage_path

        return complete_trials(spec, journal_path(spec, default_storage_path(spec.store))) >= spec.optuna.trials
    ids = {t.trial_id for t in spec.trials()}
    return len(ids & finished_trials(spec.store, spec.name)) >= planned(spec, len(ids))


def run(spec: Any, args: argparse.Namespace, console: Any) -> Any:
    """Run a spec through the runner; prints what happened; returns the SweepResult (None: nothing to resume).
    Only memsweep's own lines, unless --verbose (sweeps.quiet)."""
    from sweeps import quiet

    quiet.apply(verbose=getattr(args, "verbose", False))
    if all_finished(spec):
        n = planned(spec, spec.n_trials)
        console.print(f"{spec.name}: all {n} trials are already finished in {spec.store}; nothing to "
                      f"{'resume' if args.resume else 'run'}", highlight=False)
        return None
    print_spec(spec, console, getattr(args, "overrides", ()), args.workers, _base(args))
    preflight(spec, local=args.address is None)
    from sweeps.runner import run_sweep
    from sweeps.spec.storage import spec_copy_uri

    console.print(f"  effective spec kept at {spec_copy_uri(spec)}", highlight=False)
    result = run_sweep(spec, workers=args.workers, address=args.address, resume=args.resume,
                       progress=not args.no_progress)
    if result.interrupted:
        console.print(f"{spec.name}: interrupted: {result.n_done} trials finished, {result.n_failed} failed, "
                      f"{result.n_interrupted} interrupted, {result.n_not_started} not started{_diverged(result)}; "
                      f"rows up to each trial's last evaluation are in {result.store}", highlight=False)
        console.print(f"resume with: {resume_command(args)}", highlight=False, markup=False)
        raise SystemExit(EXIT_INTERRUPTED)
    console.print(f"{spec.name}: {result.n_done} trials finished, {result.n_failed} failed, "
                  f"{result.n_skipped} already in the store{_diverged(result)}; store {result.store}", highlight=False)
    return result


def _diverged(result: Any) -> str:
    """', N diverged' for the closing line when trials diverged (they count neither as finished nor as failed)."""
    return f", {result.n_diverged} diverged" if result.n_diverged else ""
