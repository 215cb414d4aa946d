"""Denoiser backbones for a pack of K members: token ids (K, B, d) long + time (K, B) float -> logits (K, B, d, v).

Two networks: a small bidirectional transformer, and a tree-shaped convolutional U-Net whose filter size and
stride equal the grammar's branching factor `s`, so that its receptive fields follow the RHM tree. Every parameter
carries the member axis (models/packed.py); member k's outputs depend on member k's inputs and weights only.
`rng` (the members' generators) is only needed for dropout in training.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .packed import (PackedEmbedding, PackedLayerNorm, PackedLinear, PackedPosition, PackedQKV, member_dropout,
                     norm_linear, pack_size)
from .rng import MemberRNG


class TimeEmbedding(nn.Module):
    """Sinusoidal features of t in [0, 1] followed by a small MLP (as in DiT / MDLM)."""

    def __init__(self, K: int, width: int, n_freq: int = 32) -> None:
        super().__init__()
        half = n_freq // 2
        freqs = torch.exp(-math.log(1000.0) * torch.arange(half, dtype=torch.float32) / half)
        self.register_buffer("freqs", freqs, persistent=False)
        self.fc1 = PackedLinear(K, 2 * half, width)
        self.fc2 = PackedLinear(K, width, width)

    def forward(self, t: Tensor) -> Tensor:
        """t (K, B) -> (K, B, width)."""
        args = 1000.0 * t.float()[..., None] * self.freqs
        return self.fc2(F.silu(self.fc1(torch.cat([torch.cos(args), torch.sin(args)], dim=-1))))


def attention(q: Tensor, k: Tensor, v: Tensor, K: int, p: float, rng: MemberRNG | None, training: bool) -> Tensor:
    """Bidirectional multi-head attention over a (K*B) batch of (heads, d, head_dim) queries, keys and values.

    Without dropout it is `scaled_dot_product_attention`; with dropout in training the attention weights are
    dropped with each member's own generator, which SDPA (global RNG) cannot do."""
    if not training or p == 0.0:
        return F.scaled_dot_product_attention(q, k, v)
    w = torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1]), dim=-1)
    w = member_dropout(w.view(K, -1, *w.shape[1:]), p, rng, training).view(w.shape)
    return w @ v


