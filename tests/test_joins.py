"""Joins and hooks: the store's trial id in Tune's results and in Optuna, readable Optuna params, Tune callbacks."""
from __future__ import annotations

from pathlib import Path

import pytest
from ray import tune

from analysis.store import Store
from sweeps.optuna_mode import study_name
from sweeps.runner import run_sweep
from sweeps.spec import SweepSpec, load_spec
from sweeps.trial import STORE_ID_KEY

pytestmark = pytest.mark.ray


class Recorder(tune.Callback):
    """What a W&B / MLflow / TensorBoard callback would see: every result Tune hands to callbacks."""

    def __init__(self) -> None:
        self.results: list[dict] = []

    def on_trial_result(self, iteration, trials, trial, result, **info) -> None:
        self.results.append({"config_id": trial.config["trial"]["trial_id"], **result})


def _spec(tmp_path: Path) -> SweepSpec:
    raw = dict(load_spec("tiny").raw, name="joins", mode="optuna-grid", store=str(tmp_path / "store"))
    raw["axes"] = {"tail": [{"family": "uniform"}, {"family": "power", "zipf_a": 0.0, "levels": [0]}], "P": [4]}
    raw["train"] = {**raw["train"], "steps": 40}
    raw["optuna"] = {"journal": str(tmp_path / "optuna.journal")}
    raw.pop("stop")
    return SweepSpec.from_dict(raw)


def test_trial_ids_join_tune_optuna_and_the_store(ray_cluster, tmp_path):
    import optuna

    spec = _spec(tmp_path)
    recorder = Recorder()
    res = run_sweep(spec, workers=2, progress=False, callbacks=[recorder])
    assert (res.n_done, res.n_failed) == (2, 0)
    rows = {r["trial_id"]: r for r in Store(spec.store).read("trials", sweep="joins").to_pylist()}
    assert set(rows) == {t.trial_id for t in spec.trials()}
    # Tune's results carry the store's id (Tune's own `trial_id` is its internal one)
    assert recorder.results and all(r[STORE_ID_KEY] == r["config_id"] for r in recorder.results)
    assert {r[STORE_ID_KEY] for r in recorder.results} == set(rows)
    # Optuna: readable params that are the store's labels, and the store's id as a user attribute
    storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(
        str(tmp_path / "optuna.journal")))
    study = optuna.load_study(study_name=study_name(spec), storage=storage)
    done = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert sorted(t.params["tail"] for t in done) == ["power(a=1)@0", "uniform"]
    for t in done:
        row = rows[t.user_attrs["trial_id"]]
        assert (row["tail"], row["P"]) == (t.params["tail"], t.params["data.P"])
        assert spec.trial_for(spec.point_of_labels(t.params)).trial_id == t.user_attrs["trial_id"]
