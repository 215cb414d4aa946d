"""One driver per sweep: a lease file in the store, renewed by a heartbeat, that a second driver respects.

The lease is `<store root>/_lease/<sweep>.json` (readers of the store ignore `_`-prefixed folders), written whole
through `pyarrow.fs` like the store's fragments (temporary file + rename on local disks and NFS, one put on object
stores). It names its holder (host, pid, start time) and is renewed every `heartbeat_s` seconds; a lease not
renewed for `ttl_s` seconds is stale, and so is one whose holder ran on this machine (same host, boot and PID
namespace) and whose process is gone, so a killed driver's `--resume` need not wait for the timeout.

Acquiring is check, write, wait `settle_s`, read back: of two drivers that start at the same moment, the one whose
write landed last keeps the lease and the other is refused. Neither object stores nor `pyarrow.fs` offer an
atomic create-if-absent, so two drivers that each pause longer than `settle_s` between their check and their write
could both proceed; the holder's heartbeat then notices the lost lease and warns. Freshness compares the holder's
last renewal (its clock) and the lease file's modification time (the storage's clock) with this machine's clock,
taking the later of the two, so a skewed clock delays a takeover but does not cause one.
"""
from __future__ import annotations

import json
import os
import secrets
import socket
import threading
import time
import warnings
from datetime import datetime, timezone
from typing import Any
from urllib.parse import quote

import pyarrow.fs as pafs

LEASE_DIR = "_lease"
TTL_S = 60.0


class RefusedToStart(RuntimeError):
    """A condition that stops a driver before any work starts (the CLI prints it without a traceback, exit 2)."""


class LeaseHeld(RefusedToStart):
    """Another live driver holds the lease of this sweep."""

    def __init__(self, message: str, holder: dict[str, Any]):
        super().__init__(message)
        self.holder = holder


class StoreUnwritable(RefusedToStart):
    """The driver cannot write its lease: the store is read-only, full or unreachable."""


def _machine() -> str:
    """This kernel boot and PID namespace ('' when unknown): a holder's pid can be checked only where they match
    (containers on one host share the boot id and may share the host name, not the PID namespace)."""
    try:
        with open("/proc/sys/kernel/random/boot_id") as f:
            return f"{f.read().strip()}/{os.readlink('/proc/self/ns/pid')}"
    except OSError:
        return ""


