"""Reading: every fragment of a table merged to one schema, then deduplicated by the retry rule (`supersession`)."""
from __future__ import annotations

import time
from typing import Any, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from analysis.schema import ATTEMPT_COLUMNS, KEYS, table_schema
from analysis.store.layout import Frag, torn
from analysis.store.supersession import latest, latest_trials, supersede

MAX_RETRIES = 20      # reads retried while compactions change the files under them
ATTEMPT_SCHEMA = pa.schema([table_schema("curves").field(c) for c in ATTEMPT_COLUMNS])


def unify(schemas: Sequence[pa.Schema], base: pa.Schema) -> pa.Schema:
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


def conform(t: pa.Table, schema: pa.Schema) -> pa.Table:
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


class Reader:
    """`Store.read` and the raw reads under it."""

    def _stable(self, listing: Any, read: Any, what: str) -> tuple[list[Frag], Any]:
        """`read(fragments)` of a listing that no compaction changed meanwhile (listed again after the read: a
        listing taken during a compaction can miss both the merged file and an original); (fragments, result)."""
        frags = listing()
        for attempt in range(MAX_RETRIES):
            try:
                out = read(frags)
                now = listing()
                if not torn(frags, now):
                    return frags, out
            except FileNotFoundError:
                now = listing()
            frags = now
            time.sleep(0.01 * attempt)
        raise FileNotFoundError(f"{self.uri}: compactions kept changing {what} while reading it; read again")

    def _raw(self, table: str, sweep: str | None, trials: Sequence[str] | None, columns: Sequence[str] | None,
             filt: pc.Expression | None) -> tuple[pa.Table, list[Frag]]:
        """Every stored row (not deduplicated) in write order, conformed to one schema; re-lists if compaction
        deletes a fragment while we read."""
        base = table_schema(table)
        if trials is not None:
            ids = pa.array(sorted(set(map(str, trials))), pa.string())
            f_ids = pc.field("trial_id").isin(ids)
            filt = f_ids if filt is None else (filt & f_ids)
            want = set(ids.to_pylist())
        def listing() -> list[Frag]:
            frags = self._list(table, sweep)
            return frags if trials is None else [f for f in frags if f.trial_id is None or f.trial_id in want]

        _, (tables, kept) = self._stable(listing, lambda frags: self._read_frags(frags, columns, filt), repr(table))
        if columns is None:
            schema = unify([t.schema for t in tables], base) if table == "trials" else base
        else:
            schema = unify([t.schema for t in tables], pa.schema([base.field(c) for c in columns
                                                                  if base.get_field_index(c) >= 0]))
            schema = pa.schema([schema.field(c) for c in columns if schema.get_field_index(c) >= 0])
        if not tables:
            return schema.empty_table(), kept
        return pa.concat_tables([conform(t, schema) for t in tables]), kept

    def _attempts(self, sweep: str | None, trials: Sequence[str] | None, own: pa.Table | None = None) -> pa.Table:
        """(sweep, trial_id, attempt_ns, attempt, rfs) of every attempt the trials table knows, merged with the
        attempts of `own` (rows of a data table, which carry the same columns): so a damaged or missing trials
        fragment costs no data row. rfs stays null where neither says it."""
        cols = ["sweep", "trial_id", "attempt_ns", "attempt", "resumed_from_step"]
        want = None if trials is None else set(map(str, trials))

        def listing() -> list[Frag]:
            frags = self._list("trials", sweep)
            return frags if want is None else [f for f in frags if f.trial_id is None or f.trial_id in want]

        def cache(frags: list[Frag]) -> None:
            tables, kept = self._read_frags([f for f in frags if f.path not in self._cache], cols, None)
            for f, t in zip(kept, tables):
                self._cache[f.path] = conform(t, ATTEMPT_SCHEMA)

        frags, _ = self._stable(listing, cache, "the trials table")
        parts: list[pa.Table] = [self._cache[f.path] for f in frags if f.path in self._cache]
        if own is not None and own.num_rows:
            parts.append(conform(own.select([c for c in cols if c in own.column_names]), ATTEMPT_SCHEMA))
        t = pa.concat_tables(parts) if parts else ATTEMPT_SCHEMA.empty_table()
        if trials is not None:
            t = t.filter(pc.field("trial_id").isin(pa.array(sorted(set(map(str, trials))), pa.string())))
        # One attempt counter and rfs per attempt (its rows all carry the writer's values; max if they disagree).
        return t.group_by(["sweep", "trial_id", "attempt_ns"]).aggregate(
            [("attempt", "max"), ("resumed_from_step", "max")]).rename_columns(
            ["sweep", "trial_id", "attempt_ns", "attempt", "rfs"])

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
            out = latest_trials(raw)
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
                both = unify([tr_schema], schema)
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
            raw = supersede(raw, self._attempts(sweep, trials, own=raw), unknown_is_zero=True)
        out = latest(raw, keys)
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

    def read_pandas(self, table: str, **kwargs: Any):
        """`read(...)` as a pandas DataFrame."""
        return self.read(table, **kwargs).to_pandas()

    def last_step(self, sweep: str, trial_id: str) -> int | None:
        """The largest step in `curves` for a trial (after the retry rule), or None if it has none."""
        t = self.read("curves", sweep=sweep, trials=[trial_id], columns=["step"])
        return None if t.num_rows == 0 else int(pc.max(t["step"]).as_py())

