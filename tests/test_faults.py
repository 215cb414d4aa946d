"""Faults: a trial process killed mid-run is retried (after a backoff) from its checkpoint; a killed driver resumes
with --resume; an errored trial resumes from its checkpoint without anything being unpickled from Tune's
directories; a read-only store fails trials with a message and --resume afterwards loses and doubles nothing."""
from __future__ import annotations

import json
import os
import pickle
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest

from analysis.schema import TABLES
from analysis.store import Store
from models import eval_schedule
from sweeps.runner import run_sweep
from sweeps.spec import SweepSpec, load_spec
from raw_store import assert_raw_reads_are_the_store_reads, raw_rows, raw_step_counts
from ray_procs import kill_processes_under

#: The tables these sweeps write: every one but `overest`, which only eval.overest_every > 0 writes.
WRITTEN = tuple(t for t in TABLES if t != "overest")

pytestmark = pytest.mark.ray
# The tables these sweeps write: the tiny preset does not probe overestimation (eval.overest_every), so no `overest`.
WRITTEN = tuple(t for t in TABLES if t != "overest")


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
    res = run_sweep(spec, workers=1, progress=False, retry_backoff_s=1.0,
                    extra_config={"_crash_at_step": 50, "_crash_marker": str(marker)})
    assert marker.read_text() == "56"  # the process died right after flushing step 56, before its checkpoint
    assert (res.n_done, res.n_failed) == (1, 0)
    (t,) = spec.trials()
    store = Store(spec.store)
    row = store.read("trials", sweep="crash").to_pylist()[0]
    assert row["status"] == "done" and row["attempts"] == 2
    assert row["resumed_from_step"] == 32  # the last checkpoint before the crash
    # the restart knew it was the second start of the trial, and waited its backoff before starting
    reported = [json.loads(line) for f in Path(res.experiment_path).glob("*/result.json")
                for line in f.read_text().splitlines() if line.strip()]
    attempt_at = {r["step"]: r["attempt"] for r in reported}  # (Tune's log may miss a line of the dead process)
    assert {a for s, a in attempt_at.items() if s < 56} == {1} and {56, 100, 178, 200} <= set(attempt_at)
    assert {a for s, a in attempt_at.items() if s >= 56} == {2}
    assert row["started_at"].timestamp() - marker.stat().st_mtime >= 1.0
    # one row per step, no gaps, although step 56 was written by both attempts
    assert steps_of(store, "crash", t.trial_id) == eval_schedule(200, 4, 10)
    levels = store.read("level_curves", sweep="crash", columns=["step", "level"]).to_pylist()
    assert len(levels) == len({(r["step"], r["level"]) for r in levels}) == len(eval_schedule(200, 4, 10)) * 2
    # the runner compacted the sweep at its end: pandas, pyarrow, polars and duckdb read what Store.read does,
    # the dead attempt's trials row and step 56 included
    assert_raw_reads_are_the_store_reads(spec.store, WRITTEN)


class _Died(Exception):
    """Stands for the process dying right after an evaluation's rows were flushed."""


