"""What a run of a spec trains, for the lines `run` and `validate` print: how many trials `run` plans in all, and
the plan recomputed under overrides (trials, packs, training steps per worker against the spec's own, idle
workers). Display only: nothing here decides what runs."""
from __future__ import annotations

import os
from typing import Any


def plan_line(spec: Any, workers: int | None = None, base: Any = None) -> str:
    """What a run of `spec` trains, recomputed from it: '16 trials in 2 packs of up to 8, 4000 steps each, 4000
    steps per worker on 2 workers', its time as a multiple of `base`'s (the spec without overrides, whose
    description states its time), and a warning when fewer packs than workers leave workers idle."""
    trials = spec.trials()
    workers = workers or max(1, int((os.cpu_count() or 1) / max(spec.resources.cpu, 1e-9)))
    steps = sorted({t.train.steps for t in trials})
    text = f"{len(trials)} trials"
    if spec.packed:
        text += f" in {len(_units(spec))} packs of up to {spec.pack.size}"
    text += f", {steps[0] if len(steps) == 1 else f'{steps[0]}-{steps[-1]}'} steps each"
    per_worker, used = _steps_per_worker(spec, workers)
    text += f": {per_worker:,.0f} training steps per worker on {used} worker(s)"
    if base is not None:
        ratio = per_worker / max(_steps_per_worker(base, workers)[0], 1.0)
        text += f", {ratio:.2g}x those of {base.name} (its description's time scales about with them)"
    n_units = len(_units(spec))
    if spec.packed and n_units < workers:
        hint = f"pack.size={len(trials) // workers} gives each a pack" if len(trials) >= workers else \
            "fewer trials than workers"
        text += f"; only {n_units} packs for {workers} workers: {workers - n_units} stay idle ({hint})"
    return text


def _units(spec: Any) -> list[list[Any]]:
    """What Tune runs: one trial each, or the packs."""
    if not spec.packed:
        return [[t] for t in spec.trials()]
    from sweeps.packing import group_packs

    return [list(p.members) for p in group_packs(spec.trials(), spec.pack.size)]


def _steps_per_worker(spec: Any, workers: int) -> tuple[float, int]:
    """(training steps per worker, workers used): one vectorized step trains a whole pack."""
    units = _units(spec)
    used = min(workers, len(units))
    return sum(max(t.train.steps for t in unit) for unit in units) / used, used


def planned(spec: Any, n_points: int) -> int:
    """How many trials a run of `spec` trains in all: the grid, `optuna.trials` of optuna-grid's points (at most
    all of them), `optuna.trials` for optuna-boundary."""
    if spec.mode == "grid":
        return n_points
    return min(spec.optuna.trials or n_points, n_points) if spec.mode == "optuna-grid" else spec.optuna.trials
