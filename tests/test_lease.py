"""One driver per sweep: the lease in the store refuses a second driver, expires when its holder dies, and is
released at the end (also on Ctrl-C)."""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from sweeps.lease import Lease, LeaseHeld, StoreUnwritable
from sweeps.spec import load_spec

ROOT = Path(__file__).resolve().parents[1]
FAST = dict(ttl_s=1.5, heartbeat_s=0.2, settle_s=0.05)


def _lease(store: Path, sweep: str = "s", **kw) -> Lease:
    return Lease(str(store), sweep, **{**FAST, **kw})


def test_second_driver_is_refused_while_the_first_holds_the_lease(tmp_path):
    first = _lease(tmp_path / "store").acquire()
    try:
        time.sleep(2 * FAST["ttl_s"])  # longer than the TTL: only the heartbeat keeps the lease fresh
        with pytest.raises(LeaseHeld) as e:
            _lease(tmp_path / "store").acquire()
        assert f"{socket.gethostname()} pid {os.getpid()}" in str(e.value)
        assert e.value.holder["token"] == first.token
        other = _lease(tmp_path / "store", sweep="another-sweep").acquire()  # other sweeps are not blocked
        other.release()
    finally:
        first.release()
    assert not Path(first.path).exists()
    _lease(tmp_path / "store").acquire().release()  # free again once released


def _write_foreign(lease: Lease, age_s: float, host: str = "elsewhere.example") -> None:
    """A lease of a driver on another machine whose last heartbeat was `age_s` ago."""
    Path(lease.path).parent.mkdir(parents=True, exist_ok=True)
    info = {"token": "t" * 32, "host": host, "pid": 1, "machine": "x", "ttl_s": FAST["ttl_s"],
            "started_at": "2025-01-01T00:00:00+00:00", "renewed_at": time.time() - age_s}
    Path(lease.path).write_text(json.dumps(info))
    os.utime(lease.path, (time.time() - age_s, time.time() - age_s))


def test_a_stale_lease_is_taken_over_and_a_fresh_one_is_not(tmp_path):
    probe = _lease(tmp_path / "store")
    _write_foreign(probe, age_s=0.0)
    with pytest.raises(LeaseHeld, match="elsewhere.example pid 1"):
        _lease(tmp_path / "store").acquire()
    _write_foreign(probe, age_s=10 * FAST["ttl_s"])  # its driver stopped renewing long ago
    taker = _lease(tmp_path / "store").acquire()
    try:
        assert json.loads(Path(taker.path).read_text())["token"] == taker.token
    finally:
        taker.release()


HOLDER = """
import sys, time
from sweeps.lease import Lease
Lease(sys.argv[1], "s", ttl_s=600, heartbeat_s=1, settle_s=0.05).acquire()
print("held", flush=True)
time.sleep(600)
"""


def test_a_killed_drivers_lease_on_this_machine_is_stale_at_once(tmp_path):
    """A driver killed with SIGKILL cannot release; its lease names a dead pid on this host, so a new driver takes
    it over without waiting for the (here 10-minute) TTL."""
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(tmp_path / "store")], stdout=subprocess.PIPE,
                            text=True, cwd=ROOT)
    try:
        assert proc.stdout.readline().strip() == "held"
        with pytest.raises(LeaseHeld, match=f"pid {proc.pid}"):
            _lease(tmp_path / "store").acquire()
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    _lease(tmp_path / "store").acquire().release()


def test_cli_refuses_a_second_run_with_exit_2_and_names_the_holder(tmp_path):
    raw = dict(load_spec("tiny").raw)
    raw.update(name="busy", store=str(tmp_path / "store"))
    path = tmp_path / "busy.yaml"
    path.write_text(yaml.safe_dump(raw))
    held = Lease(str(tmp_path / "store"), "busy", settle_s=0.05).acquire()
    try:
        r = subprocess.run([sys.executable, "-m", "sweeps.cli", "run", str(path), "--no-progress"],
                           capture_output=True, text=True, timeout=120, cwd=ROOT)
    finally:
        held.release()
    assert r.returncode == 2, r.stdout + r.stderr
    assert "Traceback" not in r.stderr + r.stdout
    assert f"already being run by {socket.gethostname()} pid {os.getpid()}" in r.stderr


def test_an_unwritable_store_is_refused_before_any_work(tmp_path):
    (tmp_path / "store").write_text("a file where the store's folder should be")
    with pytest.raises(StoreUnwritable, match=str(tmp_path / "store")):
        _lease(tmp_path / "store").acquire()


def test_run_sweep_releases_the_lease_on_ctrl_c(tmp_path, monkeypatch):
    import sweeps.runner as runner
    from sweeps.spec import SweepSpec

    raw = dict(load_spec("tiny").raw)
    raw.update(name="intr", store=str(tmp_path / "store"))
    spec = SweepSpec.from_dict(raw)
    lease_file = tmp_path / "store" / "_lease" / "intr.json"
    seen = []

    def interrupted(*args, **kwargs):
        seen.append(json.loads(lease_file.read_text())["pid"])  # held while the sweep runs
        raise KeyboardInterrupt

    monkeypatch.setattr(runner, "_run_leased", interrupted)
    with pytest.raises(KeyboardInterrupt):
        runner.run_sweep(spec, progress=False)
    assert seen == [os.getpid()] and not lease_file.exists()
