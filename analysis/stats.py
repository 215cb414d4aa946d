"""Small statistics shared by the pooled summaries: a mean over independent units with a bootstrap interval."""
from __future__ import annotations

import numpy as np


def bootstrap_mean(x: np.ndarray, n_boot: int, rng: np.random.Generator) -> tuple[float, float, float]:
    """(mean, 2.5%, 97.5%) of the finite values of x; the interval is a percentile bootstrap over those values
    (NaN with fewer than 3 of them, where a percentile interval means nothing)."""
    x = np.asarray(x, float)
    x = x[np.isfinite(x)]
    if x.size == 0:
        return float("nan"), float("nan"), float("nan")
    if x.size < 3 or n_boot <= 0:
        return float(x.mean()), float("nan"), float("nan")
    boot = x[rng.integers(0, x.size, size=(n_boot, x.size))].mean(1)
    lo, hi = np.quantile(boot, [0.025, 0.975])
    return float(x.mean()), float(lo), float(hi)
