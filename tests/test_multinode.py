"""Two Ray nodes on loopback (`ray start --head` + `ray start --address`, 1 CPU each): trials spread over both and
every row reaches the store. Runs its own cluster in a private temp dir and a subprocess driver, so it never
touches the session fixture's cluster; teardown kills exactly the processes of that temp dir (not `ray stop`,
which would stop every Ray instance of this user on the machine)."""
from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from analysis.store import Store
from models import eval_schedule
from sweeps.spec import SweepSpec, load_spec
from ray_procs import kill_processes_under

pytestmark = [pytest.mark.ray, pytest.mark.slow]
RAY = str(Path(sys.executable).with_name("ray"))

DRIVER = """
import json, sys
from sweeps.runner import run_sweep
from sweeps.spec import SweepSpec
res = run_sweep(SweepSpec.from_dict(json.loads(sys.argv[1])), workers=2, address=sys.argv[2], progress=False)
print("RESULT", json.dumps({"n_done": res.n_done, "n_failed": res.n_failed, "path": res.experiment_path}))
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _node_ids(experiment_path: str) -> set[str]:
    """Ray node ids that trials reported from (every result line carries `node_id`)."""
    out = set()
    for f in Path(experiment_path).glob("*/result.json"):
        for line in f.read_text().splitlines():
            if line.strip():
                out.add(json.loads(line).get("node_id", ""))
    return out - {""}


def test_trials_run_on_both_nodes(tmp_path):
    tmp = tempfile.mkdtemp(prefix="rmn", dir="/tmp")
    port = _free_port()
    env = dict(os.environ, RAY_TMPDIR=tmp, RAY_AUTH_MODE="disabled", RAY_USAGE_STATS_ENABLED="0")
    raw = dict(load_spec("tiny").raw)
    raw.update(name="mn", store=str(tmp_path / "store"))
    raw["axes"] = {"tail": [{"family": "uniform"}], "P": [4, 6, 8, 10], "seed": [0]}
    raw["train"] = {**raw["train"], "steps": 100}
    raw.pop("stop", None)
    spec = SweepSpec.from_dict(raw)
    try:
        common = ["--num-cpus=1", "--disable-usage-stats"]
        subprocess.run([RAY, "start", "--head", "--node-ip-address=127.0.0.1", f"--port={port}",
                        f"--temp-dir={tmp}", "--include-dashboard=false", *common],
                       env=env, check=True, capture_output=True, timeout=120)
        subprocess.run([RAY, "start", f"--address=127.0.0.1:{port}", "--node-ip-address=127.0.0.1", *common],
                       env=env, check=True, capture_output=True, timeout=120)
        proc = subprocess.run([sys.executable, "-c", DRIVER, json.dumps(raw), f"127.0.0.1:{port}"], env=env,
                              capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
        res = json.loads(proc.stdout.split("RESULT", 1)[1])
    finally:
        kill_processes_under(tmp)
        shutil.rmtree(tmp, ignore_errors=True)
    assert (res["n_done"], res["n_failed"]) == (4, 0)
    assert len(_node_ids(res["path"])) == 2, "trials did not run on both nodes"
    store = Store(spec.store)
    curves = store.read("curves", sweep="mn", columns=["trial_id", "step"]).to_pylist()
    for t in spec.trials():
        assert sorted(r["step"] for r in curves if r["trial_id"] == t.trial_id) == eval_schedule(100, 4, 10)
