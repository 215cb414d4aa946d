"""Sweeps through Ray Tune on the `tiny` preset: complete curves, Optuna grid coverage and continuation, resume."""
from __future__ import annotations

from pathlib import Path

import pytest

from analysis.store import Store
from models import eval_schedule
from sweeps.optuna_mode import study_name
from sweeps.runner import run_sweep
from sweeps.spec import SweepSpec, load_spec

pytestmark = pytest.mark.ray


def tiny(tmp_path: Path, name: str = "tiny", mode: str = "grid", P: list[int] | None = None,
         steps: int = 60) -> SweepSpec:
    """The tiny preset, shortened to a few-second trial, one tail, writing under tmp_path."""
    raw = dict(load_spec("tiny").raw)
    raw.update(name=name, mode=mode, store=str(tmp_path / "store"))
    raw["axes"] = {"tail": [{"family": "uniform"}], "P": P or [4, 8], "seed": [0]}
    raw["train"] = {**raw["train"], "steps": steps}
    raw.pop("stop", None)  # full budget: every scheduled evaluation must appear
    if mode.startswith("optuna"):
        raw["optuna"] = {"journal": str(tmp_path / "optuna.journal")}
    return SweepSpec.from_dict(raw)


def assert_complete_curves(spec: SweepSpec) -> None:
    """Every trial has every scheduled eval step exactly once in curves, and a done trials row."""
    store = Store(spec.store)
    curves = store.read("curves", sweep=spec.name, columns=["trial_id", "step"]).to_pylist()
    trials = {r["trial_id"]: r for r in store.read("trials", sweep=spec.name).to_pylist()}
    for t in spec.trials():
        want = eval_schedule(t.train.steps, t.train.evals_per_decade, t.train.first_eval)
        got = sorted(r["step"] for r in curves if r["trial_id"] == t.trial_id)
        assert got == want, (t.trial_id, got, want)
        assert trials[t.trial_id]["status"] == "done"
        assert trials[t.trial_id]["final_step"] == t.train.steps


def test_grid_sweep_writes_complete_curves_and_resume_skips_done(ray_cluster, tmp_path):
    spec = tiny(tmp_path)
    res = run_sweep(spec, workers=2, progress=False)
    assert (res.n_done, res.n_failed, res.n_skipped) == (2, 0, 0)
    assert_complete_curves(spec)
    attempts = {r["trial_id"]: r["attempts"] for r in Store(spec.store).read("trials").to_pylist()}
    # a second invocation with --resume finds everything done in the store and trains nothing
    again = run_sweep(spec, workers=2, resume=True, progress=False)
    assert (again.n_done, again.n_failed, again.n_skipped) == (0, 0, 2)
    assert {r["trial_id"]: r["attempts"] for r in Store(spec.store).read("trials").to_pylist()} == attempts


def test_optuna_grid_visits_every_point_once_and_continues(ray_cluster, tmp_path):
    import optuna

    first = tiny(tmp_path, name="og", mode="optuna-grid", P=[4, 8])
    first.raw["optuna"]["trials"] = 1
    first = SweepSpec.from_dict(first.raw)  # an interrupted exploration: 1 of the 2 points
    assert run_sweep(first, workers=2, progress=False).n_done == 1
    spec = tiny(tmp_path, name="og", mode="optuna-grid", P=[4, 8])
    res = run_sweep(spec, workers=2, progress=False)  # continues the same study: only the other point
    assert (res.n_done, res.n_failed, res.n_skipped) == (1, 0, 1)
    assert_complete_curves(spec)
    storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(
        str(tmp_path / "optuna.journal")))
    study = optuna.load_study(study_name=study_name(spec), storage=storage)
    done = [t.params["data.P"] for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert sorted(done) == [4, 8]
    res3 = run_sweep(spec, workers=2, progress=False)  # nothing left to do
    assert (res3.n_done, res3.experiment_path) == (0, None)
    # an extended grid (a new study, as Optuna cannot grow a categorical) runs only the new point
    bigger = tiny(tmp_path, name="og", mode="optuna-grid", P=[4, 8, 12])
    res4 = run_sweep(bigger, workers=2, progress=False)
    assert (res4.n_done, res4.n_skipped) == (1, 2)
    assert_complete_curves(bigger)
    rows = Store(spec.store).read("trials", sweep="og").to_pylist()
    assert sorted(r["P"] for r in rows) == [4, 8, 12] and all(r["attempts"] == 1 for r in rows)


def test_optuna_boundary_objective_matches_store_and_persists(ray_cluster, tmp_path):
    """Each Optuna trial's objective is (metric at target_step - theta)^2 recomputed from the store's curves, and a
    second invocation with a larger budget continues the same study up to `optuna.trials` in all."""
    import optuna

    spec = tiny(tmp_path, name="ob", mode="optuna-grid", P=[4, 8, 12], steps=60)
    raw = {**spec.raw, "mode": "optuna-boundary"}
    raw["optuna"] = {**raw["optuna"], "trials": 2, "target_step": 40, "metric": "copy_frac", "theta": 0.5}
    run_sweep(SweepSpec.from_dict(raw), workers=2, progress=False)
    raw["optuna"]["trials"] = 4
    spec = SweepSpec.from_dict(raw)
    run_sweep(spec, workers=2, progress=False)
    storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(
        str(tmp_path / "optuna.journal")))
    study = optuna.load_study(study_name=study_name(spec), storage=storage)
    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert len(complete) == 4  # 2 from the first invocation, 2 more from the second, in one study

    curves = Store(spec.store).read("curves", sweep="ob", columns=["trial_id", "step", "copy_frac"]).to_pylist()
    by_P = {r["trial_id"]: r["P"] for r in Store(spec.store).read("trials", sweep="ob").to_pylist()}
    for t in complete:
        tid = next(k for k, P in by_P.items() if P == t.params["data.P"])
        at_target = [r["copy_frac"] for r in sorted(curves, key=lambda r: r["step"])
                     if r["trial_id"] == tid and r["step"] <= 40][-1]
        assert t.value == pytest.approx((at_target - 0.5) ** 2), (t.params, t.value, at_target)
