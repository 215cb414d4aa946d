"""Token arrays as the metrics take them: numpy arrays or torch tensors on any device, checked into int64 numpy."""
from __future__ import annotations

import numpy as np
import torch

from rhm import as_strings


def is_tensor(x: object) -> bool:
    return isinstance(x, torch.Tensor)


def to_numpy(x: object) -> np.ndarray:
    """A 2-D int64 numpy array from a numpy array / torch tensor (any device)."""
    if is_tensor(x):
        x = x.detach().cpu().numpy()
    arr = np.asarray(x)
    if arr.ndim != 2:
        raise ValueError(f"token arrays must have shape (n, d), got shape {arr.shape}")
    return np.ascontiguousarray(arr, dtype=np.int64)


def infer_v(*arrays: np.ndarray) -> int:
    """Alphabet size covering every array (max symbol + 1, at least 2)."""
    hi = max((int(a.max()) for a in arrays if a.size), default=0)
    return max(2, hi + 1)


def check_pair(g: np.ndarray, t: np.ndarray, v: int | None) -> tuple[np.ndarray, np.ndarray, int]:
    if g.shape[1] != t.shape[1]:
        raise ValueError(f"generated strings have length {g.shape[1]} but training strings {t.shape[1]}")
    v = infer_v(g, t) if v is None else int(v)
    d = g.shape[1]
    return as_strings(g, v, d, "generated"), as_strings(t, v, d, "train"), v
