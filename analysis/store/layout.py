"""Where the store's files live and how they are named and written, so that readers see whole files only.

Layout: `<root>/<table>/<sweep>/<fragment>.parquet` (schema in `analysis.schema`; stores written before schema
version 2 used `<table>/sweep=<sweep>/` and are read the same way). Writers never modify a file: each flush adds
whole fragments, made visible atomically (temporary `.name.tmp` + rename on local disks/NFS/HDFS, one object put on
object stores).

Fragment names are `<order>_<attempt_ns>_<seq>_<random>_<quoted trial_id>.parquet` for writer fragments and
`<order>_compact_<random>.parquet` for merged ones. `order` is the writer's flush time in ns, strictly increasing
within a writer (for a merged file: the smallest order of its inputs); it only breaks ties between rows of the same
attempt and key ("last write of the attempt wins").
"""
from __future__ import annotations

import contextlib
import os
import secrets
import threading
from dataclasses import dataclass
from typing import Any, Callable, Sequence
from urllib.parse import quote, unquote

import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from analysis.schema import TABLES, schema_metadata, table_schema

ROW_GROUP = 128 * 1024
FORMAT = ds.ParquetFileFormat(
    default_fragment_scan_options=ds.ParquetFragmentScanOptions(page_checksum_verification=True))


def atomic_rename(fs: pafs.FileSystem) -> bool:
    """True where rename is atomic and cheap (local disks, NFS, HDFS); False for object stores (single put)."""
    while isinstance(fs, pafs.SubTreeFileSystem):
        fs = fs.base_fs
    return isinstance(fs, (pafs.LocalFileSystem, pafs.HadoopFileSystem))


@dataclass(frozen=True)
class Frag:
    """One visible fragment file."""
    path: str
    table: str
    sweep: str
    order: int
    name: str
    trial_id: str | None        # None for merged fragments
    size: int
    mtime: float | None