def _proc_start(pid: int) -> str | None:
    """The start time of process `pid` in clock ticks since boot (Linux), None if there is no such process."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        except PermissionError:
            pass
        return ""  # alive, start time unknown (no /proc)


def _holder_gone(info: dict[str, Any]) -> bool:
    """True when the holder ran on this machine (same host, boot and PID namespace) and its process is gone."""
    if info.get("host") != socket.gethostname() or not info.get("machine") or info.get("machine") != _machine():
        return False
    start = _proc_start(int(info.get("pid", -1)))
    return start is None or (bool(start) and bool(info.get("proc_start")) and start != info.get("proc_start"))


def describe(info: dict[str, Any]) -> str:
    """'host pid 123 (started 2025-01-01T12:00:00+00:00)'."""
    return f"{info.get('host', '?')} pid {info.get('pid', '?')} (started {info.get('started_at', '?')})"


class Lease:
    """The lease of `sweep` in the store at `store_uri`; `acquire()` it, `release()` it (or use `with`)."""

    def __init__(self, store_uri: str, sweep: str, ttl_s: float = TTL_S, heartbeat_s: float | None = None,
                 settle_s: float | None = None):
        from analysis.store import Store

        store = Store(store_uri)
        self.fs, self.uri, self.sweep = store.fs, str(store_uri), sweep
        self.atomic_rename = store.atomic_rename
        self.dir = f"{store.root}/{LEASE_DIR}"
        self.path = f"{self.dir}/{quote(sweep, safe='')}.json"
        self.ttl_s = float(ttl_s)
        self.heartbeat_s = float(heartbeat_s) if heartbeat_s is not None else self.ttl_s / 6
        self.settle_s = float(settle_s) if settle_s is not None else (0.5 if self.atomic_rename else 2.0)
        self.token = secrets.token_hex(16)
        self.lost: dict[str, Any] | None = None  # the lease's new holder, when the heartbeat found it taken
        self._info: dict[str, Any] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # ---------------------------------------------------------------- file
    def read(self) -> tuple[dict[str, Any], float | None] | None:
        """(lease content, file mtime in epoch seconds) or None when there is no (readable) lease."""
        try:
            info = self.fs.get_file_info(self.path)
            if info.type != pafs.FileType.File:
                return None
            with self.fs.open_input_stream(self.path) as f:
                data = json.loads(f.read().decode())
        except (OSError, ValueError):
            return None
        if not isinstance(data, dict):
            return None
        return data, (info.mtime.timestamp() if info.mtime is not None else None)

    def _write(self) -> None:
        from analysis.store import put_whole

        data = json.dumps({**self._info, "renewed_at": time.time()}).encode()
        self.fs.create_dir(self.dir, recursive=True)
        put_whole(self.fs, self.path, lambda out: out.write(data), self.atomic_rename)

    def stale(self, info: dict[str, Any], mtime: float | None, now: float | None = None) -> bool:
        """Whether a lease (content, mtime) has expired or its holder is known to be dead."""
        if _holder_gone(info):
            return True
        last = max(float(info.get("renewed_at", 0) or 0), mtime or 0.0)
        ttl = float(info.get("ttl_s", self.ttl_s) or self.ttl_s)
        return (time.time() if now is None else now) - last > ttl

    def _refuse(self, info: dict[str, Any], mtime: float | None) -> LeaseHeld:
        age = time.time() - max(float(info.get("renewed_at", 0) or 0), mtime or 0.0)
        ttl = float(info.get("ttl_s", self.ttl_s) or self.ttl_s)
        return LeaseHeld(
            f"sweep {self.sweep!r} in store {self.uri} is already being run by {describe(info)}; its last heartbeat "
            f"was {max(age, 0):.0f} s ago and its lease expires {ttl:.0f} s after the last one. Wait for that driver "
            f"to finish or stop it; if it is dead on another machine, its lease ({self.path}) expires by itself.",
            info)

    # ---------------------------------------------------------------- lifecycle
    def acquire(self) -> "Lease":
        """Take the lease (refused with LeaseHeld while a live driver holds it) and start the heartbeat."""
        cur = self.read()
        if cur is not None and cur[0].get("token") != self.token and not self.stale(*cur):
            raise self._refuse(*cur)
        self._info = {"sweep": self.sweep, "token": self.token, "host": socket.gethostname(), "pid": os.getpid(),
                      "proc_start": _proc_start(os.getpid()) or "", "machine": _machine(), "ttl_s": self.ttl_s,
                      "started_at": datetime.now(timezone.utc).isoformat(timespec="seconds")}
        try:
            self._write()
        except OSError as e:
            raise StoreUnwritable(f"cannot write the sweep's lease {self.path} in store {self.uri}: {e}") from e
        time.sleep(self.settle_s)
        back = self.read()
        if back is None or back[0].get("token") != self.token:
            raise self._refuse(*back) if back is not None else StoreUnwritable(
                f"the sweep's lease {self.path} vanished right after it was written")
        self._stop.clear()
        self._thread = threading.Thread(target=self._beat, name=f"memsweep-lease-{self.sweep}", daemon=True)
        self._thread.start()
        return self

    def _beat(self) -> None:
        """Renew the lease every heartbeat_s until released; stop (with a warning) if someone else took it."""
        warned = False
        while not self._stop.wait(self.heartbeat_s):
            cur = self.read()
            if cur is not None and cur[0].get("token") != self.token:
                self.lost = cur[0]
                warnings.warn(f"memsweep: the lease of sweep {self.sweep!r} was taken over by {describe(cur[0])}; "
                              "two drivers may now be running it", RuntimeWarning, stacklevel=1)
                return
            try:
                self._write()
                warned = False
            except OSError as e:
                if not warned:
                    warnings.warn(f"memsweep: cannot renew the lease {self.path}: {e}", RuntimeWarning, stacklevel=1)
                    warned = True

    def release(self) -> None:
        """Stop the heartbeat and delete the lease if this driver still holds it."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None
        cur = self.read()
        if cur is not None and cur[0].get("token") == self.token:
            try:
                self.fs.delete_file(self.path)
            except OSError as e:
                warnings.warn(f"memsweep: cannot delete the lease {self.path} ({e}); it expires by itself in "
                              f"{self.ttl_s:.0f} s", RuntimeWarning, stacklevel=2)

    def __enter__(self) -> "Lease":
        return self.acquire()

    def __exit__(self, *exc: Any) -> None:
        self.release()
