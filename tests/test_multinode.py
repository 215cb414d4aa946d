"""Two Ray nodes on loopback (`ray start --head` + `ray start --address`, 1 CPU each, each in its own temp dir):
trials spread over both, the worker node is killed mid-trial, and its trial finishes on the head from its
checkpoint with one row per (trial, step) on the store's raw files. Runs its own cluster and a subprocess driver,
so it never touches the session fixture's cluster; teardown kills exactly the processes of its temp dirs (not
`ray stop`, which would stop every Ray instance of this user on the machine)."""
from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import pytest

from analysis.store import Store
from models import eval_schedule
from raw_store import raw_rows, raw_step_counts
from ray_procs import kill_processes_under
from sweeps.spec import SweepSpec, load_spec

pytestmark = [pytest.mark.ray, pytest.mark.slow]
RAY = str(Path(sys.executable).with_name("ray"))
STEPS = 500

DRIVER = """
import json, sys
from sweeps.runner import run_sweep
from sweeps.spec import SweepSpec
res = run_sweep(SweepSpec.from_dict(json.loads(sys.argv[1])), workers=2, address=sys.argv[2], progress=False,
                retry_backoff_s=0.5, compact=False)
print("RESULT", json.dumps({"n_done": res.n_done, "n_failed": res.n_failed, "path": res.experiment_path}))
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _reports(experiment_path: Path) -> dict[str, list[dict]]:
    """{memsweep trial id: its reported results in order} from Tune's result.json files (each carries node_id),
    in trial directories named `<memsweep trial id>_<Tune's trial id>` (Tune's id has one underscore)."""
    out: dict[str, list[dict]] = defaultdict(list)
    for f in experiment_path.glob("*/result.json"):
        for line in f.read_text().splitlines():
            if line.strip():
                out[f.parent.name.rsplit("_", 2)[0]].append(json.loads(line))
    return out


def _spec(tmp_path: Path) -> dict:
    raw = dict(load_spec("tiny").raw)
    raw.update(name="mn", store=str(tmp_path / "store"))
    raw["axes"] = {"tail": [{"family": "uniform"}], "P": [4, 8], "seed": [0]}
    raw["train"] = {**raw["train"], "steps": STEPS}
    raw.pop("stop", None)
    return raw


def test_killed_worker_node_has_its_trial_finished_on_the_head(tmp_path):
    head_tmp, worker_tmp = (tempfile.mkdtemp(prefix=p, dir="/tmp") for p in ("rmh", "rmw"))
    port = _free_port()
    # detect the dead node within seconds (default: 5 missed health checks 3 s apart)
    env = dict(os.environ, RAY_TMPDIR=head_tmp, RAY_AUTH_MODE="disabled", RAY_USAGE_STATS_ENABLED="0",
               RAY_health_check_period_ms="500", RAY_health_check_failure_threshold="3")
    raw = _spec(tmp_path)
    spec = SweepSpec.from_dict(raw)
    experiment = tmp_path / "tune" / "mn"
    driver = None
    try:
        common = ["--num-cpus=1", "--disable-usage-stats", "--node-ip-address=127.0.0.1"]
        subprocess.run([RAY, "start", "--head", f"--port={port}", f"--temp-dir={head_tmp}", "--include-dashboard=false",
                        *common], env=env, check=True, capture_output=True, timeout=120)
        subprocess.run([RAY, "start", f"--address=127.0.0.1:{port}", f"--temp-dir={worker_tmp}", *common],
                       env=env, check=True, capture_output=True, timeout=120)
        driver = subprocess.Popen([sys.executable, "-c", DRIVER, json.dumps(raw), f"127.0.0.1:{port}"], env=env,
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        deadline = time.time() + 240
        while time.time() < deadline and driver.poll() is None:  # both trials reporting, one from each node
            nodes = {r["node_id"] for rs in _reports(experiment).values() for r in rs}
            if len(nodes) == 2:
                break
            time.sleep(0.2)
        assert driver.poll() is None and len(nodes) == 2, "the trials did not run on both nodes in time"
        kill_processes_under(worker_tmp)
        out, _ = driver.communicate(timeout=300)
    finally:
        if driver is not None and driver.poll() is None:
            driver.kill()
        kill_processes_under(worker_tmp)
        kill_processes_under(head_tmp)
        shutil.rmtree(head_tmp, ignore_errors=True)
        shutil.rmtree(worker_tmp, ignore_errors=True)
    assert driver.returncode == 0, out[-4000:]
    res = json.loads(out.split("RESULT", 1)[1])
    assert (res["n_done"], res["n_failed"]) == (2, 0)

    reports = _reports(Path(res["path"]))
    moved = {tid: [r["node_id"] for r in rs] for tid, rs in reports.items() if len({r["node_id"] for r in rs}) == 2}
    assert len(moved) == 1, "exactly the worker node's trial ran on two nodes"
    (tid, nodes), (other,) = next(iter(moved.items())), set(reports) - set(moved)
    assert nodes[-1] == reports[other][-1]["node_id"] != nodes[0]  # finished on the surviving head node

    store = Store(spec.store)
    rows = {r["trial_id"]: r for r in store.read("trials", sweep="mn").to_pylist()}
    assert {t: r["status"] for t, r in rows.items()} == {tid: "done", other: "done"}
    assert rows[other]["attempts"] == 1 and rows[tid]["attempts"] >= 2
    schedule = eval_schedule(STEPS, 4, 10)
    # raw fragment rows (not Store.read, which deduplicates): one per (trial, step), except the steps the dead
    # attempt wrote past the checkpoint the retry resumed from (c), which it rewrote
    c = rows[tid]["resumed_from_step"]
    assert c > 0  # it had reported (so checkpointed) on the worker: the retry continued from there
    dead = [s for t, a, s in raw_rows(spec.store, "curves", ["trial_id", "attempt_ns", "step"])
            if t == tid and a != rows[tid]["attempt_ns"]]
    k = max(dead, default=0)
    assert raw_step_counts(spec.store, other) == {s: 1 for s in schedule}
    assert raw_step_counts(spec.store, tid) == {s: 1 + (c < s <= k) for s in schedule}, (c, k)
