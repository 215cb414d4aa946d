"""The shared results store: append-only Parquet fragments under any `pyarrow.fs` location, read back deduplicated.

Layout: `<root>/<table>/<sweep>/<fragment>.parquet` (schema in `analysis.schema`; stores written before schema
version 2 used `<table>/sweep=<sweep>/` and are read the same way). Writers never modify a file:
each flush adds whole fragments, made visible atomically (temporary `.name.tmp` + rename on local disks/NFS/HDFS,
one object put on object stores). Readers merge every fragment and apply the retry rule (see `Store.read`), so
crashes lose nothing and retries double nothing. `Store.compact` merges fragments without changing what readers see.

Fragment names are `<order>_<attempt_ns>_<seq>_<random>_<quoted trial_id>.parquet` for writer fragments and
`<order>_compact_<random>.parquet` for merged ones. `order` is the writer's flush time in ns, strictly increasing
within a writer (for a merged file: the smallest order of its inputs); it only breaks ties between rows of the same
attempt and key ("last write of the attempt wins").
"""
from __future__ import annotations

import contextlib

import json
import math
import os
import secrets
import threading
import time
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Callable, Iterable, Mapping, Sequence
from urllib.parse import quote, unquote

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from analysis.schema import (ATTEMPT_COLUMNS, CFG_PREFIX, KEYS, SCHEMAS, TABLES, SchemaVersionError,
                             check_version, schema_metadata, table_schema)

__all__ = ["Store", "Writer", "print_summary", "SchemaVersionError"]

_AUTO = ATTEMPT_COLUMNS                              # filled by the writer
_ROW_GROUP = 128 * 1024
_FORMAT = ds.ParquetFileFormat(
    default_fragment_scan_options=ds.ParquetFragmentScanOptions(page_checksum_verification=True))
_MAX_RETRIES = 5
_ATTEMPT_SCHEMA = pa.schema([table_schema("curves").field(c) for c in ATTEMPT_COLUMNS])


def _atomic_rename(fs: pafs.FileSystem) -> bool:
    """True where rename is atomic and cheap (local disks, NFS, HDFS); False for object stores (single put)."""
    while isinstance(fs, pafs.SubTreeFileSystem):
        fs = fs.base_fs
    return isinstance(fs, (pafs.LocalFileSystem, pafs.HadoopFileSystem))


@dataclass(frozen=True)
class _Frag:
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


def _parse_name(name: str) -> tuple[int, str | None] | None:
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


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _is_column(v: Any, field: pa.Field | None) -> bool:
    """Whether `v` holds one value per row (else it is one value, broadcast to every row)."""
    if isinstance(v, (pa.Array, pa.ChunkedArray)):
        return True
    if isinstance(v, np.ndarray):
        return v.ndim >= (2 if field is not None and pa.types.is_list(field.type) else 1)
    if isinstance(v, (list, tuple)):
        if field is not None and pa.types.is_list(field.type):
            return len(v) == 0 or isinstance(v[0], (list, tuple, np.ndarray)) or v[0] is None
        return True
    return False


def _as_column(name: str, values: Any, field: pa.Field | None, n: int) -> pa.Array | pa.ChunkedArray:
    """Convert user values to an Arrow array of the schema's type; config columns (no field) become
    int64/float64/bool/string, lists and dicts as JSON. Timestamps may be given as epoch seconds."""
    if isinstance(values, (pa.Array, pa.ChunkedArray)):
        arr = values
    else:
        if isinstance(values, np.ndarray) and values.ndim == 1 and (field is None or not (
                pa.types.is_timestamp(field.type) or pa.types.is_list(field.type) or name == "tail_levels")):
            values = pa.array(values, from_pandas=True)
            return _as_column(name, values, field, n)
        seq = list(values) if _is_column(values, field) else [values] * n
        if field is not None and pa.types.is_timestamp(field.type):
            seq = [datetime.fromtimestamp(float(v), timezone.utc)
                   if isinstance(v, (int, float, np.number)) and not isinstance(v, bool) else v for v in seq]
        elif name == "tail_levels":
            seq = [",".join(str(int(x)) for x in v) if isinstance(v, (list, tuple, np.ndarray)) else v for v in seq]
        elif field is None:
            seq = [json.dumps(v) if isinstance(v, (list, tuple, dict)) else v for v in seq]
        elif pa.types.is_list(field.type):
            seq = [None if v is None else list(np.asarray(v, dtype=float)) for v in seq]
        arr = pa.array(seq, type=field.type if field is not None else None, from_pandas=True)
    if field is not None:
        if arr.type != field.type:
            arr = arr.cast(field.type)
    elif pa.types.is_integer(arr.type):
        arr = arr.cast(pa.int64())
    elif pa.types.is_floating(arr.type):
        arr = arr.cast(pa.float64())
    return arr


