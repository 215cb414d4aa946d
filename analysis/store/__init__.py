"""The shared results store: append-only Parquet fragments under any `pyarrow.fs` location, read back deduplicated.

One module per job: `layout` (where files live, naming, atomic writes), `writer` (one attempt of one trial),
`damage` (fragments checked, damaged ones skipped and reported), `supersession` (the retry rule, in one place),
`reader` (`Store.read`), `compaction` (`Store.compact`), `sql` (duckdb views), `summary` (`memsweep status`).
Writers never modify a file, so crashes lose nothing; readers apply the retry rule, so retries double nothing.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import pyarrow.compute as pc

from analysis.schema import SchemaVersionError
from analysis.store.compaction import Compactor
from analysis.store.damage import Fragments
from analysis.store.layout import Layout, OutsideStoreError, check_inside, put_whole
from analysis.store.reader import Reader
from analysis.store.summary import Summary, print_summary
from analysis.store.writer import Writer

if TYPE_CHECKING:
    import pyarrow as pa

__all__ = ["OutsideStoreError", "SchemaVersionError", "Store", "Writer", "check_inside", "print_summary", "put_whole"]


class Store(Layout, Fragments, Reader, Compactor, Summary):
    """A results store at `uri` (a path, file://, s3://, mock://, any `pyarrow.fs` URI) or on `filesystem`."""

    def __repr__(self) -> str:
        return f"Store({self.uri!r})"

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

    def sql(self, query: str, sweep: str | None = None) -> "pa.Table":
        """duckdb SQL over views of every table that follow this store's rules (`analysis.store.sql`); several
        stores at once: `analysis.store.sql.sql(query, [store_a, store_b])`."""
        from analysis.store.sql import sql

        return sql(query, [self], sweep)
