"""SQL over one or several stores: `analysis.store.sql` under its older name (the store does not import this)."""
from analysis.store.sql import sql, views

__all__ = ["sql", "views"]