def _to_table(table: str, data: Mapping[str, Any] | pa.Table | pa.RecordBatch, fill: Mapping[str, Any]) -> pa.Table:
    """Validate column names and build a table with the schema's types; `fill` supplies writer-owned columns."""
    schema = table_schema(table)
    if isinstance(data, pa.RecordBatch):
        data = pa.Table.from_batches([data])
    cols: dict[str, Any] = ({n: data.column(n) for n in data.column_names} if isinstance(data, pa.Table)
                            else dict(data))
    unknown = [c for c in cols if schema.get_field_index(c) < 0
               and not (table == "trials" and c.startswith(CFG_PREFIX))]
    if unknown:
        raise ValueError(f"unknown column(s) {unknown} for table {table!r}; valid: {schema.names}"
                         + (f" and {CFG_PREFIX}*" if table == "trials" else ""))
    for c in _AUTO:
        if c in cols:
            given = cols[c]
            vals = set(given.to_pylist() if hasattr(given, "to_pylist") else
                       (list(given) if _is_column(given, None) else [given]))
            if vals - {fill[c]}:
                raise ValueError(f"column {c!r} is {sorted(map(str, vals))} but this writer is for {c}={fill[c]!r}")
            del cols[c]
    missing = [k for k in KEYS[table] if k not in cols and k not in fill]
    if missing:
        raise ValueError(f"table {table!r} needs key column(s) {missing}")
    fields_of = {f.name: f for f in schema}
    lengths = {len(v) for c, v in cols.items() if _is_column(v, fields_of.get(c))}
    if len(lengths) > 1:
        raise ValueError(f"columns of {table!r} have different lengths {sorted(lengths)}")
    n = lengths.pop() if lengths else 1
    arrays, fields = [], []
    for f in schema:
        if f.name in cols:
            arr = _as_column(f.name, cols[f.name], f, n)
        elif f.name in fill:
            arr = _as_column(f.name, fill[f.name], f, n)
        else:
            arr = pa.nulls(n, f.type)
        arrays.append(arr)
        fields.append(f)
    for c in sorted(c for c in cols if c.startswith(CFG_PREFIX)):
        arr = _as_column(c, cols[c], None, n)
        arrays.append(arr)
        fields.append(pa.field(c, arr.type))
    return pa.Table.from_arrays(arrays, schema=pa.schema(fields))


def _unify(schemas: Sequence[pa.Schema], base: pa.Schema) -> pa.Schema:
    """One schema for many fragments: `base` columns keep their type; extra columns are unified, numbers
    promoting to float64 when int and float meet, anything else incompatible becoming string."""
    extra: dict[str, list[pa.DataType]] = {}
    for s in schemas:
        for f in s:
            if base.get_field_index(f.name) < 0:
                extra.setdefault(f.name, []).append(f.type)
    fields = list(base)
    for name in sorted(extra):
        types = {t for t in extra[name] if not pa.types.is_null(t)}
        if not types:
            t = pa.null()
        elif len(types) == 1:
            t = types.pop()
        elif all(pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_boolean(t) for t in types):
            t = pa.float64() if any(pa.types.is_floating(t) for t in types) else pa.int64()
        else:
            t = pa.string()
        fields.append(pa.field(name, t))
    return pa.schema(fields)


def _conform(t: pa.Table, schema: pa.Schema) -> pa.Table:
    """Cast/reorder `t` to `schema`, adding missing columns as nulls."""
    if t.schema.equals(schema, check_metadata=False):
        return t
    arrays = []
    for f in schema:
        if f.name in t.column_names:
            col = t.column(f.name)
            arrays.append(col if col.type == f.type else col.cast(f.type))
        else:
            arrays.append(pa.nulls(len(t), f.type))
    return pa.Table.from_arrays(arrays, schema=schema)


def _check_keys(table: str, phys: pa.Schema) -> None:
    """ValueError when a fragment lacks a column that identifies its rows (it would read as phantom rows)."""
    missing = [c for c in dict.fromkeys(("sweep", "trial_id") + KEYS[table]) if phys.get_field_index(c) < 0]
    if missing:
        raise ValueError(f"no key column(s) {missing}: not a fragment of table {table!r}")


_KINDS = (pa.types.is_integer, pa.types.is_floating, pa.types.is_string, pa.types.is_large_string,
          pa.types.is_boolean, pa.types.is_timestamp, pa.types.is_list, pa.types.is_large_list)


def _same_kind(have: pa.DataType, want: pa.DataType) -> bool:
    """Whether a stored type is the schema's up to width (int32 for int64, large_string for string, all-null)."""
    if pa.types.is_null(have) or have == want:
        return True
    if pa.types.is_dictionary(have):
        have = have.value_type
    if (pa.types.is_string(want) or pa.types.is_large_string(want)) and (
            pa.types.is_string(have) or pa.types.is_large_string(have)):
        return True
    return any(k(have) and k(want) for k in _KINDS[:2] + _KINDS[4:])


def _check_types(table: str, phys: pa.Schema) -> None:
    """ValueError naming the first schema column a fragment stores with another kind of type (say `step` as
    text): such a fragment was not written by this store's writer, and is skipped and reported."""
    base = table_schema(table)
    for f in phys:
        i = base.get_field_index(f.name)
        if i >= 0 and not _same_kind(f.type, base.field(i).type):
            raise ValueError(f"column {f.name!r} is {f.type}, expected {base.field(i).type}")


