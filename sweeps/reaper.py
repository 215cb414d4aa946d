"""A watchdog for the embedded Ray of a local run: when the driver dies without shutting Ray down (SIGKILL, the OOM
killer), Ray's agents (DashboardAgent, RuntimeEnvAgent) try to report the raylet's death to a GCS that died with it
and linger for minutes. The watchdog, a small process in a session of its own, waits for the driver to end, gives
Ray's processes a few seconds to end by themselves, then SIGKILLs every process that names the driver's Ray session
directory in its command line or holds a file in it, and nothing else. Linux only (/proc); elsewhere a no-op.

Usage (sweeps.runner): `watch(session_dir)` right after ray.init; `stop()` on the returned process after
ray.shutdown.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

GRACE_S = 5.0     # Ray's own processes usually end within this after their driver
POLL_S = 0.5


def _start_time(pid: int) -> str | None:
    """The kernel's start time of `pid` (tells a live driver from a new process that reuses its pid)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def processes_in(session_dir: str) -> list[int]:
    """Live processes (not this one) that name `session_dir` in their command line or hold a file in it."""
    out = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        if int(pid) == os.getpid():
            continue
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
            if session_dir not in cmd:
                fds = (os.readlink(f"/proc/{pid}/fd/{fd}") for fd in os.listdir(f"/proc/{pid}/fd"))
                if not any(f.startswith(session_dir) for f in fds):
                    continue
            if Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z":
                out.append(int(pid))
        except OSError:
            continue
    return out


def watch(session_dir: str) -> subprocess.Popen | None:
    """Start the watchdog of this process's embedded Ray (None where there is no /proc)."""
    if not Path("/proc/self/stat").exists() or not session_dir:
        return None
    return subprocess.Popen([sys.executable, "-m", "sweeps.reaper", str(os.getpid()), str(_start_time(os.getpid())),
                             session_dir], start_new_session=True, stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def stop(proc: subprocess.Popen | None) -> None:
    """End the watchdog after a clean ray.shutdown()."""
    if proc is not None and proc.poll() is None:
        proc.kill()
        proc.wait()


def main(driver: int, started: str, session_dir: str) -> None:
    while _start_time(driver) == started:
        time.sleep(POLL_S)
    deadline = time.time() + GRACE_S
    while time.time() < deadline and processes_in(session_dir):
        time.sleep(POLL_S)
    for pid in processes_in(session_dir):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


if __name__ == "__main__":
    main(int(sys.argv[1]), sys.argv[2], sys.argv[3])
