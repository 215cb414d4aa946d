"""Faults: a trial process killed mid-run is retried from its checkpoint; a killed driver resumes with --resume."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from analysis.store import Store
from models import eval_schedule
from sweeps.runner import run_sweep
from sweeps.spec import SweepSpec, load_spec
from ray_procs import kill_processes_under

pytestmark = pytest.mark.ray


def spec_dict(tmp_path: Path, name: str, P: list[int], steps: int) -> dict:
    """The tiny preset, one tail, the given P values, full budget, writing under tmp_path."""
    raw = dict(load_spec("tiny").raw)
    raw.update(name=name, store=str(tmp_path / "store"))
    raw["axes"] = {"tail": [{"family": "uniform"}], "P": P, "seed": [0]}
    raw["train"] = {**raw["train"], "steps": steps}
    raw.pop("stop", None)
    return raw


def steps_of(store: Store, sweep: str, trial_id: str) -> list[int]:
    return sorted(store.read("curves", sweep=sweep, trials=[trial_id], columns=["step"]).column("step").to_pylist())


def test_killed_trial_is_retried_from_its_checkpoint(ray_cluster, tmp_path):
    spec = SweepSpec.from_dict(spec_dict(tmp_path, "crash", [8], 200))
    marker = tmp_path / "crashed"
    res = run_sweep(spec, workers=1, progress=False,
                    extra_config={"_crash_at_step": 50, "_crash_marker": str(marker)})
    assert marker.read_text() == "56"  # the process died right after flushing step 56, before its checkpoint
    assert (res.n_done, res.n_failed) == (1, 0)
    (t,) = spec.trials()
    store = Store(spec.store)
    row = store.read("trials", sweep="crash").to_pylist()[0]
    assert row["status"] == "done" and row["attempts"] == 2
    assert row["resumed_from_step"] == 32  # the last checkpoint before the crash
    # one row per step, no gaps, although step 56 was written by both attempts
    assert steps_of(store, "crash", t.trial_id) == eval_schedule(200, 4, 10)
    levels = store.read("level_curves", sweep="crash", columns=["step", "level"]).to_pylist()
    assert len(levels) == len({(r["step"], r["level"]) for r in levels}) == len(eval_schedule(200, 4, 10)) * 2


DRIVER = """
import json, sys
from sweeps.runner import run_sweep
from sweeps.spec import SweepSpec
res = run_sweep(SweepSpec.from_dict(json.loads(sys.argv[1])), workers=1, resume=sys.argv[2] == "1",
                progress=False)
print("RESULT", res.n_done, res.n_failed, res.n_skipped, flush=True)
"""


def _driver(raw: dict, resume: bool, ray_tmp: str) -> subprocess.Popen:
    env = dict(os.environ, RAY_TMPDIR=ray_tmp, RAY_AUTH_MODE="disabled", RAY_USAGE_STATS_ENABLED="0")
    return subprocess.Popen([sys.executable, "-c", DRIVER, json.dumps(raw), "1" if resume else "0"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)


@pytest.mark.slow
def test_killed_driver_resumes_only_unfinished_trials(tmp_path):
    raw = spec_dict(tmp_path, "drv", [4, 6, 8], 100)
    spec = SweepSpec.from_dict(raw)
    ids = [t.trial_id for t in spec.trials()]
    store = Store(spec.store)
    ray_tmp = tempfile.mkdtemp(prefix="rdk", dir="/tmp")
    proc = _driver(raw, False, ray_tmp)
    try:
        deadline = time.time() + 240
        done: list[str] = []
        while time.time() < deadline and proc.poll() is None:
            rows = store.read("trials", sweep="drv").to_pylist() if (tmp_path / "store").exists() else []
            done = [r["trial_id"] for r in rows if r["status"] == "done"]
            if done:
                break
            time.sleep(0.5)
        assert done and len(done) < len(ids), f"no trial finished before the deadline: {proc.poll()}"
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        kill_processes_under(ray_tmp)
    before = {r["trial_id"]: r for r in store.read("trials", sweep="drv").to_pylist()}
    again = _driver(raw, True, ray_tmp)
    try:
        out, _ = again.communicate(timeout=300)
    finally:
        if again.poll() is None:
            os.killpg(again.pid, signal.SIGKILL)
        kill_processes_under(ray_tmp)
        shutil.rmtree(ray_tmp, ignore_errors=True)
    assert again.returncode == 0, out[-3000:]
    n_done, n_failed, n_skipped = map(int, out.split("RESULT")[-1].split()[:3])
    finished_before = {t for t, r in before.items() if r["status"] == "done"}
    assert (n_done, n_failed, n_skipped) == (len(ids) - len(finished_before), 0, len(finished_before)), out[-4000:]
    after = {r["trial_id"]: r for r in store.read("trials", sweep="drv").to_pylist()}
    assert sorted(after) == sorted(ids) and all(r["status"] == "done" for r in after.values())
    for tid in finished_before:  # finished trials were not run again
        assert after[tid]["attempt_ns"] == before[tid]["attempt_ns"] and after[tid]["attempts"] == 1
    for tid in ids:
        assert steps_of(store, "drv", tid) == eval_schedule(100, 4, 10)


def test_unreadable_checkpoint_restarts_the_trial_from_scratch(tmp_path):
    """A checkpoint torn mid-write (here: a truncated trainer file) must not fail the trial forever: the attempt
    starts over from step 0 with a warning, and the store still holds one row per step."""
    from sweeps.trial import TRAINER_FILE, train_trial

    spec = SweepSpec.from_dict(spec_dict(tmp_path, "torn", [4], 60))
    (cfg,) = spec.trials()
    saved: list[str] = []

    def keep_first(metrics: dict, directory: str) -> None:  # a report callback that keeps one checkpoint
        if not saved:
            saved.append(shutil.copytree(directory, tmp_path / "ckpt"))

    train_trial(cfg, keep_first)
    torn = Path(saved[0]) / TRAINER_FILE
    torn.write_bytes(torn.read_bytes()[:100])
    with pytest.warns(RuntimeWarning, match="unreadable"):
        out = train_trial(cfg, None, str(saved[0]))
    assert out.resumed_from_step == 0 and out.final_step == 60
    store = Store(spec.store)
    assert steps_of(store, "torn", cfg.trial_id) == eval_schedule(60, 4, 10)
    row = store.read("trials", sweep="torn").to_pylist()[0]
    assert row["attempts"] == 2 and row["resumed_from_step"] == 0 and row["status"] == "done"
