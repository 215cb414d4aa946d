"""Nearest and second-nearest Hamming distances from generated to training strings, in bounded memory.

CPU: a gather-add over a one-hot table of a block of training strings (no multiplications, uint8 accumulators).
GPU: one-hot matrix products in blocks with a running top-2. Neither ever builds an N x P matrix.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import torch

from analysis.tokens import check_pair, is_tensor, to_numpy

#: Near-copy threshold on d1/d2 (the criterion used for images).
NEAR_COPY_RATIO = 1.0 / 3.0
#: Elements of one (generated x training) block of match counts on CPU: small enough to stay in cache.
CPU_BLOCK = 2**18
#: Bytes of one (generated x training) block of match counts on a GPU.
GPU_BLOCK_BYTES = 2**28

def _top2_merge(best: np.ndarray, m1: np.ndarray, m2: np.ndarray) -> None:
    """best (n, 2) descending <- top two of {best[:, 0], best[:, 1], m1, m2} (m1 >= m2), in place."""
    b0, b1 = best[:, 0].copy(), best[:, 1]
    new0 = np.maximum(b0, m1)
    # second = max(min(b0, m1), b1 if b0 wins else m2 ... ): the two runner-up candidates of a merge of two
    # sorted pairs are min(b0, m1) and the second of the winning pair.
    second = np.maximum(np.minimum(b0, m1), np.where(b0 >= m1, b1, m2))
    best[:, 0] = new0
    best[:, 1] = second


def _nn_matches_numpy(g: np.ndarray, t: np.ndarray, v: int, p_chunk: int, g_chunk: int) -> np.ndarray:
    """Top-2 match counts (N, 2) on CPU: for a block of training strings, a one-hot table (d*v, Pc) uint8;
    a generated string's matches with the block are the sum of its d rows (gather + add, no multiplications)."""
    n, d = g.shape
    acc_dtype = np.uint8 if d < 2**8 else np.uint16 if d < 2**16 else np.uint32
    off = np.arange(d, dtype=np.int64) * v
    gi = g + off  # (N, d): row of the one-hot table for each (string, position)
    best = np.zeros((n, 2), dtype=acc_dtype)  # 0 is a lower bound of any match count: safe initial value
    for p0 in range(0, t.shape[0], p_chunk):
        tc = t[p0 : p0 + p_chunk]
        pc = tc.shape[0]
        table = np.zeros((d * v, pc), dtype=acc_dtype)
        table[(tc + off).T, np.arange(pc)[None, :]] = 1
        rows = np.arange(min(g_chunk, n))
        for g0 in range(0, n, g_chunk):
            idx = gi[g0 : g0 + g_chunk]
            acc = table[idx[:, 0]]
            for j in range(1, d):  # loop over positions, each a vectorized pass over the block
                acc += table[idx[:, j]]
            r = rows[: idx.shape[0]]
            a1 = acc.argmax(1)
            m1 = acc[r, a1]
            if pc > 1:
                acc[r, a1] = 0  # remove one instance of the max: the next max is the second (ties give m2 == m1)
                m2 = acc.max(1)
            else:
                m2 = np.zeros_like(m1)  # lower bound, harmless once P >= 2 (checked by the caller)
            _top2_merge(best[g0 : g0 + g_chunk], m1, m2)
    return best


def _nn_matches_torch(g: torch.Tensor, t: torch.Tensor, v: int, p_chunk: int | None) -> torch.Tensor:
    """Top-2 match counts (N, 2) on g's device (a GPU): one-hot matrix products in blocks, running top-2."""
    n, d = g.shape
    dev = g.device
    dtype = torch.float16 if d <= 2048 else torch.float32  # fp16 holds integers <= 2048 exactly
    off = torch.arange(d, device=dev) * v

    def onehot(x: torch.Tensor) -> torch.Tensor:
        o = torch.zeros(x.shape[0], d * v, dtype=dtype, device=dev)
        o.scatter_(1, x + off, 1)
        return o

    itemsize = 2 if dtype == torch.float16 else 4
    if p_chunk is None:
        p_chunk = max(2, GPU_BLOCK_BYTES // (itemsize * max(n, d * v)))
    # (g_chunk, p_chunk) match block and (g_chunk | p_chunk, d*v) one-hot blocks each within GPU_BLOCK_BYTES
    g_chunk = max(1, min(n, GPU_BLOCK_BYTES // (itemsize * max(p_chunk, d * v))))
    p_chunk = max(1, min(p_chunk, GPU_BLOCK_BYTES // (itemsize * d * v)))
    best = torch.full((n, 2), -1.0, dtype=torch.float32, device=dev)
    for g0 in range(0, n, g_chunk):
        go = onehot(g[g0 : g0 + g_chunk])
        b = best[g0 : g0 + g_chunk]
        for p0 in range(0, t.shape[0], p_chunk):
            tc = t[p0 : p0 + p_chunk].to(dev, non_blocking=True)
            m = go @ onehot(tc).T
            k = min(2, m.shape[1])
            top = m.topk(k, dim=1).values.float()
            b = torch.cat([b, top], dim=1).topk(2, dim=1).values
        best[g0 : g0 + g_chunk] = b
    return best


def nn_hamming(generated: Any, train: Any, chunk: int = 4096, v: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Hamming distance of each generated string to its nearest and second-nearest training strings (d1 <= d2).

    Over the training multiset: a duplicated nearest string, or a tie, gives d2 == d1. Returns float64 arrays (N,);
    d2 is inf when P < 2 (and d1 too when P == 0). Memory is bounded by blocks of `chunk` training strings
    (times CPU_BLOCK // chunk generated strings on CPU; on a GPU, blocks of at most GPU_BLOCK_BYTES), never an
    N x P matrix. A CUDA tensor `generated` is compared on
    its device with one-hot matrix products; anything else on CPU with a gather-add over a one-hot table.
    """
    g_np, t_np = to_numpy(generated), to_numpy(train)
    g_np, t_np, v = check_pair(g_np, t_np, v)
    n, d = g_np.shape
    P = t_np.shape[0]
    if P == 0 or n == 0:
        inf = np.full(n, np.inf)
        return inf, inf.copy()
    if is_tensor(generated) and generated.device.type != "cpu":
        dev = generated.device
        t_dev = train.to(dev) if is_tensor(train) else torch.from_numpy(t_np).to(dev)
        best = _nn_matches_torch(torch.as_tensor(g_np, device=dev), t_dev.long(), v, chunk).cpu().numpy()
    else:
        p_chunk = max(1, int(chunk))
        g_chunk = max(1, CPU_BLOCK // p_chunk)
        best = _nn_matches_numpy(g_np, t_np, v, p_chunk, g_chunk)
    d1 = d - best[:, 0].astype(np.float64)
    d2 = d - best[:, 1].astype(np.float64)
    if P < 2:
        d2[:] = np.inf
    return d1, d2


def near_copy(d1: np.ndarray, d2: np.ndarray, ratio: float = NEAR_COPY_RATIO) -> np.ndarray:
    """Near copies (bool (N,)): d1/d2 < ratio, i.e. d1 < ratio*d2; d1 == d2 == 0 counts as a near copy (exact copy
    of a duplicated training string, where the ratio is undefined); d2 == inf (P == 1) gives ratio 0."""
    d1 = np.asarray(d1, dtype=np.float64)
    d2 = np.asarray(d2, dtype=np.float64)
    return (d1 < ratio * d2) | (d2 == 0)
