"""Test helper: end the Ray processes a test started in its own temp dir, and no others (never `ray stop`,
which would also stop every other Ray instance on the machine)."""
from __future__ import annotations

import os
import signal
from pathlib import Path


def kill_processes_under(tmp: str) -> None:
    """SIGKILL every process tied to this test's Ray temp dir: named in its command line or holding a file in
    it (Ray renames some processes, e.g. ray::DashboardAgent, so the command line alone misses them)."""
    for pid in filter(str.isdigit, os.listdir("/proc")):
        if int(pid) == os.getpid():
            continue
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
            fds = [os.readlink(f"/proc/{pid}/fd/{fd}") for fd in os.listdir(f"/proc/{pid}/fd")]
        except OSError:
            continue
        if tmp in cmd or any(f.startswith(tmp) for f in fds):
            try:
                os.kill(int(pid), signal.SIGKILL)
            except ProcessLookupError:
                pass
