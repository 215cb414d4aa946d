"""A Ctrl-C'd trial is `interrupted` everywhere: the store's `trials` rows (written by the trial when Tune's stop
reaches it, or by the driver for one Tune killed while `running`), `memsweep status`, the report, and the live view,
whose last step is the store's. Ray-free: Tune's stop is what its session does at the next report, SystemExit(0)."""
from __future__ import annotations

import io

import pytest

from analysis.store import Store
from sweeps.pack_trial import train_pack
from sweeps.packing import group_packs
from sweeps.spec import SweepSpec, load_spec
from sweeps.trial import train_trial


def _spec(tmp_path, name: str = "intr") -> SweepSpec:
    raw = dict(load_spec("tiny").raw)
    raw.update(name=name, store=str(tmp_path / "store"))
    raw["axes"] = {"tail": [{"family": "uniform"}], "P": [4, 8], "seed": [0]}
    raw["train"] = {**raw["train"], "steps": 60}      # evaluations at 10, 18, 32, 56, 60
    raw.pop("stop", None)
    return SweepSpec.from_dict(raw)


def _tune_stops_at(step: int):
    """A Tune reporter whose session was told to stop: the report at/after `step` raises SystemExit(0)."""
    def report(metrics, checkpoint_dir):
        if metrics["step"] >= step:
            raise SystemExit(0)
    return report


def _status(store: Store, sweep: str) -> dict[str, tuple[str, int]]:
    return {r["trial_id"]: (r["status"], r["final_step"]) for r in store.read("trials", sweep=sweep).to_pylist()}


def test_a_stopped_trial_and_pack_are_interrupted_in_the_store_status_and_report(tmp_path, capsys):
    spec = _spec(tmp_path)
    lone, other = spec.trials()
    with pytest.raises(SystemExit):
        train_trial(lone, _tune_stops_at(18))
    (pack,) = group_packs([other], 2)
    with pytest.raises(SystemExit):
        train_pack(pack, _tune_stops_at(32))
    store = Store(spec.store)
    assert _status(store, "intr") == {lone.trial_id: ("interrupted", 18), other.trial_id: ("interrupted", 32)}
    assert store.summary()["intr"]["trials"] == {"interrupted": 2}
    from sweeps.cli import main

    assert main(["status", spec.store]) == 0
    out = capsys.readouterr().out
    assert "interrupted: 2" in out and "failed" not in out
    from analysis.report import status_line

    assert status_line(store.read("trials", sweep="intr")) == \
        "Trials: 2 interrupted (`memsweep run SPEC --resume` continues them)."


def test_a_failing_trial_is_still_failed(tmp_path):
    spec = _spec(tmp_path)
    lone = spec.trials()[0]

    def report(metrics, checkpoint_dir):
        raise RuntimeError("boom")
    with pytest.raises(RuntimeError):
        train_trial(lone, report)
    assert _status(Store(spec.store), "intr")[lone.trial_id] == ("failed", 10)


def test_the_driver_marks_trials_tune_killed_while_running_interrupted(tmp_path):
    from sweeps.recovery import mark_failed

    store = Store(tmp_path / "store")
    for tid, status in (("intr-a", "running"), ("intr-b", "done")):
        with store.writer("intr", tid, attempt_ns=1) as w:
            w.append("trials", {"status": status})
    assert mark_failed(str(tmp_path / "store"), "intr", None, "interrupted") == ["intr-a"]
    assert {r["trial_id"]: r["status"] for r in Store(tmp_path / "store").read("trials").to_pylist()} == \
        {"intr-a": "interrupted", "intr-b": "done"}


def test_live_view_shows_an_interrupted_trial_at_the_stores_last_step(tmp_path):
    """The trial's last report to reach the driver said step 18; it evaluated 32 before Tune's stop reached it.
    Another trial Tune had started but which wrote nothing is not started, as the driver counts it."""
    from types import SimpleNamespace

    from rich.console import Console

    from sweeps.progress import LiveProgress

    spec = _spec(tmp_path)
    trial = spec.trials()[0]
    with pytest.raises(SystemExit):
        train_trial(trial, _tune_stops_at(32))
    buf = io.StringIO()
    view = LiveProgress(total=3, title="intr", console=Console(file=buf, width=200), live=False,
                        store=spec.store, sweep="intr")
    t = SimpleNamespace(trial_id="t0", config={"trial": trial.to_dict()}, last_result={}, status="RUNNING")
    fresh = SimpleNamespace(trial_id="t1", config={"trial": spec.trials()[1].to_dict()}, last_result={},
                            status="RUNNING")
    view.on_trial_start(0, [t, fresh], t)
    view.on_trial_start(0, [t, fresh], fresh)
    view.on_trial_result(1, [t, fresh], t, {"step": 18, "copy_frac": 0.1, "mem_twin": 0.05})
    view.on_experiment_end([t, fresh])
    lines = buf.getvalue().strip().splitlines()
    assert lines[0].startswith("[0/3] interrupted") and "step=32" in lines[0] and "mem_twin=0.050" in lines[0]
    assert "0 done, 0 failed, 1 interrupted, 2 not started" in lines[1] and len(lines) == 2
