"""String arrays: validation and hashable row keys for set operations (dedup, membership, copy counting)."""
from __future__ import annotations

import numpy as np


def as_strings(x: object, v: int, d: int, name: str = "x") -> np.ndarray:
    """Return `x` as a C-contiguous int64 array (n, d) with values in [0, v), or raise ValueError saying what is off.

    Accepts numpy arrays, nested sequences and torch tensors (moved to CPU); a single string (d,) becomes (1, d).
    """
    if hasattr(x, "detach") and hasattr(x, "cpu"):  # torch tensor, without importing torch
        x = x.detach().cpu().numpy()
    arr = np.asarray(x)
    if arr.ndim == 1 and arr.shape[0] == d:
        arr = arr[None, :]
    if arr.ndim != 2 or arr.shape[1] != d:
        raise ValueError(f"{name} must have shape (n, d) with d = {d}, got shape {arr.shape}")
    if arr.size == 0:
        return np.zeros((arr.shape[0], d), dtype=np.int64)
    if arr.dtype.kind not in "iu":
        raise ValueError(f"{name} must hold integer symbols in [0, {v}), got dtype {arr.dtype}")
    lo, hi = arr.min(), arr.max()
    if lo < 0 or hi >= v:
        bad = lo if lo < 0 else hi
        row = int(np.argwhere((arr < 0) | (arr >= v))[0, 0])
        raise ValueError(f"{name} has symbol {int(bad)} (row {row}) outside the alphabet [0, {v})")
    return np.ascontiguousarray(arr, dtype=np.int64)


def bits_per_symbol(v: int) -> int:
    """Bits needed to store one symbol in [0, v) (at least 1)."""
    return max(1, int(v - 1).bit_length())


def encode_strings(x: np.ndarray, v: int) -> np.ndarray:
    """One hashable key per row of `x` (n, d): equal rows <-> equal keys (for a fixed v and d).

    When d*bits(v) <= 64 the keys are uint64 (the rows bit-packed, first symbol most significant), else fixed-width
    byte strings (dtype 'S', symbols big-endian). Either way sorting keys sorts rows lexicographically, and the keys
    work with np.unique, np.isin, np.searchsorted and Python sets/dicts.
    """
    x = np.asarray(x)
    if x.ndim != 2:
        raise ValueError(f"x must have shape (n, d), got shape {x.shape}")
    n, d = x.shape
    b = bits_per_symbol(v)
    if d * b <= 64:
        keys = np.zeros(n, dtype=np.uint64)
        xi = x.astype(np.uint64)
        shift = np.uint64(b)
        for j in range(d):  # loop over positions: d <= 64 columns, each a vectorized pass over all rows
            keys <<= shift
            keys |= xi[:, j]
        return keys
    dtype = np.dtype(">u1") if v <= 2**8 else np.dtype(">u2") if v <= 2**16 else np.dtype(">u4")
    rows = np.ascontiguousarray(x, dtype=dtype)
    return rows.view(f"S{d * dtype.itemsize}").reshape(n)