def test_rows_a_failed_retry_never_rewrote_are_superseded(tmp_path):
    """Attempt 1 writes every evaluation to step 178 and dies; attempt 2 resumes from attempt 1's step-32
    checkpoint and dies after writing step 100, so the trial ends failed. Attempt 1's step-178 rows are never
    rewritten: only supersession (a row above a later attempt's resumed_from_step is dropped) keeps them out of
    the trial's curve, although the raw files still hold them."""
    from sweeps.trial import train_trial

    spec = SweepSpec.from_dict(spec_dict(tmp_path, "sup", [8], 200))
    (t,) = spec.trials()
    saved = tmp_path / "ckpt32"

    def first(metrics, checkpoint):
        if metrics["step"] == 32:
            shutil.copytree(checkpoint, saved)
        if metrics["step"] == 178:
            raise _Died

    def second(metrics, checkpoint):
        if metrics["step"] == 100:
            raise _Died

    with pytest.raises(_Died):
        train_trial(t, report=first)
    with pytest.raises(_Died):
        train_trial(t, report=second, checkpoint_dir=str(saved))
    store = Store(spec.store)
    assert raw_step_counts(spec.store, t.trial_id) == {10: 1, 18: 1, 32: 1, 56: 2, 100: 2, 178: 1}
    assert steps_of(store, "sup", t.trial_id) == [10, 18, 32, 56, 100]
    for table in ("level_curves", "copies", "parts"):
        assert 178 in raw_step_counts(spec.store, t.trial_id, table), table
        assert 178 not in store.read(table, sweep="sup", columns=["step"])["step"].to_pylist(), table
    row = store.read("trials", sweep="sup").to_pylist()[0]
    assert (row["status"], row["attempts"], row["resumed_from_step"]) == ("failed", 2, 32)
    store.compact()                          # as the runner does when a sweep ends: the files hold the clean view
    assert raw_step_counts(spec.store, t.trial_id) == {10: 1, 18: 1, 32: 1, 56: 1, 100: 1}
    assert_raw_reads_are_the_store_reads(spec.store, WRITTEN)


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
        midway: list[str] = []     # unfinished trials with two evaluations stored: a checkpoint exists for them
        while time.time() < deadline and proc.poll() is None:
            rows = store.read("trials", sweep="drv").to_pylist() if (tmp_path / "store").exists() else []
            done = [r["trial_id"] for r in rows if r["status"] == "done"]
            midway = [r["trial_id"] for r in rows if r["status"] == "running"
                      and len(steps_of(store, "drv", r["trial_id"])) >= 2]
            if done and midway:
                break
            time.sleep(0.2)
        assert done and midway and len(done) < len(ids), f"no trial finished before the deadline: {proc.poll()}"
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
    # --resume, not a restart at step 0: the trial killed midway continued from its checkpoint, so the rows up to
    # it were written once, by the killed attempt
    killed = [t for t in midway if before[t]["status"] != "done"]
    assert killed, (midway, before)
    tid = killed[0]
    resumed = after[tid]["resumed_from_step"]
    assert resumed > 0 and after[tid]["attempts"] == 2, after[tid]
    counts = raw_step_counts(spec.store, tid)
    assert all(counts[s] == 1 for s in eval_schedule(100, 4, 10) if s <= resumed), (resumed, counts)


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


