"""SQL over one or several stores (duckdb): every table a view that follows the store's own rules.

A view holds exactly what `Store.read` returns (one row per key, latest attempt, superseded retried rows removed),
so a query never sees a row twice. Only the tables a query names are read. With several stores, each view gains a
`store` column (the store's URI) so rows can be told apart and joined. duckdb is the `query` extra:
`pip install -e '.[query]'`.
"""
from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import pyarrow as pa

from analysis.schema import TABLES


def _stores(stores: Sequence[Any]) -> list[Any]:
    from analysis.store import Store

    if not stores:
        raise ValueError("sql needs at least one store")
    return [s if hasattr(s, "read") else Store(str(s)) for s in stores]


def views(query: str, stores: Sequence[Any], sweep: str | None = None) -> dict[str, pa.Table]:
    """The deduplicated tables `query` names, over every store (with a `store` column when there are several)."""
    out = {}
    for table in TABLES:
        if not re.search(rf"\b{table}\b", query):
            continue
        parts = []
        for st in stores:
            t = st.read(table, sweep=sweep)
            if len(stores) > 1:
                t = t.append_column("store", pa.array([str(st.uri)] * t.num_rows, pa.string()))
            parts.append(t)
        out[table] = pa.concat_tables(parts, promote_options="permissive") if len(parts) > 1 else parts[0]
    return out


def sql(query: str, stores: Sequence[Any], sweep: str | None = None) -> pa.Table:
    """Run `query` (duckdb SQL over the views `trials`, `curves`, `level_curves`, `copies`, `samples`, `parts`)
    on one or several stores (Store objects or URIs); returns a pyarrow Table."""
    try:
        import duckdb
    except ModuleNotFoundError:
        raise ModuleNotFoundError("SQL needs duckdb: pip install -e '.[query]'") from None
    con = duckdb.connect()
    try:
        for name, table in views(query, _stores(stores), sweep).items():
            con.register(name, table)
        rel = con.sql(query)
        if rel is None:                         # a statement that returns nothing (e.g. SET)
            return pa.table({})
        return rel.to_arrow_table() if hasattr(rel, "to_arrow_table") else rel.arrow()
    finally:
        con.close()
