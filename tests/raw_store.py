"""Test helper: a store's rows as its fragment files hold them, bypassing `Store.read` (which deduplicates by
construction, so it cannot show that a trial was trained twice)."""
from __future__ import annotations

from collections import Counter
from pathlib import Path

import pyarrow.parquet as pq


def raw_rows(store_root: str | Path, table: str, columns: list[str]) -> list[tuple]:
    """Every row of every visible fragment of `table` (hidden and temporary files skipped), as tuples."""
    out: list[tuple] = []
    for f in sorted(Path(store_root, table).rglob("*.parquet")):
        if f.name.startswith((".", "_")):
            continue
        t = pq.read_table(f, columns=columns)
        out.extend(zip(*(t.column(c).to_pylist() for c in columns)))
    return out


def raw_step_counts(store_root: str | Path, trial_id: str, table: str = "curves") -> Counter:
    """{step: number of stored rows} of one trial in `table`, over the raw fragment files."""
    return Counter(step for tid, step in raw_rows(store_root, table, ["trial_id", "step"]) if tid == trial_id)


def raw_reads(store_root: str | Path, table: str) -> dict[str, list[tuple]]:
    """The rows of `table` as pandas, pyarrow, polars and duckdb read its raw files (the folder, no memsweep code),
    each row as its identity: sweep, key, attempt, attempt_ns, write_order (and status for trials), sorted."""
    import duckdb
    import pandas as pd
    import polars as pl

    from analysis.schema import KEYS

    cols = ["sweep", *KEYS[table], "attempt", "attempt_ns", "write_order"] + (["status"] if table == "trials" else [])
    folder = Path(store_root, table)
    files = f"{folder}/*/*.parquet"
    df = pd.read_parquet(folder, columns=cols)
    return {
        "pandas": sorted(map(tuple, df.astype(object).itertuples(index=False))),
        "pyarrow": sorted(zip(*(c.to_pylist() for c in pq.read_table(folder, columns=cols).columns))),
        "polars": sorted(pl.read_parquet(files, columns=cols).rows()),
        "duckdb": sorted(duckdb.sql(f"select {', '.join(map(repr, cols)).replace(chr(39), chr(34))} "
                                    f"from read_parquet('{files}')").fetchall()),
    }


def assert_raw_reads_are_the_store_reads(store_root: str | Path, tables: tuple[str, ...]) -> None:
    """After compaction every Arrow reader sees exactly the rows `Store.read` returns (no superseded attempt)."""
    from analysis.schema import KEYS
    from analysis.store import Store

    store = Store(store_root)
    for table in tables:
        got = raw_reads(store_root, table)
        want_t = store.read(table)
        cols = ["sweep", *KEYS[table], "attempt", "attempt_ns", "write_order"] + (["status"] if table == "trials"
                                                                                 else [])
        want = sorted(zip(*(want_t[c].to_pylist() for c in cols)))
        assert want, table
        for reader, rows in got.items():
            assert rows == want, (table, reader, len(rows), len(want))
