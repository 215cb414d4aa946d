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


def processes_under(tmp: str) -> dict[int, str]:
    """{pid: command line} of every live process tied to a Ray temp dir (as kill_processes_under finds them)."""
    out = {}
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").replace("\0", " ").strip()
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
            fds = [os.readlink(f"/proc/{pid}/fd/{fd}") for fd in os.listdir(f"/proc/{pid}/fd")]
        except OSError:
            continue
        if state != "Z" and int(pid) != os.getpid() and (tmp in cmd or any(f.startswith(tmp) for f in fds)):
            out[int(pid)] = cmd
    return out


def listening_sockets(pids: set[int]) -> list[tuple[str, int, int, str]]:
    """(address, port, pid, command) of every TCP socket in LISTEN state held by one of `pids`, read from
    /proc/net/tcp and /proc/net/tcp6 (the kernel's own table; nothing is sent anywhere)."""
    import socket
    import struct

    owner: dict[int, int] = {}
    for pid in pids:
        try:
            for fd in os.listdir(f"/proc/{pid}/fd"):
                link = os.readlink(f"/proc/{pid}/fd/{fd}")
                if link.startswith("socket:["):
                    owner[int(link[8:-1])] = pid
        except OSError:
            continue
    out = []
    for table, family in (("/proc/net/tcp", socket.AF_INET), ("/proc/net/tcp6", socket.AF_INET6)):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] != "0A" or int(fields[9]) not in owner:      # 0A: TCP_LISTEN
                continue
            hex_ip, hex_port = fields[1].split(":")
            raw = b"".join(struct.pack("<I", int(hex_ip[i:i + 8], 16)) for i in range(0, len(hex_ip), 8))
            pid = owner[int(fields[9])]
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").replace("\0", " ")[:100]
            out.append((socket.inet_ntop(family, raw), int(hex_port, 16), pid, cmd))
    return out