def put_whole(fs: pafs.FileSystem, path: str, write: Callable[[Any], None], atomic_rename: bool) -> None:
    """Have `write(stream)` fill `path` so that readers see all of it or nothing: streamed to a hidden temporary
    file renamed into place where renames are atomic (local, NFS), else buffered and put once (object stores make
    an object visible only once complete)."""
    if not atomic_rename:
        buf = pa.BufferOutputStream()
        write(buf)
        with fs.open_output_stream(path) as out:
            out.write(buf.getvalue())
        return
    d, name = path.rsplit("/", 1)
    tmp = f"{d}/.{name}.{secrets.token_hex(4)}.tmp"
    try:
        with fs.open_output_stream(tmp) as out:
            write(out)
        fs.move(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            fs.delete_file(tmp)
        raise


def parse_name(name: str) -> tuple[int, str | None] | None:
    """(order, trial_id or None) from a fragment file name, or None if it is not a fragment."""
    if name.startswith((".", "_")) or not name.endswith(".parquet"):
        return None
    parts = name[: -len(".parquet")].split("_", 4)
    try:
        order = int(parts[0])
    except ValueError:
        return None
    if len(parts) >= 2 and parts[1] == "compact":
        return order, None
    if len(parts) != 5:
        return None
    return order, unquote(parts[4])


class OutsideStoreError(PermissionError):
    """A write or delete that a symlink would send outside the store's real path (refused, naming the path)."""


def check_inside(root: str, path: str) -> None:
    """OutsideStoreError unless local `path`, symlinks resolved, lies inside `root`'s real path: in a shared store
    a planted symlink must not make the store write or delete anywhere else."""
    real_root, real = os.path.realpath(root), os.path.realpath(path)
    if real != real_root and not real.startswith(real_root.rstrip(os.sep) + os.sep):
        raise OutsideStoreError(f"store {root}: {path} leads outside the store (to {real}) through a symlink; "
                                "refusing to write or delete there")


def torn(before: Sequence[Frag], after: Sequence[Frag]) -> bool:
    """Whether a compaction ran between two listings: a listed file went, or a merged file came. A listing made
    while a compaction renames its merged file in and deletes the originals may hold neither (POSIX leaves both
    unspecified), so a read is only complete when the listing after it shows no compaction began or ended."""
    now = {f.path for f in after}
    then = {f.path for f in before}
    return not then <= now or any(f.trial_id is None and f.path not in then for f in after)


def check_name(what: str, value: str) -> None:
    """ValueError unless `value` can name a folder of the store (a sweep)."""
    if not value or "/" in value or value.startswith(".") or "=" in value:
        raise ValueError(f"{what} {value!r} must be non-empty, without '/', '=' or a leading '.'")


class Layout:
    """The store's location and files: its filesystem and root, listing fragments, writing one atomically."""

    def __init__(self, uri: str | os.PathLike, filesystem: pafs.FileSystem | None = None) -> None:
        uri = os.fspath(uri)
        if filesystem is not None:
            self.fs, self.root = filesystem, uri.rstrip("/")
        elif "://" in uri:
            self.fs, self.root = pafs.FileSystem.from_uri(uri)
        else:
            self.fs, self.root = pafs.LocalFileSystem(), os.path.abspath(uri)
        self.root = self.root.rstrip("/")
        self.uri = uri
        self.atomic_rename = atomic_rename(self.fs)
        self.problems: list[str] = []
        self._cache: dict[str, pa.Table] = {}        # fragments are immutable: path -> small trials attempts table
        self._lock = threading.Lock()
        self._dirs: set[str] = set()

    def _dir(self, table: str, sweep: str | None = None) -> str:
        d = f"{self.root}/{table}" if self.root else table
        return d if sweep is None else f"{d}/{quote(sweep, safe='')}"

    def _write_fragment(self, table: str, sweep: str, name: str, t: pa.Table) -> str:
        """Write `t` as `<table>/sweep=<sweep>/<name>`: temp + rename, or a single put on object stores."""
        d = self._dir(table, sweep)
        if d not in self._dirs:
            self.fs.create_dir(d, recursive=True)
            self._dirs.add(d)
        self._check_inside(d)
        t = t.replace_schema_metadata(schema_metadata())
        final = f"{d}/{name}"
        try:
            put_whole(self.fs, final, lambda out: pq.write_table(t, out, write_page_checksum=True,
                                                                 row_group_size=ROW_GROUP, compression="zstd"),
                      self.atomic_rename)
        except OSError as e:             # "[Errno 28] No space left on device" alone does not say where
            if isinstance(e, OutsideStoreError) or final in str(e):
                raise
            if e.errno:
                raise type(e)(e.errno, f"{e.strerror or e} (store {self.uri})", final) from e
            raise type(e)(f"store {self.uri}: writing {final}: {e}") from e
        return final

    def _check_inside(self, path: str) -> None:
        """`check_inside` for a local store (object stores have no symlinks)."""
        if isinstance(self.fs, pafs.LocalFileSystem):
            check_inside(self.root, path)

    def _delete_fragment(self, path: str) -> None:
        """Delete a fragment this store listed (gone already is fine: another compaction took it)."""
        self._check_inside(path.rsplit("/", 1)[0])
        with contextlib.suppress(FileNotFoundError):
            self.fs.delete_file(path)

    # ---------------------------------------------------------------- listing
    def sweeps(self) -> list[str]:
        """Names of the sweeps that have any fragment in any table."""
        return sorted({f.sweep for t in TABLES for f in self._list(t)})

    def _list(self, table: str, sweep: str | None = None) -> list[Frag]:
        """Visible fragments of a table (temporary and hidden files ignored), in write order; both layouts."""
        root = self._dir(table)
        for attempt in range(3):     # a folder a writer creates while we list it can read as "not found" once
            try:
                if sweep is None:
                    infos = self.fs.get_file_info(pafs.FileSelector(root, recursive=True, allow_not_found=True))
                else:
                    infos = [i for d in (self._dir(table, sweep), f"{root}/sweep={quote(sweep, safe='')}")
                             for i in self.fs.get_file_info(pafs.FileSelector(d, allow_not_found=True))]
                break
            except FileNotFoundError:
                if attempt == 2:
                    raise
        out = []
        for info in infos:
            if info.type != pafs.FileType.File:
                continue
            parent, _, name = info.path.rpartition("/")
            head, _, part = parent.rpartition("/")
            parsed = parse_name(name)
            if parsed is None or head.rstrip("/") != root.rstrip("/") or part.startswith((".", "_")):
                continue
            sw = unquote(part[len("sweep="):] if part.startswith("sweep=") else part)   # "sweep=": version 1
            mtime = info.mtime.timestamp() if info.mtime is not None else None
            out.append(Frag(info.path, table, sw, parsed[0], name, parsed[1], info.size or 0, mtime))
        out.sort(key=lambda f: (f.order, f.name))
        return out

    def dataset(self, table: str) -> ds.Dataset:
        """The raw (not deduplicated) fragments of `table` as a pyarrow dataset (every row carries its sweep)."""
        return ds.dataset([f.path for f in self._list(table)], filesystem=self.fs, format=FORMAT,
                          schema=table_schema(table) if table != "trials" else None)

