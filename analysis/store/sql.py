"""SQL over one or several stores (duckdb): every table a view that follows the store's own rules.

A view holds exactly what `Store.read` returns (one row per key, latest attempt, superseded retried rows removed),
so a query never sees a row twice. Only the tables a query names are read. With several stores, each view gains a
`store` column (the store's URI) so rows can be told apart and joined. duckdb is the `query` extra:
`pip install -e '.[query]'`. A query is one SELECT that reads these views and nothing else (no files, no network).
"""
from __future__ import annotations

import difflib
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


class QueryError(ValueError):
    """A query that cannot run over a store (several statements, not a SELECT, a table the store lacks, a file)."""


#: DuckDB settings applied once the views exist: no file, network or extension access, and no way to undo that.
LOCKDOWN = ("SET enable_external_access = false", "SET autoinstall_known_extensions = false",
            "SET autoload_known_extensions = false", "SET allow_community_extensions = false",
            "SET lock_configuration = true")


def _one_select(con: Any, query: str) -> None:
    """QueryError unless `query` is exactly one SELECT (a WITH ... SELECT included)."""
    import duckdb

    statements = con.extract_statements(query)
    if len(statements) != 1:
        raise QueryError(f"one statement per query, got {len(statements)}: {query!r}")
    kind = statements[0].type
    if kind != duckdb.StatementType.SELECT:
        raise QueryError(f"only a read-only SELECT runs over a store, got {kind.name}: {query!r}")


def _missing_table(e: Exception) -> QueryError | None:
    """A clearer error for a table the store lacks: the store's tables, the closest first (not duckdb's own)."""
    m = re.search(r"Table with name (\S+) does not exist", str(e))
    if not m:
        return None
    name = m.group(1).strip('"')
    close = difflib.get_close_matches(name, TABLES, n=1)
    hint = f"did you mean {close[0]!r}? " if close else ""
    return QueryError(f"no table {name!r} in the store; {hint}its tables are {', '.join(TABLES)}")


def sql(query: str, stores: Sequence[Any], sweep: str | None = None) -> pa.Table:
    """Run `query`, one SELECT, over the views `trials`, `curves`, `level_curves`, `copies`, `samples`, `parts` of
    one or several stores (Store objects or URIs); returns a pyarrow Table. The query sees those views and nothing
    else: once they exist, DuckDB's file, network and extension access is off and its configuration locked."""
    try:
        import duckdb
    except ModuleNotFoundError:
        raise ModuleNotFoundError("SQL needs duckdb: pip install -e '.[query]'") from None
    con = duckdb.connect()
    try:
        _one_select(con, query)
        for name, table in views(query, _stores(stores), sweep).items():
            con.register(name, table)
        for setting in LOCKDOWN:
            con.execute(setting)
        try:
            rel = con.sql(query)
        except duckdb.CatalogException as e:
            raise (_missing_table(e) or e) from None
        except duckdb.PermissionException as e:
            raise QueryError(f"a query sees the store's tables and nothing else: {e}") from None
        return rel.to_arrow_table() if hasattr(rel, "to_arrow_table") else rel.arrow()
    finally:
        con.close()
