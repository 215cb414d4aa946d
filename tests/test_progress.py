"""The live progress view: bookkeeping, plain lines for logs, the live table, Tune's logs muted, interruptions."""
from __future__ import annotations

import io
from types import SimpleNamespace

import pytest

from sweeps.spec import load_spec


# ------------------------------------------------------------------------------------------- progress view
def _fake_trials(n: int):
    return [SimpleNamespace(trial_id=f"tune{i}", config={"trial": t.to_dict()}, last_result={}, status="PENDING")
            for i, t in enumerate(load_spec("tiny").trials()[:n])]


def _progress(live: bool):
    from rich.console import Console
    from sweeps.progress import LiveProgress
    buf = io.StringIO()
    clock = [0.0]
    cb = LiveProgress(console=Console(file=buf, force_terminal=live, width=160), clock=lambda: clock[0],
                      refresh_s=0.0, title="tiny")
    return cb, buf, clock


def test_progress_bookkeeping_and_plain_lines():
    trials = _fake_trials(4)
    cb, buf, clock = _progress(live=False)
    cb.setup(total_num_samples=4)
    assert cb.counts()["queued"] == 4 and cb.eta() is None
    cb.on_trial_start(0, trials, trials[0])
    cb.on_trial_start(0, trials, trials[1])
    clock[0] = 10.0
    cb.on_trial_result(1, trials, trials[0], {"step": 100, "copy_frac": 0.5})
    assert cb.counts() == {"queued": 2, "running": 2, "retrying": 0, "done": 0, "failed": 0, "interrupted": 0}
    assert buf.getvalue() == ""  # nothing printed until a trial finishes
    clock[0] = 20.0
    trials[0].last_result = {"step": 200, "copy_frac": 0.95}
    cb.on_trial_complete(2, trials, trials[0])
    row = cb.rows["tune0"]
    assert (row.status, row.step, row.copy_frac, row.duration(20.0)) == ("done", 200, 0.95, 20.0)
    assert row.key == trials[0].config["trial"]["trial_id"] and "P=4" in row.label and row.budget == 200
    cb.on_trial_recover(2, trials, trials[1])
    assert cb.counts()["retrying"] == 1
    cb.on_trial_error(3, trials, trials[1])
    # 2 queued x mean 20 s over the 2 slots seen running
    assert cb.eta() == pytest.approx(20.0)
    cb.on_experiment_end(trials)
    lines = buf.getvalue().strip().splitlines()
    assert lines[0].startswith("[1/4] done") and "copy_frac=0.950" in lines[0]
    assert lines[1].startswith("[2/4] failed")
    assert "1 done, 1 failed" in lines[2] and "failed:" in lines[3]
    assert len(lines) == 4
    assert "\x1b[" not in buf.getvalue()


def test_progress_live_table_renders():
    trials = _fake_trials(2)
    cb, buf, clock = _progress(live=True)
    cb.setup(total_num_samples=2)
    cb.on_trial_start(0, trials, trials[0])
    clock[0] = 5.0
    cb.on_trial_result(1, trials, trials[0], {"step": 50, "copy_frac": 0.25})
    assert cb.eta() is None  # one trial still queued and none finished: no duration to go by
    cb.total = 1
    assert cb.eta() == pytest.approx(15.0)  # 150 steps left at 10 steps/s
    cb.total = 2
    text = buf.getvalue()
    assert "50/200" in text and "0.250" in text and "running" in text
    trials[0].last_result = {"step": 200, "copy_frac": 1.0}
    cb.on_trial_complete(2, trials, trials[0])
    cb.on_experiment_end(trials)
    assert "1 done, 0 failed" in buf.getvalue()
    cb.on_experiment_end(trials)  # idempotent
    assert buf.getvalue().count("1 done, 0 failed") == 1


def test_progress_live_view_mutes_tune_info_logs_until_closed():
    """Tune's INFO lines, written inside the live region, leave a stale copy of the table on screen."""
    import logging
    from sweeps.progress import TUNE_LOGGER
    logger = logging.getLogger(TUNE_LOGGER)
    before = logger.level
    logger.setLevel(logging.INFO)
    try:
        cb, buf, clock = _progress(live=True)
        cb.setup(total_num_samples=1)
        assert not logger.isEnabledFor(logging.INFO) and logger.isEnabledFor(logging.WARNING)
        cb.close()
        assert logger.level == logging.INFO
        plain, _, _ = _progress(live=False)
        plain.setup(total_num_samples=1)          # no live table, nothing to protect: logs stay as they are
        assert logger.isEnabledFor(logging.INFO)
        plain.close()
    finally:
        logger.setLevel(before)


def test_progress_pickles_like_tune_needs():
    """Tune pickles its RunConfig (with the callbacks) into the experiment directory."""
    import pickle
    trials = _fake_trials(1)
    cb, buf, clock = _progress(live=True)
    cb.setup(total_num_samples=1)
    cb.on_trial_start(0, trials, trials[0])
    back = pickle.loads(pickle.dumps(cb))
    assert back.rows["tune0"].status == "running" and back.total == 1 and back._live is None
    cb.close()


def test_progress_shows_trials_running_at_the_end_as_interrupted():
    """Ctrl-C ends the experiment with trials still running: they are interrupted, neither running nor failed,
    and the log says so (no stale 'running' row is left on screen)."""
    trials = _fake_trials(3)
    cb, buf, clock = _progress(live=False)
    cb.setup(total_num_samples=3)
    cb.on_trial_start(0, trials, trials[0])
    cb.on_trial_start(0, trials, trials[1])
    clock[0] = 4.0
    cb.on_trial_result(1, trials, trials[1], {"step": 40, "copy_frac": 0.1})
    trials[0].last_result = {"step": 200, "copy_frac": 1.0}
    cb.on_trial_complete(2, trials, trials[0])
    cb.on_experiment_end(trials)
    assert cb.counts() == {"queued": 1, "running": 0, "retrying": 0, "done": 1, "failed": 0, "interrupted": 1}
    lines = buf.getvalue().strip().splitlines()
    assert lines[1].startswith("[1/3] interrupted") and "step=40" in lines[1]
    assert "1 done, 0 failed, 1 interrupted, 1 not started" in lines[2]


def test_pack_members_that_fail_or_diverge_are_failed_rows():
    """A member whose entry in its pack's result is finished with status failed/diverged (sweeps.pack_trial) is a
    failed row, one finished by its stop rule a done row; the rest go on."""
    from sweeps.packing import MEMBERS_KEY, group_packs

    (pack,) = group_packs(load_spec("tiny").trials(), 4)
    trial = SimpleNamespace(trial_id="t0", config={"pack": pack.to_dict()}, last_result={}, status="RUNNING")
    cb, _, _ = _progress(live=False)
    cb.setup(total_num_samples=4)
    cb.on_trial_start(0, [trial], trial)
    a, b, c, d = pack.member_ids
    members = {a: {"step": 18, "finished": True, "status": "failed"},
               b: {"step": 18, "finished": True, "status": "diverged"},
               c: {"step": 18, "copy_frac": 0.5, "finished": True, "status": "stopped"},
               d: {"step": 18, "copy_frac": 0.1, "finished": False}}
    cb.on_trial_result(1, [trial], trial, {"step": 18, MEMBERS_KEY: members})
    counts = cb.counts()
    assert (counts["failed"], counts["done"], counts["running"]) == (2, 1, 1)
