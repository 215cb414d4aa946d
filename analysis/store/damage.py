"""Damaged and foreign fragments: checked before their rows are used, skipped and reported, never fatal."""
from __future__ import annotations

import os
import warnings
from concurrent.futures import ThreadPoolExecutor
from typing import Sequence

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from analysis.schema import KEYS, SchemaVersionError, check_version, table_schema
from analysis.store.layout import FORMAT, Frag
from analysis.store.supersession import with_write_order


def check_keys(table: str, phys: pa.Schema) -> None:
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


def check_types(table: str, phys: pa.Schema) -> None:
    """ValueError naming the first schema column a fragment stores with another kind of type (say `step` as
    text): such a fragment was not written by this store's writer, and is skipped and reported."""
    base = table_schema(table)
    for f in phys:
        i = base.get_field_index(f.name)
        if i >= 0 and not _same_kind(f.type, base.field(i).type):
            raise ValueError(f"column {f.name!r} is {f.type}, expected {base.field(i).type}")


def typed(table: str, t: pa.Table) -> pa.Table:
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


class Fragments:
    """Reading fragment files, leaving damaged ones out (listed in `problems`)."""

    def _problem(self, msg: str) -> None:
        with self._lock:
            if msg not in self.problems:
                self.problems.append(msg)
        warnings.warn(f"memsweep store: skipped {msg}", RuntimeWarning, stacklevel=4)

    def _read_frags(self, frags: Sequence[Frag], columns: Sequence[str] | None, filt: pc.Expression | None) -> tuple[list[pa.Table], list[Frag]]:
        """Read fragments in parallel (threads); corrupt ones are reported and skipped; a fragment deleted under
        us (by compaction) raises FileNotFoundError so the caller re-lists. Returns tables in `frags` order."""
        want_order = columns is None or "write_order" in columns

        def one(f: Frag) -> pa.Table | Exception:
            try:
                with self.fs.open_input_file(f.path) as fh:
                    pf = pq.ParquetFile(fh, page_checksum_verification=True)
                    phys = pf.schema_arrow
                    check_version(phys.metadata, f.path)
                    check_keys(f.table, phys)
                    check_types(f.table, phys)
                    cols = None if columns is None else [c for c in columns if phys.get_field_index(c) >= 0]
                    if filt is not None and pf.metadata.num_row_groups > 1:
                        # big (merged) file: let the dataset scanner skip row groups by their statistics
                        frag = FORMAT.make_fragment(f.path, filesystem=self.fs, file_size=f.size or None)
                        t = frag.to_table(columns=cols, filter=filt, use_threads=False)
                        return with_write_order(typed(f.table, t), f.order) if want_order else typed(f.table, t)
                    t = typed(f.table, pf.read(columns=cols, use_threads=False))
                    t = t if filt is None else t.filter(filt)
                    return with_write_order(t, f.order) if want_order else t
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

