"""Writing one attempt of one trial: user values validated and typed by the schema, buffered, flushed as fragments."""
from __future__ import annotations

import json
import secrets
import time
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, Mapping
from urllib.parse import quote

import numpy as np
import pyarrow as pa

from analysis.schema import ATTEMPT_COLUMNS, CFG_PREFIX, KEYS, table_schema
from analysis.store.layout import check_name

if TYPE_CHECKING:
    from analysis.store import Store

_AUTO = ATTEMPT_COLUMNS                              # filled by the writer


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
    if "attempts" in cols:
        raise ValueError("column 'attempts' is the store's own: readers and compaction count a trial's attempts")
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


class Writer:
    """Buffers rows of one trial attempt and flushes them as one new fragment per table (see `Store.writer`)."""

    def __init__(self, store: "Store", sweep: str, trial_id: str, attempt_ns: int | None = None,
                 resumed_from_step: int = 0, max_rows: int = 200_000, attempt: int | None = None) -> None:
        check_name("sweep", sweep)
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
                                "attempt": self.attempt, "resumed_from_step": self.resumed_from_step,
                                "write_order": None}            # set at flush
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
            t = t.set_column(t.schema.get_field_index("write_order"), "write_order",
                             pa.array(np.full(t.num_rows, self._order, np.int64)))
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

