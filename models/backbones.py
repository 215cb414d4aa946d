"""Denoiser backbones: token ids (B, d) long + time (B,) float -> logits (B, d, v).

Two networks: a small bidirectional transformer, and a tree-shaped convolutional U-Net whose filter size and
stride equal the grammar's branching factor `s`, so that its receptive fields follow the RHM tree.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class TimeEmbedding(nn.Module):
    """Sinusoidal features of t in [0, 1] followed by a small MLP (as in DiT / MDLM)."""

    def __init__(self, width: int, n_freq: int = 32) -> None:
        super().__init__()
        half = n_freq // 2
        freqs = torch.exp(-math.log(1000.0) * torch.arange(half, dtype=torch.float32) / half)
        self.register_buffer("freqs", freqs, persistent=False)
        self.mlp = nn.Sequential(nn.Linear(2 * half, width), nn.SiLU(), nn.Linear(width, width))

    def forward(self, t: Tensor) -> Tensor:
        args = 1000.0 * t.float()[:, None] * self.freqs[None, :]
        return self.mlp(torch.cat([torch.cos(args), torch.sin(args)], dim=-1))


class Block(nn.Module):
    """Pre-LayerNorm transformer block with fused QKV and `scaled_dot_product_attention` (no causal mask)."""

    def __init__(self, width: int, heads: int, dropout: float) -> None:
        super().__init__()
        self.heads = heads
        self.dropout = dropout
        self.ln1 = nn.LayerNorm(width)
        self.qkv = nn.Linear(width, 3 * width)
        self.proj = nn.Linear(width, width)
        self.ln2 = nn.LayerNorm(width)
        self.mlp = nn.Sequential(nn.Linear(width, 4 * width), nn.GELU(), nn.Linear(4 * width, width))
        self.drop = nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        B, d, C = x.shape
        q, k, v = self.qkv(self.ln1(x)).view(B, d, 3, self.heads, C // self.heads).permute(2, 0, 3, 1, 4)
        a = F.scaled_dot_product_attention(q, k, v, dropout_p=self.dropout if self.training else 0.0)
        x = x + self.drop(self.proj(a.transpose(1, 2).reshape(B, d, C)))
        return x + self.drop(self.mlp(self.ln2(x)))


class Transformer(nn.Module):
    """Bidirectional transformer over `d` positions with learned positional embeddings.

    `n_in` input ids (v, plus one for the mask token in the masked process), `v` output logits.
    With `time_cond` the time embedding is added to every position's input.
    """

    def __init__(self, n_in: int, v: int, d: int, width: int = 64, depth: int = 2, heads: int = 4,
                 time_cond: bool = True, dropout: float = 0.0) -> None:
        super().__init__()
        self.tok = nn.Embedding(n_in, width)
        self.pos = nn.Parameter(torch.randn(d, width) * 0.02)
        self.time = TimeEmbedding(width) if time_cond else None
        self.drop = nn.Dropout(dropout)
        self.blocks = nn.ModuleList(Block(width, heads, dropout) for _ in range(depth))
        self.ln = nn.LayerNorm(width)
        self.head = nn.Linear(width, v)

    def forward(self, x: Tensor, t: Tensor) -> Tensor:
        h = self.tok(x) + self.pos
        if self.time is not None:
            h = h + self.time(t)[:, None, :]
        h = self.drop(h)
        for block in self.blocks:
            h = block(h)
        return self.head(self.ln(h))


class PointwiseBlock(nn.Module):
    """Residual kernel-1 convolution (a per-position MLP): adds capacity without widening receptive fields."""

    def __init__(self, width: int, dropout: float) -> None:
        super().__init__()
        self.ln = nn.LayerNorm(width)
        self.mlp = nn.Sequential(nn.Linear(width, 2 * width), nn.GELU(), nn.Linear(2 * width, width))
        self.drop = nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.drop(self.mlp(self.ln(x)))


class TreeConv(nn.Module):
    """U-Net over the RHM tree: L stride-s down-convolutions from the d = s**L leaves to the root, then L
    transposed convolutions back up, with a skip connection from the down path at every level.

    A convolution with kernel = stride = s is exactly "group s adjacent positions, apply one linear map", so it is
    implemented as reshape + Linear (and its transpose as Linear + reshape), channels-last, with LayerNorm and GELU
    after each. `depth - 1` residual pointwise blocks follow each (transposed) convolution; they keep every receptive
    field equal to one subtree. The time embedding, if any, is added at every level.
    """

    def __init__(self, n_in: int, v: int, s: int, L: int, width: int = 64, depth: int = 2,
                 time_cond: bool = True, dropout: float = 0.0) -> None:
        super().__init__()
        self.s, self.L = s, L
        self.tok = nn.Embedding(n_in, width)
        self.time = TimeEmbedding(width) if time_cond else None
        self.down = nn.ModuleList(nn.Linear(s * width, width) for _ in range(L))
        self.down_ln = nn.ModuleList(nn.LayerNorm(width) for _ in range(L))
        self.down_mix = nn.ModuleList(
            nn.Sequential(*(PointwiseBlock(width, dropout) for _ in range(depth - 1))) for _ in range(L))
        self.up = nn.ModuleList(nn.Linear(width, s * width) for _ in range(L))
        self.up_ln = nn.ModuleList(nn.LayerNorm(width) for _ in range(L))
        self.up_mix = nn.ModuleList(
            nn.Sequential(*(PointwiseBlock(width, dropout) for _ in range(depth - 1))) for _ in range(L))
        self.ln = nn.LayerNorm(width)
        self.head = nn.Linear(width, v)

    def forward(self, x: Tensor, t: Tensor) -> Tensor:
        B = x.shape[0]
        h = self.tok(x)                                   # (B, d, C) channels-last
        temb = self.time(t)[:, None, :] if self.time is not None else None
        if temb is not None:
            h = h + temb
        skips = []
        for i in range(self.L):                          # leaves -> root
            skips.append(h)
            n, C = h.shape[1], h.shape[2]
            h = F.gelu(self.down_ln[i](self.down[i](h.reshape(B, n // self.s, self.s * C))))
            if temb is not None:
                h = h + temb
            h = self.down_mix[i](h)
        for i in range(self.L):                          # root -> leaves
            n, C = h.shape[1], h.shape[2]
            h = F.gelu(self.up_ln[i](self.up[i](h).reshape(B, n * self.s, C)))
            h = h + skips[self.L - 1 - i]
            if temb is not None:
                h = h + temb
            h = self.up_mix[i](h)
        return self.head(self.ln(h))
