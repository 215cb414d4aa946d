"""Compaction: each (table, sweep)'s fragments merged into one file without changing what readers return."""
from __future__ import annotations

import contextlib
import secrets
from typing import Iterable

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs

from analysis.schema import KEYS, TABLES, table_schema
from analysis.store.layout import Frag
from analysis.store.reader import conform, unify
from analysis.store.supersession import latest, supersede


class Compactor:
    """`Store.compact`."""

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
            by_sweep: dict[str, list[Frag]] = {}
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
                schema = unify([t.schema for t in tables_], base) if table == "trials" else base
                raw = pa.concat_tables([conform(t, schema) for t in tables_])
                keys = ("sweep",) + KEYS[table]
                if table == "trials":
                    merged = latest(raw, keys + ("attempt_ns",))
                else:
                    if "step" in base.names:
                        trial_ids = pc.unique(raw["trial_id"]).to_pylist()
                        raw = supersede(raw, self._attempts(sw, trial_ids, own=raw), unknown_is_zero=False)
                    merged = latest(raw, keys)
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

