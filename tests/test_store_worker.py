"""Worker for the store's multi-process test, kept apart so spawned children import only the store (no tests)."""
from __future__ import annotations

import numpy as np

from analysis.store import Store


def write_trial(root: str, k: int, n_flush: int) -> None:
    """Append `n_flush` evaluations of trial `k`, one flush (one curves and one copies fragment) each."""
    store = Store(root)
    with store.writer("conc", f"trial{k}", attempt_ns=k + 1) as w:
        w.append("trials", {"status": "running", "P": k})
        for s in range(n_flush):
            w.append("curves", {"step": s, "copy_frac": k + s / 1000})
            w.append("copies", {"step": s, "train_index": np.arange(10), "count": np.full(10, k + 1)})
            w.flush()