def _typed(table: str, t: pa.Table) -> pa.Table:
    """`t` with its schema columns cast to the schema's exact types (widths: int32 -> int64, ...)."""
    base = table_schema(table)
    cols = []
    for name in t.column_names:
        col = t.column(name)
        i = base.get_field_index(name)
        if i >= 0 and col.type != base.field(i).type:
            col = col.cast(base.field(i).type)
        cols.append(col)
    return pa.Table.from_arrays(cols, names=t.column_names)


def _referenced(expr: pc.Expression, schema: pa.Schema) -> set[str]:
    """The columns of `schema` that `expr` refers to (ValueError if it refers to one `schema` lacks)."""
    def binds(s: pa.Schema) -> bool:
        try:
            s.empty_table().filter(expr)
            return True
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError, KeyError):
            return False
    if not binds(schema):
        raise ValueError(f"filter {expr} does not apply to columns {schema.names}")
    return {f.name for i, f in enumerate(schema) if not binds(schema.remove(i))}


def _cutoffs(attempts: pa.Table) -> pa.Table:
    """Per (sweep, trial_id, attempt_ns): the smallest resumed_from_step of any later attempt of the same trial
    (rows of the attempt with a larger step are superseded). Only attempts that have a later one are returned.
    Attempts are ordered by their counter `attempt` (never by a clock across machines), then by attempt_ns (the only
    order stores written before the counter have)."""
    if attempts.num_rows == 0:
        return attempts.select(["sweep", "trial_id", "attempt_ns"]).append_column("cutoff", pa.array([], pa.int64()))
    df = attempts.to_pandas()
    df["_order"] = df["attempt"].fillna(-1)
    df = df.sort_values(["sweep", "trial_id", "_order", "attempt_ns"], ascending=[True, True, False, False],
                        kind="stable")
    g = df.groupby(["sweep", "trial_id"], sort=False)["rfs"]
    df["cutoff"] = g.cummin().groupby([df["sweep"], df["trial_id"]], sort=False).shift(1)
    df = df.dropna(subset=["cutoff"])
    return pa.table({"sweep": pa.array(df["sweep"], pa.string()), "trial_id": pa.array(df["trial_id"], pa.string()),
                     "attempt_ns": pa.array(df["attempt_ns"], pa.int64()),
                     "cutoff": pa.array(df["cutoff"].astype("int64"), pa.int64())})


class Writer:
    """Buffers rows of one trial attempt and flushes them as one new fragment per table (see `Store.writer`)."""

    def __init__(self, store: "Store", sweep: str, trial_id: str, attempt_ns: int | None = None,
                 resumed_from_step: int = 0, max_rows: int = 200_000, attempt: int | None = None) -> None:
        _check_name("sweep", sweep)
        if not trial_id:
            raise ValueError("trial_id must be a non-empty string")
        self.store, self.sweep, self.trial_id = store, sweep, str(trial_id)
        self.attempt_ns = int(attempt_ns if attempt_ns is not None else time.time_ns())
        self.resumed_from_step = int(resumed_from_step)
        self.attempt = None if attempt is None else int(attempt)
        self.max_rows = max_rows
        self._buf: dict[str, list[pa.Table]] = {}
        self._rows = 0
        self._seq = 0
        self._order = 0
        self.written: list[str] = []

    def append(self, table: str, data: Mapping[str, Any] | pa.Table | pa.RecordBatch) -> None:
        """Buffer rows (dict of columns, scalars broadcast, or an Arrow table); validates names and types now."""
        fill: dict[str, Any] = {"sweep": self.sweep, "trial_id": self.trial_id, "attempt_ns": self.attempt_ns,
                                "attempt": self.attempt, "resumed_from_step": self.resumed_from_step}
        if table == "curves":
            fill["written_at"] = _now()
        t = _to_table(table, data, fill)
        self._buf.setdefault(table, []).append(t)
        self._rows += t.num_rows
        if self._rows >= self.max_rows:
            self.flush()

    def flush(self) -> list[str]:
        """Write every buffered table as one fragment each (atomically visible); returns the paths written."""
        paths = []
        for table, parts in list(self._buf.items()):
            t = pa.concat_tables(parts, promote_options="permissive") if len(parts) > 1 else parts[0]
            self._order = max(self._order + 1, time.time_ns())
            name = (f"{self._order:020d}_{self.attempt_ns}_{self._seq:05d}_{secrets.token_hex(4)}_"
                    f"{quote(self.trial_id, safe='')}.parquet")
            self._seq += 1
            paths.append(self.store._write_fragment(table, self.sweep, name, t))
            del self._buf[table]
        self._rows = 0
        self.written.extend(paths)
        return paths

    def close(self) -> None:
        """Flush what is buffered."""
        self.flush()

    def __enter__(self) -> "Writer":
        return self

    def __exit__(self, *exc: Any) -> None:
        # Rows appended before an exception are complete rows: keep them.
        self.flush()


