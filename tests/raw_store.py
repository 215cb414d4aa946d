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