class Block(nn.Module):
    """Pre-LayerNorm transformer block (no causal mask); each LayerNorm is folded into the maps after it."""

    def __init__(self, K: int, width: int, heads: int, dropout: float) -> None:
        super().__init__()
        self.heads, self.dropout = heads, dropout
        self.ln1 = PackedLayerNorm(K, width)
        self.qkv = PackedQKV(K, width)
        self.proj = PackedLinear(K, width, width)
        self.ln2 = PackedLayerNorm(K, width)
        self.fc1 = PackedLinear(K, width, 4 * width)
        self.fc2 = PackedLinear(K, 4 * width, width)

    def forward(self, x: Tensor, rng: MemberRNG | None = None) -> Tensor:
        K, B, d, C = x.shape
        H = self.heads
        q, k, v = (y.view(K * B, d, H, C // H).transpose(1, 2) for y in norm_linear(x, self.ln1, self.qkv))
        a = attention(q, k, v, K, self.dropout, rng, self.training)          # (K*B, H, d, C/H)
        x = x + member_dropout(self.proj(a.transpose(1, 2).reshape(K, B, d, C)), self.dropout, rng, self.training)
        h = self.fc2(F.gelu(norm_linear(x, self.ln2, self.fc1)[0]))
        return x + member_dropout(h, self.dropout, rng, self.training)


class Transformer(nn.Module):
    """Bidirectional transformer over `d` positions with learned positional embeddings, K members.

    `n_in` input ids (v, plus one for the mask token in the masked process), `v` output logits.
    With `time_cond` the time embedding is added to every position's input.
    """

    def __init__(self, n_in: int, v: int, d: int, width: int = 64, depth: int = 2, heads: int = 4,
                 time_cond: bool = True, dropout: float = 0.0, K: int = 1) -> None:
        super().__init__()
        self.dropout = dropout
        self.tok = PackedEmbedding(K, n_in, width)
        self.pos = PackedPosition(K, d, width)
        self.time = TimeEmbedding(K, width) if time_cond else None
        self.blocks = nn.ModuleList(Block(K, width, heads, dropout) for _ in range(depth))
        self.ln = PackedLayerNorm(K, width)
        self.head = PackedLinear(K, width, v)

    def forward(self, x: Tensor, t: Tensor, rng: MemberRNG | None = None) -> Tensor:
        h = self.pos(self.tok(x))
        if self.time is not None:
            h = h + self.time(t)[:, :, None, :]
        h = member_dropout(h, self.dropout, rng, self.training)
        for block in self.blocks:
            h = block(h, rng)
        return norm_linear(h, self.ln, self.head)[0]

    @property
    def K(self) -> int:
        return pack_size(self)


class PointwiseBlock(nn.Module):
    """Residual kernel-1 convolution (a per-position MLP): adds capacity without widening receptive fields."""

    def __init__(self, K: int, width: int, dropout: float) -> None:
        super().__init__()
        self.dropout = dropout
        self.ln = PackedLayerNorm(K, width)
        self.fc1 = PackedLinear(K, width, 2 * width)
        self.fc2 = PackedLinear(K, 2 * width, width)

    def forward(self, x: Tensor, rng: MemberRNG | None = None) -> Tensor:
        h = self.fc2(F.gelu(norm_linear(x, self.ln, self.fc1)[0]))
        return x + member_dropout(h, self.dropout, rng, self.training)


class TreeConv(nn.Module):
    """U-Net over the RHM tree: L stride-s down-convolutions from the d = s**L leaves to the root, then L
    transposed convolutions back up, with a skip connection from the down path at every level; K members.

    A convolution with kernel = stride = s is exactly "group s adjacent positions, apply one linear map", so it is
    implemented as reshape + linear (and its transpose as linear + reshape), channels-last, with LayerNorm and GELU
    after each. `depth - 1` residual pointwise blocks follow each (transposed) convolution; they keep every receptive
    field equal to one subtree. The time embedding, if any, is added at every level.
    """

    def __init__(self, n_in: int, v: int, s: int, L: int, width: int = 64, depth: int = 2,
                 time_cond: bool = True, dropout: float = 0.0, K: int = 1) -> None:
        super().__init__()
        self.s, self.L, self.dropout = s, L, dropout
        self.tok = PackedEmbedding(K, n_in, width)
        self.time = TimeEmbedding(K, width) if time_cond else None
        self.down = nn.ModuleList(PackedLinear(K, s * width, width) for _ in range(L))
        self.down_ln = nn.ModuleList(PackedLayerNorm(K, width) for _ in range(L))
        self.down_mix = nn.ModuleList(
            nn.ModuleList(PointwiseBlock(K, width, dropout) for _ in range(depth - 1)) for _ in range(L))
        self.up = nn.ModuleList(PackedLinear(K, width, s * width) for _ in range(L))
        self.up_ln = nn.ModuleList(PackedLayerNorm(K, width) for _ in range(L))
        self.up_mix = nn.ModuleList(
            nn.ModuleList(PointwiseBlock(K, width, dropout) for _ in range(depth - 1)) for _ in range(L))
        self.ln = PackedLayerNorm(K, width)
        self.head = PackedLinear(K, width, v)

    def forward(self, x: Tensor, t: Tensor, rng: MemberRNG | None = None) -> Tensor:
        K, B = x.shape[:2]
        h = self.tok(x)                                   # (K, B, d, C) channels-last
        temb = self.time(t)[:, :, None, :] if self.time is not None else None
        if temb is not None:
            h = h + temb
        skips = []
        for i in range(self.L):                          # leaves -> root
            skips.append(h)
            n, C = h.shape[2], h.shape[3]
            h = F.gelu(self.down_ln[i](self.down[i](h.reshape(K, B, n // self.s, self.s * C))))
            if temb is not None:
                h = h + temb
            for block in self.down_mix[i]:
                h = block(h, rng)
        for i in range(self.L):                          # root -> leaves
            n, C = h.shape[2], h.shape[3]
            h = F.gelu(self.up_ln[i](self.up[i](h).reshape(K, B, n * self.s, C)))
            h = h + skips[self.L - 1 - i]
            if temb is not None:
                h = h + temb
            for block in self.up_mix[i]:
                h = block(h, rng)
        return norm_linear(h, self.ln, self.head)[0]

    @property
    def K(self) -> int:
        return pack_size(self)
