"""SQL over one or several stores: `analysis.store.sql` under its older name (the store does not import this)."""
from analysis.store.sql import QueryError, sql, views

__all__ = ["QueryError", "sql", "views"]