class _Hostile:
    """Unpickling this runs code: it writes a marker file (what a replaced tuner.pkl on shared storage could do)."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return exec, (f"open({self.marker!r}, 'w').write('pwned')",)


def test_errored_trial_resumes_from_its_checkpoint_and_nothing_is_unpickled(ray_cluster, tmp_path):
    spec = SweepSpec.from_dict(spec_dict(tmp_path, "rs", [8], 200))
    (cfg,) = spec.trials()
    crash = tmp_path / "crashed"
    res = run_sweep(spec, workers=1, progress=False, max_failures=0, compact=False,
                    extra_config={"_crash_at_step": 50, "_crash_marker": str(crash)})
    assert (res.n_done, res.n_failed, crash.read_text()) == (0, 1, "56")  # killed after flushing 56: errored
    store = Store(spec.store)
    assert store.read("trials", sweep="rs").to_pylist()[0]["status"] == "failed"  # marked by the driver

    pwned, probe = tmp_path / "pwned", tmp_path / "probe"
    pickle.loads(pickle.dumps(_Hostile(str(probe))))
    assert probe.exists()  # the payload really runs when unpickled
    experiment = Path(res.experiment_path)
    pickles = [*experiment.rglob("*.pkl"), experiment / "searcher-state-2025-01-01_00-00-00.pkl"]
    assert experiment / "tuner.pkl" in pickles and any(p.name == "params.pkl" for p in pickles)
    for p in pickles:
        p.write_bytes(pickle.dumps(_Hostile(str(pwned))))

    res = run_sweep(spec, workers=1, progress=False, resume=True, compact=False)
    assert not pwned.exists()
    assert (res.n_done, res.n_failed, res.resumed) == (1, 0, {cfg.trial_id: 32})
    row = Store(spec.store).read("trials", sweep="rs").to_pylist()[0]
    assert (row["status"], row["resumed_from_step"], row["attempts"]) == ("done", 32, 2)
    # on the raw files: every step once, except 56, which the dead attempt wrote before its checkpoint
    assert raw_step_counts(spec.store, cfg.trial_id) == {s: 1 + (s == 56) for s in eval_schedule(200, 4, 10)}


def _probe(d: Path) -> str | None:
    """The OS error (strerror) creating a file in `d` gets, or None when it can be written."""
    try:
        (d / ".probe").write_text("x")
    except OSError as e:
        return e.strerror
    (d / ".probe").unlink()
    return None


def _set_read_only(dirs: list[Path], on: bool, how: str) -> None:
    for d in dirs:
        if how == "chattr":
            subprocess.run(["chattr", "+i" if on else "-i", str(d)], check=True, capture_output=True)
        else:
            d.chmod(0o555 if on else 0o777)


def _read_only_method(scratch: Path) -> str:
    """How this machine can make a folder refuse new files: chmod (a normal user), or chattr +i (root ignores
    modes; needs CAP_LINUX_IMMUTABLE and ext2/3/4, xfs or btrfs); skip when neither works."""
    for how in ("chmod", "chattr"):
        d = scratch / how
        d.mkdir()
        try:
            _set_read_only([d], True, how)
        except (OSError, subprocess.CalledProcessError):
            continue
        blocked = _probe(d)
        _set_read_only([d], False, how)
        if blocked:
            return how
    pytest.skip("cannot make a folder read-only here (root without CAP_LINUX_IMMUTABLE or chattr)")


@pytest.mark.slow
def test_read_only_store_fails_with_a_message_and_resume_loses_nothing(ray_cluster, tmp_path, capfd):
    how = _read_only_method(tmp_path)
    spec = SweepSpec.from_dict(spec_dict(tmp_path, "ro", [8], 600))
    store = Path(spec.store)
    (cfg,) = spec.trials()
    frozen: list[Path] = []
    seen: dict[str, str | None] = {}

    def freeze_mid_trial() -> None:  # after two evaluations: two fragments per table, so compaction has work
        deadline = time.time() + 240
        while time.time() < deadline and len(raw_rows(store, "curves", ["step"])) < 2:
            time.sleep(0.05)
        frozen.extend(d for d in [store, *store.rglob("*")] if d.is_dir() and "_lease" not in d.parts)
        _set_read_only(frozen, True, how)  # the store's tables become read-only (its lease stays writable)
        seen["oserror"] = _probe(frozen[-1])
        seen["done"] = str(any(s == "done" for s, in raw_rows(store, "trials", ["status"])))

    freezer = threading.Thread(target=freeze_mid_trial)
    freezer.start()
    try:
        first = run_sweep(spec, workers=1, progress=False, retry_backoff_s=0.5)
    finally:
        freezer.join()
        _set_read_only(frozen, False, how)
    assert seen["done"] == "False", "the trial finished before the store could be made read-only"
    assert (first.n_done, first.n_failed) == (0, 1)
    why = first.errors[cfg.trial_id]
    assert "could not write to the store" in why and str(store) in why and seen["oserror"] in why, why
    assert f"memsweep: trial {cfg.trial_id} failed: {why}" in capfd.readouterr().err
    assert any(m.startswith(f"could not compact store {store}") for m in first.messages), first.messages
    assert any(m.startswith("could not mark failed trials") for m in first.messages), first.messages

    second = run_sweep(spec, workers=1, progress=False, resume=True, compact=False)
    assert (second.n_done, second.n_failed) == (1, 0)
    c = second.resumed[cfg.trial_id]
    assert c > 0  # continued from the checkpoint the read-only store could not stop
    trials = raw_rows(store, "trials", ["attempt_ns", "status"])
    last = max(a for a, _ in trials)
    assert (min(a for a, _ in trials), "failed") in trials  # --resume first ended the attempt left `running`
    assert Store(spec.store).read("trials").to_pylist()[0]["status"] == "done"
    rows = raw_rows(store, "curves", ["attempt_ns", "step"])
    k = max((s for a, s in rows if a != last), default=0)  # the last step the failed attempts wrote
    assert raw_step_counts(store, cfg.trial_id) == {s: 1 + (c < s <= k) for s in eval_schedule(600, 4, 10)}, \
        (c, k, trials, rows)
