"""Compaction: each (table, sweep)'s fragments merged into one file without changing what readers return."""
from __future__ import annotations

import contextlib
import secrets
from typing import Iterable

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs

from analysis.schema import KEYS, TABLES, table_schema
from analysis.store.layout import Frag, OutsideStoreError
from analysis.store.reader import conform, unify
from analysis.store.supersession import latest, latest_trials, supersede


class Compactor:
    """`Store.compact`."""

    def compact(self, sweep: str | None = None, tables: Iterable[str] = TABLES) -> dict:
        """Merge each (table, sweep)'s fragments into one, without changing what `read` returns.

        The merged file holds exactly the rows `read` returns (trials: one row per trial, its `attempts` counted;
        data tables: one row per key, superseded rows of retried attempts removed), so after the last compaction
        any Parquet reader sees the clean view. It is written atomically, then the originals (exactly those read)
        are deleted. Every row keeps its attempt and `write_order`, so readers and other compactions racing this
        one resolve the same rows whichever files they see (`supersession`). Data tables go first, with every
        attempt's trials row still at hand; a sweep's trials wait for the next compaction if one of its data
        tables could not be merged. Damaged fragments are left alone.
        """
        report: dict[str, dict[str, dict]] = {}
        unmerged: set[str] = set()               # sweeps with a data table that could not be compacted
        for table in sorted(tables, key=lambda t: t == "trials"):
            by_sweep: dict[str, list[Frag]] = {}
            for f in self._list(table, sweep):
                by_sweep.setdefault(f.sweep, []).append(f)
            for sw, frags in sorted(by_sweep.items()):
                if table == "trials" and sw in unmerged:
                    report.setdefault(table, {})[sw] = {"skipped": "a data table of this sweep was not merged"}
                    continue
                done = self._compact_one(table, sw, frags)
                if done is not None:
                    report.setdefault(table, {})[sw] = done
                    if "skipped" in done:
                        unmerged.add(sw)
        return report

    def _compact_one(self, table: str, sw: str, frags: list[Frag]) -> dict | None:
        """Merge one (table, sweep); None when there is nothing to do (a lone merged file)."""
        legacy = {f.path.rsplit("/", 1)[0] for f in frags if "/sweep=" in f.path}   # version-1 folders
        if len(frags) < 2 and not legacy and all(f.trial_id is None for f in frags):
            return None
        try:
            for d in {f.path.rsplit("/", 1)[0] for f in frags}:
                self._check_inside(d)
        except OutsideStoreError as e:      # a planted symlink: merge nothing, delete nothing
            return {"skipped": str(e)}
        try:
            tables_, kept = self._read_frags(frags, None, None)
        except FileNotFoundError as e:      # another process compacted or deleted them: nothing to merge
            return {"skipped": f"fragments changed while compacting ({e})"}
        if not kept:
            return None
        base = table_schema(table)
        schema = unify([t.schema for t in tables_], base) if table == "trials" else base
        raw = pa.concat_tables([conform(t, schema) for t in tables_])
        if table == "trials":
            merged = latest_trials(raw)
        else:
            if "step" in base.names:
                trial_ids = pc.unique(raw["trial_id"]).to_pylist()
                raw = supersede(raw, self._attempts(sw, trial_ids, own=raw), unknown_is_zero=False)
            merged = latest(raw, ("sweep",) + KEYS[table])
        name = f"{min(f.order for f in kept):020d}_compact_{secrets.token_hex(6)}.parquet"
        self._write_fragment(table, sw, name, merged)
        for f in kept:
            self._delete_fragment(f.path)
            self._cache.pop(f.path, None)
        for d in legacy:                    # migrated: drop the emptied version-1 folder
            with contextlib.suppress(OSError):
                if not self.fs.get_file_info(pafs.FileSelector(d)):
                    self.fs.delete_dir(d)
        return {"fragments_in": len(kept), "rows_in": raw.num_rows, "rows_out": merged.num_rows}
