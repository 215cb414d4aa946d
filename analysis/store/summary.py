"""What a store holds, per sweep: trials by status, rows and fragments per table, bytes, last write."""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.parquet as pq

from analysis.schema import TABLES, check_version
from analysis.store.damage import check_keys, check_types
from analysis.store.layout import Frag

if TYPE_CHECKING:
    from analysis.store import Store


class Summary:
    """`Store.summary`."""

    # ---------------------------------------------------------------- summary
    def summary(self) -> dict[str, dict[str, Any]]:
        """Per sweep: trials by status, stored rows and fragments per table, bytes, last write time (UTC ISO)."""
        out: dict[str, dict[str, Any]] = {}
        for table in TABLES:
            frags = self._list(table)

            def nrows(f: Frag) -> int:
                """Rows from the footer; a fragment readers would skip (unreadable, no keys, wrong types) is a
                problem listed with the summary, and counts 0."""
                try:
                    with self.fs.open_input_file(f.path) as fh:
                        pf = pq.ParquetFile(fh)
                        check_version(pf.schema_arrow.metadata, f.path)
                        check_keys(f.table, pf.schema_arrow)
                        check_types(f.table, pf.schema_arrow)
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
