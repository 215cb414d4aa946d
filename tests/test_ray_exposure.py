"""The embedded Ray of a local run is reachable from this machine only, and only with credentials; a SIGKILLed
driver leaves none of its Ray processes behind.

One driver process (`run_sweep` without an address, as `memsweep run` calls it) trains a long trial, started with
RAY_AUTH_MODE=disabled as the Makefile exports it (the embedded Ray turns token auth on anyway, with a token of its
own). While it trains: every TCP socket its Ray processes listen on is a loopback address (read from the kernel's
table, /proc/net/tcp and tcp6; nothing is sent anywhere but loopback), a client on this machine without the token is
refused, and the same client with the token (read from the GCS process's environment) runs a task, so the refusal
is the token's doing. Then the driver alone is SIGKILLed: every process of its Ray must end within a minute.
"""
from __future__ import annotations

import ipaddress
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
from ray_procs import kill_processes_under, listening_sockets, processes_under
from sweeps.spec import load_spec

pytestmark = [pytest.mark.ray, pytest.mark.slow]

DRIVER = """
import json, sys
from sweeps.runner import run_sweep
from sweeps.spec import SweepSpec
run_sweep(SweepSpec.from_dict(json.loads(sys.argv[1])), workers=1, progress=False)
"""
CLIENT = """
import ray, sys
ray.init(address=sys.argv[1], log_to_driver=False)
print("SERVED", ray.get(ray.remote(num_cpus=0)(lambda: 6 * 7).remote(), timeout=120), flush=True)
"""


def _loopback(address: str) -> bool:
    ip = ipaddress.ip_address(address)
    mapped = getattr(ip, "ipv4_mapped", None)
    return ip.is_loopback or (mapped is not None and mapped.is_loopback)


def _spec(tmp_path: Path) -> dict:
    raw = dict(load_spec("tiny").raw)
    raw.update(name="exposed", store=str(tmp_path / "store"))
    raw["axes"] = {"tail": [{"family": "uniform"}], "P": [8], "seed": [0]}
    raw["train"] = {**raw["train"], "steps": 200_000}     # still training while the test looks at it
    raw.pop("stop", None)
    return raw


def _wait_for_running(store: Path, proc: subprocess.Popen, seconds: float = 300) -> None:
    deadline = time.time() + seconds
    while time.time() < deadline and proc.poll() is None:
        if store.exists() and "running" in Store(store).read("trials").column("status").to_pylist():
            return
        time.sleep(0.5)
    out = proc.stdout.read() if proc.poll() is not None else ""
    pytest.fail(f"the trial did not start (driver exit {proc.poll()}): {out[-3000:]}")


def test_local_ray_listens_on_loopback_refuses_clients_without_the_token_and_dies_with_its_driver(tmp_path):
    ray_tmp = tempfile.mkdtemp(prefix="rsec", dir="/tmp")
    clean = {k: v for k, v in os.environ.items() if not k.startswith("RAY_AUTH")}
    env = dict(clean, RAY_TMPDIR=ray_tmp, RAY_AUTH_MODE="disabled", RAY_USAGE_STATS_ENABLED="0")
    proc = subprocess.Popen([sys.executable, "-c", DRIVER, json.dumps(_spec(tmp_path))], env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        _wait_for_running(tmp_path / "store", proc)
        sockets = listening_sockets(set(processes_under(ray_tmp)) | {proc.pid})
        gcs = [(port, pid) for _, port, pid, cmd in sockets if "gcs_server" in cmd]
        assert gcs and len(sockets) >= 3, sockets          # the check does see Ray's servers
        assert [s for s in sockets if not _loopback(s[0])] == [], sockets
        gcs_env = dict(kv.split("=", 1) for kv in Path(f"/proc/{gcs[0][1]}/environ").read_text().split("\0") if kv)
        assert gcs_env.get("RAY_AUTH_MODE") == "token", {k: v for k, v in gcs_env.items() if "AUTH" in k}
        token = gcs_env["RAY_AUTH_TOKEN"]

        home = tmp_path / "home"                           # no ~/.ray/auth_token for the clients
        home.mkdir()
        # a client of a loopback Ray must not rewrite 127.0.0.1 to this machine's network address, as Ray does
        client = dict(clean, HOME=str(home), RAY_TMPDIR=ray_tmp, RAY_USAGE_STATS_ENABLED="0",
                      RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER="0")
        runs = {name: subprocess.Popen([sys.executable, "-c", CLIENT, f"127.0.0.1:{gcs[0][0]}"], env=e, text=True,
                                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
                for name, e in (("without", dict(client, RAY_AUTH_MODE="disabled")),
                                ("with", dict(client, RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=token)))}
        outs = {name: p.communicate(timeout=240)[0] for name, p in runs.items()}
        assert runs["with"].returncode == 0 and "SERVED 42" in outs["with"], outs["with"][-3000:]
        assert runs["without"].returncode != 0 and "SERVED" not in outs["without"], outs["without"][-3000:]
        assert "token" in outs["without"].lower(), outs["without"][-3000:]

        os.kill(proc.pid, signal.SIGKILL)                  # the driver alone, not its process group
        proc.wait(timeout=30)
        deadline = time.time() + 60
        while time.time() < deadline and processes_under(ray_tmp):
            time.sleep(1)
        assert processes_under(ray_tmp) == {}, "left running after the driver died"
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        kill_processes_under(ray_tmp)
        shutil.rmtree(ray_tmp, ignore_errors=True)