def _check_name(what: str, value: str) -> None:
    if not value or "/" in value or value.startswith(".") or "=" in value:
        raise ValueError(f"{what} {value!r} must be non-empty, without '/', '=' or a leading '.'")


class Store:
    """A results store at `uri` (a path, file://, s3://, mock://, any `pyarrow.fs` URI) or on `filesystem`."""

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
        self.atomic_rename = _atomic_rename(self.fs)
        self.problems: list[str] = []
        self._cache: dict[str, pa.Table] = {}        # fragments are immutable: path -> small trials attempts table
        self._lock = threading.Lock()
        self._dirs: set[str] = set()

    def __repr__(self) -> str:
        return f"Store({self.uri!r})"

    # ---------------------------------------------------------------- writing
    def writer(self, sweep: str, trial_id: str, attempt_ns: int | None = None, resumed_from_step: int = 0,
               max_rows: int = 200_000, attempt: int | None = None) -> Writer:
        """A buffered writer for one attempt of one trial; use as a context manager (flushes on exit).

        `attempt` orders the trial's attempts (take it from `next_attempt`, or the attempt a row continues); without
        it attempts are ordered by `attempt_ns`, a start time, which is only safe on one machine's clock."""
        return Writer(self, sweep, trial_id, attempt_ns, resumed_from_step, max_rows, attempt)

    def next_attempt(self, sweep: str, trial_id: str) -> int:
        """The counter for a new attempt of a trial: one more than any attempt the store has for it (trials and
        curves rows), 1 for the first. Attempts of one trial never run at once (one driver holds the sweep's
        lease; Tune runs one attempt of a trial at a time), so this cannot go backwards."""
        seen = [0]
        for table in ("trials", "curves"):
            t, _ = self._raw(table, sweep, [trial_id], ["trial_id", "attempt_ns", "attempt"], None)
            if t.num_rows:
                top = pc.max(t["attempt"]).as_py()
                seen.append(int(top) if top is not None else 0)
                seen.append(1 if top is None else 0)        # a store written before the counter: its attempts count
        return max(seen) + 1

    def _dir(self, table: str, sweep: str | None = None) -> str:
        d = f"{self.root}/{table}" if self.root else table
        return d if sweep is None else f"{d}/{quote(sweep, safe='')}"

    def _write_fragment(self, table: str, sweep: str, name: str, t: pa.Table) -> str:
        """Write `t` as `<table>/sweep=<sweep>/<name>`: temp + rename, or a single put on object stores."""
        d = self._dir(table, sweep)
        if d not in self._dirs:
            self.fs.create_dir(d, recursive=True)
            self._dirs.add(d)
        t = t.replace_schema_metadata(schema_metadata())
        final = f"{d}/{name}"
        put_whole(self.fs, final, lambda out: pq.write_table(t, out, write_page_checksum=True,
                                                             row_group_size=_ROW_GROUP, compression="zstd"),
                  self.atomic_rename)
        return final

    # ---------------------------------------------------------------- listing
    def sweeps(self) -> list[str]:
        """Names of the sweeps that have any fragment in any table."""
        return sorted({f.sweep for t in TABLES for f in self._list(t)})

    def _list(self, table: str, sweep: str | None = None) -> list[_Frag]:
        """Visible fragments of a table (temporary and hidden files ignored), in write order; both layouts."""
        root = self._dir(table)
        if sweep is None:
            infos = self.fs.get_file_info(pafs.FileSelector(root, recursive=True, allow_not_found=True))
        else:
            infos = [i for d in (self._dir(table, sweep), f"{root}/sweep={quote(sweep, safe='')}")
                     for i in self.fs.get_file_info(pafs.FileSelector(d, allow_not_found=True))]
        out = []
        for info in infos:
            if info.type != pafs.FileType.File:
                continue
            parent, _, name = info.path.rpartition("/")
            head, _, part = parent.rpartition("/")
            parsed = _parse_name(name)
            if parsed is None or head.rstrip("/") != root.rstrip("/") or part.startswith((".", "_")):
                continue
            sw = unquote(part[len("sweep="):] if part.startswith("sweep=") else part)   # "sweep=": version 1
            mtime = info.mtime.timestamp() if info.mtime is not None else None
            out.append(_Frag(info.path, table, sw, parsed[0], name, parsed[1], info.size or 0, mtime))
        out.sort(key=lambda f: (f.order, f.name))
        return out

    def dataset(self, table: str) -> ds.Dataset:
        """The raw (not deduplicated) fragments of `table` as a pyarrow dataset (every row carries its sweep)."""
        return ds.dataset([f.path for f in self._list(table)], filesystem=self.fs, format=_FORMAT,
                          schema=table_schema(table) if table != "trials" else None)

    # ---------------------------------------------------------------- raw reading
    def _problem(self, msg: str) -> None:
        with self._lock:
            if msg not in self.problems:
                self.problems.append(msg)
        warnings.warn(f"memsweep store: skipped {msg}", RuntimeWarning, stacklevel=4)

    def _read_frags(self, frags: Sequence[_Frag], columns: Sequence[str] | None, filt: pc.Expression | None) -> tuple[list[pa.Table], list[_Frag]]:
        """Read fragments in parallel (threads); corrupt ones are reported and skipped; a fragment deleted under
        us (by compaction) raises FileNotFoundError so the caller re-lists. Returns tables in `frags` order."""
        def one(f: _Frag) -> pa.Table | Exception:
            try:
                with self.fs.open_input_file(f.path) as fh:
                    pf = pq.ParquetFile(fh, page_checksum_verification=True)
                    phys = pf.schema_arrow
                    check_version(phys.metadata, f.path)
                    _check_keys(f.table, phys)
                    _check_types(f.table, phys)
                    cols = None if columns is None else [c for c in columns if phys.get_field_index(c) >= 0]
                    if filt is not None and pf.metadata.num_row_groups > 1:
                        # big (merged) file: let the dataset scanner skip row groups by their statistics
                        frag = _FORMAT.make_fragment(f.path, filesystem=self.fs, file_size=f.size or None)
                        t = frag.to_table(columns=cols, filter=filt, use_threads=False)
                        return _typed(f.table, t)
                    t = _typed(f.table, pf.read(columns=cols, use_threads=False))
                    return t if filt is None else t.filter(filt)
            except SchemaVersionError as e:
                return e
            except FileNotFoundError as e:
                return e
            except (OSError, pa.ArrowException, ValueError) as e:
                if not self.fs.get_file_info(f.path).type == pafs.FileType.File:
                    return FileNotFoundError(f.path)
                return e
        if not frags:
            return [], []
        workers = min(8, len(frags), (os.cpu_count() or 2) * 2)
        if workers > 1:
            with ThreadPoolExecutor(workers) as ex:
                results = list(ex.map(one, frags))
        else:
            results = [one(f) for f in frags]
        tables, kept = [], []
        for f, r in zip(frags, results):
            if isinstance(r, (SchemaVersionError, FileNotFoundError)):
                raise r
            if isinstance(r, Exception):
                self._problem(f"{f.path}: {type(r).__name__}: {r}")
                continue
            tables.append(r)
            kept.append(f)
        return tables, kept

    def _raw(self, table: str, sweep: str | None, trials: Sequence[str] | None, columns: Sequence[str] | None,
             filt: pc.Expression | None) -> tuple[pa.Table, list[_Frag]]:
        """Every stored row (not deduplicated) in write order, conformed to one schema; re-lists if compaction
        deletes a fragment while we read."""
        base = table_schema(table)
        if trials is not None:
            ids = pa.array(sorted(set(map(str, trials))), pa.string())
            f_ids = pc.field("trial_id").isin(ids)
            filt = f_ids if filt is None else (filt & f_ids)
            want = set(ids.to_pylist())
        for attempt in range(_MAX_RETRIES):
            frags = self._list(table, sweep)
            if trials is not None:
                frags = [f for f in frags if f.trial_id is None or f.trial_id in want]
            try:
                tables, kept = self._read_frags(frags, columns, filt)
            except FileNotFoundError:
                if attempt == _MAX_RETRIES - 1:
                    raise
                continue
            break
        if columns is None:
            schema = _unify([t.schema for t in tables], base) if table == "trials" else base
        else:
            schema = _unify([t.schema for t in tables], pa.schema([base.field(c) for c in columns
                                                                  if base.get_field_index(c) >= 0]))
            schema = pa.schema([schema.field(c) for c in columns if schema.get_field_index(c) >= 0])
        if not tables:
            return schema.empty_table(), kept
        return pa.concat_tables([_conform(t, schema) for t in tables]), kept

    def _attempts(self, sweep: str | None, trials: Sequence[str] | None, own: pa.Table | None = None) -> pa.Table:
        """(sweep, trial_id, attempt_ns, attempt, rfs) of every attempt the trials table knows, merged with the
        attempts of `own` (rows of a data table, which carry the same columns): so a damaged or missing trials
        fragment costs no data row. rfs stays null where neither says it."""
        cols = ["sweep", "trial_id", "attempt_ns", "attempt", "resumed_from_step"]
        parts: list[pa.Table] = []
        for _ in range(_MAX_RETRIES):
            frags = self._list("trials", sweep)
            if trials is not None:
                want = set(map(str, trials))
                frags = [f for f in frags if f.trial_id is None or f.trial_id in want]
            todo = [f for f in frags if f.path not in self._cache]
            try:
                tables, kept = self._read_frags(todo, cols, None)
            except FileNotFoundError:
                continue
            for f, t in zip(kept, tables):
                self._cache[f.path] = _conform(t, _ATTEMPT_SCHEMA)
            parts = [self._cache[f.path] for f in frags if f.path in self._cache]
            break
        else:
            raise FileNotFoundError("store kept changing while reading the trials table")
        if own is not None and own.num_rows:
            parts.append(_conform(own.select([c for c in cols if c in own.column_names]), _ATTEMPT_SCHEMA))
        t = pa.concat_tables(parts) if parts else _ATTEMPT_SCHEMA.empty_table()
        if trials is not None:
            t = t.filter(pc.field("trial_id").isin(pa.array(sorted(set(map(str, trials))), pa.string())))
        # One attempt counter and rfs per attempt (its rows all carry the writer's values; max if they disagree).
        return t.group_by(["sweep", "trial_id", "attempt_ns"]).aggregate(
            [("attempt", "max"), ("resumed_from_step", "max")]).rename_columns(
            ["sweep", "trial_id", "attempt_ns", "attempt", "rfs"])

    # ---------------------------------------------------------------- dedupe
    @staticmethod
    def _latest(t: pa.Table, keys: Sequence[str]) -> pa.Table:
        """Keep, per `keys`, the row of the latest attempt (ties: the last written). `t` is in write order and has
        the columns attempt and attempt_ns."""
        n = t.num_rows
        if n == 0:
            return t
        # the attempt counter first (null: a store written before it), then the start time; stable, so among rows of
        # one attempt the write order decides
        perm = pc.sort_indices(t, [("attempt", "ascending", "at_start"), ("attempt_ns", "ascending", "at_start")])
        k = t.select(list(keys)).take(perm).append_column("_pos", pa.array(np.arange(n, dtype=np.int64)))
        g = k.group_by(list(keys), use_threads=False).aggregate([("_pos", "max")])
        g = g.sort_by([(c, "ascending") for c in keys])
        return t.take(perm.take(g["_pos_max"]))

    @staticmethod
    def _supersede(t: pa.Table, attempts: pa.Table, unknown_is_zero: bool) -> pa.Table:
        """Drop rows whose step is above the resumed_from_step of a later attempt of the same trial. Attempts seen
        in `t` but absent from `attempts` count as resumed_from_step=0 when `unknown_is_zero`, else are ignored."""
        if t.num_rows == 0:
            return t
        seen = t.select(["sweep", "trial_id", "attempt_ns"]).group_by(
            ["sweep", "trial_id", "attempt_ns"], use_threads=False).aggregate([])
        att = attempts.select(["sweep", "trial_id", "attempt_ns", "attempt", "rfs"])
        if unknown_is_zero:
            extra = seen.join(att, ["sweep", "trial_id", "attempt_ns"], join_type="left anti")
            extra = extra.append_column("attempt", pa.nulls(extra.num_rows, pa.int64())).append_column(
                "rfs", pa.array(np.zeros(extra.num_rows, np.int64)))
            all_att = pa.concat_tables([att, extra])
            all_att = all_att.set_column(4, "rfs", pc.fill_null(all_att["rfs"], 0))
        else:
            all_att = att.filter(pc.is_valid(att["rfs"]))
        # Only trials that appear in t matter.
        all_att = all_att.join(seen.select(["sweep", "trial_id"]).group_by(["sweep", "trial_id"]).aggregate([]),
                               ["sweep", "trial_id"], join_type="inner")
        cut = _cutoffs(all_att)
        if cut.num_rows == 0:
            return t
        idx = t.select(["sweep", "trial_id", "attempt_ns", "step"]).append_column(
            "_i", pa.array(np.arange(t.num_rows, dtype=np.int64)))
        j = idx.join(cut, ["sweep", "trial_id", "attempt_ns"], join_type="inner")
        drop = j.filter(pc.field("step") > pc.field("cutoff"))["_i"]
        if len(drop) == 0:
            return t
        mask = np.ones(t.num_rows, dtype=bool)
        mask[drop.to_numpy()] = False
        return t.filter(pa.array(mask))

    # ---------------------------------------------------------------- public reading
    def read(self, table: str, sweep: str | None = None, trials: Sequence[str] | None = None,
             filter: pc.Expression | None = None, columns: Sequence[str] | None = None) -> pa.Table:
        """Deduplicated rows of `table`: one per key (`analysis.schema.KEYS`), sorted by sweep and key.

        Retry rule: a row of an attempt is dropped when a later attempt of the same trial resumed from a step
        below the row's step (an attempt with rows but no trials row counts as resumed_from_step=0); of the rest,
        per key, the latest attempt wins (same attempt: the last written). `trials` table: the latest row of the
        latest attempt, plus `attempts` (number of attempts seen). `sweep` and `trials` prune fragments and rows
        at the source. `filter` is a pyarrow expression on the table's columns, or, for data tables, on the trials
        table's columns (config values: `pc.field("P") > 32`, `pc.field("cfg.model.width") == 64`); it is
        applied to deduplicated rows (pushed to the files when it only touches keys, or selects trials).
        """
        schema = table_schema(table)
        keys = ("sweep",) + KEYS[table]
        if table == "trials":
            raw, _ = self._raw(table, sweep, trials, None, None)
            counts = raw.select(["sweep", "trial_id", "attempt_ns"]).group_by(
                ["sweep", "trial_id", "attempt_ns"]).aggregate([]).group_by(["sweep", "trial_id"]).aggregate(
                [("attempt_ns", "count")]).rename_columns(["sweep", "trial_id", "attempts"])
            out = self._latest(raw, keys)
            att = out.select(["sweep", "trial_id"]).join(counts, ["sweep", "trial_id"], join_type="left outer")
            att = att.sort_by([("sweep", "ascending"), ("trial_id", "ascending")])
            out = out.append_column("attempts", att["attempts"].cast(pa.int64()))
            if filter is not None:
                _referenced(filter, out.schema)
                out = out.filter(filter)
            return out.select(list(columns)) if columns is not None else out

        push: pc.Expression | None = None
        post: pc.Expression | None = None
        join_cols: list[str] = []
        if filter is not None:
            tr_schema = None
            try:
                refs = _referenced(filter, schema)
            except ValueError:
                tinfo = self.read("trials", sweep=sweep, trials=trials)
                tr_schema = tinfo.schema
                both = _unify([tr_schema], schema)
                refs = _referenced(filter, both)
            own = {r for r in refs if schema.get_field_index(r) >= 0}
            if refs <= set(keys):
                push = filter
            elif own:
                post = filter
                join_cols = sorted(refs - own)
            else:                                     # only trials columns: select trials, push their ids down
                sel = tinfo.filter(filter)["trial_id"].to_pylist()
                trials = sorted(set(sel) & set(map(str, trials))) if trials is not None else sel
        need = None
        if columns is not None:
            extra = [c for c in columns if schema.get_field_index(c) < 0]
            if extra:
                raise ValueError(f"unknown column(s) {extra} for table {table!r}; valid: {schema.names}")
            need = list(dict.fromkeys(list(keys) + list(ATTEMPT_COLUMNS) + (["step"] if "step" in schema.names else [])
                                      + list(columns)
                                      + ([r for r in refs if schema.get_field_index(r) >= 0] if post is not None
                                         else [])))
        raw, _ = self._raw(table, sweep, trials, need, push)
        if "step" in schema.names:
            raw = self._supersede(raw, self._attempts(sweep, trials, own=raw), unknown_is_zero=True)
        out = self._latest(raw, keys)
        if post is not None:
            if join_cols:
                tsel = tinfo.select(["sweep", "trial_id"] + join_cols)
                rows = pa.array(np.arange(out.num_rows, dtype=np.int64))
                j = out.select(["sweep", "trial_id"]).append_column("_i", rows).join(
                    tsel, ["sweep", "trial_id"], join_type="left outer").sort_by("_i")
                tmp = out.append_column("_r", rows)
                for c in join_cols:
                    tmp = tmp.append_column(c, j[c])
                out = out.take(tmp.filter(filter)["_r"])
            else:
                out = out.filter(post)
        return out.select(list(columns)) if columns is not None else out

    def sql(self, query: str, sweep: str | None = None) -> pa.Table:
        """duckdb SQL over views of every table that follow this store's rules (`analysis.query`); several stores
        at once: `analysis.query.sql(query, [store_a, store_b])`."""
        from analysis.query import sql

        return sql(query, [self], sweep)

    def read_pandas(self, table: str, **kwargs: Any):
        """`read(...)` as a pandas DataFrame."""
        return self.read(table, **kwargs).to_pandas()

    def last_step(self, sweep: str, trial_id: str) -> int | None:
        """The largest step in `curves` for a trial (after the retry rule), or None if it has none."""
        t = self.read("curves", sweep=sweep, trials=[trial_id], columns=["step"])
        return None if t.num_rows == 0 else int(pc.max(t["step"]).as_py())

    # ---------------------------------------------------------------- compaction
    def compact(self, sweep: str | None = None, tables: Iterable[str] = TABLES) -> dict:
        """Merge each (table, sweep)'s fragments into one, without changing what `read` returns.

        The merged file holds every row a reader could still return: trials keep their latest row per attempt;
        data tables drop only rows that can never win (same key in a later attempt or later in the same attempt,
        or above the resumed_from_step of a later attempt that has a trials row). It is written atomically, then
        the originals (exactly those merged) are deleted. A reader racing this sees the originals, both (which
        dedupe to the same rows: merged rows keep their attempt_ns and sort before later writes of their attempt),
        or only the merged file; a reader that loses a file mid-read re-lists. Corrupt fragments are left alone.
        """
        report: dict[str, dict[str, dict[str, int]]] = {}
        tables = list(tables)
        for table in sorted(tables, key=lambda t: t != "trials"):
            by_sweep: dict[str, list[_Frag]] = {}
            for f in self._list(table, sweep):
                by_sweep.setdefault(f.sweep, []).append(f)
            for sw, frags in sorted(by_sweep.items()):
                legacy = {f.path.rsplit("/", 1)[0] for f in frags if "/sweep=" in f.path}   # version-1 folders
                if len(frags) < 2 and not legacy:
                    continue
                try:
                    tables_, kept = self._read_frags(frags, None, None)
                except FileNotFoundError as e:      # another process compacted or deleted them: nothing to merge
                    report.setdefault(table, {})[sw] = {"skipped": f"fragments changed while compacting ({e})"}
                    continue
                if not kept:
                    continue
                base = table_schema(table)
                schema = _unify([t.schema for t in tables_], base) if table == "trials" else base
                raw = pa.concat_tables([_conform(t, schema) for t in tables_])
                keys = ("sweep",) + KEYS[table]
                if table == "trials":
                    merged = self._latest(raw, keys + ("attempt_ns",))
                else:
                    if "step" in base.names:
                        trial_ids = pc.unique(raw["trial_id"]).to_pylist()
                        raw = self._supersede(raw, self._attempts(sw, trial_ids, own=raw), unknown_is_zero=False)
                    merged = self._latest(raw, keys)
                name = f"{min(f.order for f in kept):020d}_compact_{secrets.token_hex(6)}.parquet"
                self._write_fragment(table, sw, name, merged)
                for f in kept:
                    try:
                        self.fs.delete_file(f.path)
                    except FileNotFoundError:
                        pass
                    self._cache.pop(f.path, None)
                for d in legacy:                    # migrated: drop the emptied version-1 folder
                    with contextlib.suppress(OSError):
                        if not self.fs.get_file_info(pafs.FileSelector(d)):
                            self.fs.delete_dir(d)
                report.setdefault(table, {})[sw] = {"fragments_in": len(kept), "rows_in": raw.num_rows,
                                                    "rows_out": merged.num_rows}
        return report

    # ---------------------------------------------------------------- summary
    def summary(self) -> dict[str, dict[str, Any]]:
        """Per sweep: trials by status, stored rows and fragments per table, bytes, last write time (UTC ISO)."""
        out: dict[str, dict[str, Any]] = {}
        for table in TABLES:
            frags = self._list(table)

            def nrows(f: _Frag) -> int:
                """Rows from the footer; a fragment readers would skip (unreadable, no keys, wrong types) is a
                problem listed with the summary, and counts 0."""
                try:
                    with self.fs.open_input_file(f.path) as fh:
                        pf = pq.ParquetFile(fh)
                        check_version(pf.schema_arrow.metadata, f.path)
                        _check_keys(f.table, pf.schema_arrow)
                        _check_types(f.table, pf.schema_arrow)
                        return pf.metadata.num_rows
                except FileNotFoundError:
                    return 0
                except (OSError, pa.ArrowException, ValueError) as e:
                    self._problem(f"{f.path}: {type(e).__name__}: {e}")
                    return 0
            with ThreadPoolExecutor(min(8, max(1, len(frags)))) as ex:
                counts = list(ex.map(nrows, frags))
            for f, n in zip(frags, counts):
                s = out.setdefault(f.sweep, {"trials": {}, "rows": {}, "fragments": {}, "bytes": 0,
                                             "last_write": None})
                s["rows"][table] = s["rows"].get(table, 0) + n
                s["fragments"][table] = s["fragments"].get(table, 0) + 1
                s["bytes"] += f.size
                if f.mtime is not None and (s["last_write"] is None or f.mtime > s["last_write"]):
                    s["last_write"] = f.mtime
        if out:
            tr = self.read("trials", columns=["sweep", "status"])
            if tr.num_rows:
                g = tr.group_by(["sweep", "status"]).aggregate([("status", "count")])
                for sw, st, n in zip(g["sweep"].to_pylist(), g["status"].to_pylist(), g["status_count"].to_pylist()):
                    out[sw]["trials"][st if st is not None else "unknown"] = n
        for s in out.values():
            if s["last_write"] is not None:
                s["last_write"] = datetime.fromtimestamp(s["last_write"], timezone.utc).isoformat(timespec="seconds")
        return dict(sorted(out.items()))


def print_summary(store: Store, console: Any = None) -> None:
    """Print `store.summary()` as rich tables, one row per sweep (what `memsweep status STORE` shows)."""
    from rich.console import Console
    from rich.table import Table

    console = console or Console()
    summ = store.summary()
    t = Table(title=f"store {store.uri}")
    for col, just in (("sweep", "left"), ("trials by status", "left"), ("rows (fragments) per table", "left"),
                      ("MiB", "right"), ("last write (UTC)", "left")):
        t.add_column(col, justify=just)
    for sw, s in summ.items():
        t.add_row(sw, "\n".join(f"{k}: {v}" for k, v in sorted(s["trials"].items())) or "-",
                  "\n".join(f"{n}: {s['rows'][n]:,} ({s['fragments'][n]})" for n in TABLES if n in s["rows"]),
                  f"{s['bytes'] / 2**20:.1f}", s["last_write"] or "-")
    if not summ:
        console.print(f"store {store.uri}: empty")
    else:
        console.print(t)
    if store.problems:
        console.print(f"[red]{len(store.problems)} fragment(s) skipped[/red] (damaged, or not of this store's "
                      "schema; readers leave their rows out):")
        for p in store.problems:
            console.print(f"  {p}", highlight=False, soft_wrap=True)
