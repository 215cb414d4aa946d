"""Layers whose parameters carry a leading member axis K: a pack of K independent networks in one set of tensors.

Activations are `(K, ..., C)`: member k's rows only ever meet member k's weights (a linear layer is one
`torch.baddbmm` over the K members), so K networks train in one vectorized step while each stays exactly the
network it would be alone. K = 1 is a lone trial; there is no other code path.

Initialization: member k's slice of every parameter is drawn by `reset_member(k)` with the same calls, in the same
order, as torch's default initialization of the corresponding `nn.Linear` / `nn.Embedding` / `nn.LayerNorm`; the
backbone draws its members one after another from each member's own seed (`init_members`).
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .rng import MemberRNG


class Packed(nn.Module):
    """A module with per-member parameters; `reset_member(k)` draws member k's slice from the global RNG."""

    def reset_member(self, k: int) -> None:
        raise NotImplementedError


class PackedLinear(Packed):
    """K linear maps y = x W + b: weight (K, in, out) (member k's slice is `nn.Linear.weight.T`), bias (K, 1, out).

    The weight is stored input-major so that the gradient `x^T dy` lands in the parameter's own layout (no copy
    when autograd accumulates it)."""

    def __init__(self, K: int, n_in: int, n_out: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(K, n_in, n_out))
        self.bias = nn.Parameter(torch.empty(K, 1, n_out))          # broadcasts over a member's rows

    def reset_member(self, k: int) -> None:
        w, b = _linear_init(self.weight.shape[1], self.weight.shape[2])
        with torch.no_grad():
            self.weight[k] = w.T
            self.bias[k] = b

    def maps(self) -> list[tuple[Tensor, Tensor]]:
        return [(self.weight, self.bias)]

    def forward(self, x: Tensor) -> Tensor:
        K, n_in, n_out = self.weight.shape
        y = torch.baddbmm(self.bias, x.reshape(K, -1, n_in), self.weight)
        return y.view(*x.shape[:-1], n_out)


class PackedQKV(Packed):
    """The query, key and value maps of attention, initialized as one fused `nn.Linear(C, 3C)` but applied as three
    (K, C, C) maps: each output is then contiguous, and attention's gradients come back in place (no copies)."""

    def __init__(self, K: int, width: int) -> None:
        super().__init__()
        self.weight = nn.ParameterList(nn.Parameter(torch.empty(K, width, width)) for _ in range(3))
        self.bias = nn.ParameterList(nn.Parameter(torch.empty(K, 1, width)) for _ in range(3))

    def reset_member(self, k: int) -> None:
        C = self.weight[0].shape[1]
        w, b = _linear_init(C, 3 * C)
        with torch.no_grad():
            for i in range(3):
                self.weight[i][k] = w[i * C:(i + 1) * C].T
                self.bias[i][k] = b[i * C:(i + 1) * C]

    def maps(self) -> list[tuple[Tensor, Tensor]]:
        return list(zip(self.weight, self.bias))

    def forward(self, x: Tensor) -> list[Tensor]:
        K, _, C = self.bias[0].shape
        x2 = x.reshape(K, -1, C)
        return [torch.baddbmm(b, x2, w).view(x.shape) for w, b in zip(self.weight, self.bias)]


def _linear_init(n_in: int, n_out: int) -> tuple[Tensor, Tensor]:
    """Weight (out, in) and bias (out,) drawn from the global RNG exactly as `nn.Linear.reset_parameters` does."""
    w, b = torch.empty(n_out, n_in), torch.empty(n_out)
    nn.init.kaiming_uniform_(w, a=math.sqrt(5))
    bound = 1 / math.sqrt(n_in)
    nn.init.uniform_(b, -bound, bound)
    return w, b


class PackedEmbedding(Packed):
    """K embedding tables (K, n, C); member k looks its ids up in table k."""

    def __init__(self, K: int, n: int, width: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(K, n, width))

    def reset_member(self, k: int) -> None:
        with torch.no_grad():
            nn.init.normal_(self.weight[k])

    def forward(self, ids: Tensor) -> Tensor:
        K, n, C = self.weight.shape
        offset = (torch.arange(K, device=ids.device) * n).view(K, *[1] * (ids.dim() - 1))
        return F.embedding(ids + offset, self.weight.view(K * n, C))


class PackedPosition(Packed):
    """Learned positional embeddings (K, d, C), initialized as `torch.randn(d, C) * 0.02` per member."""

    def __init__(self, K: int, d: int, width: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(K, d, width))

    def reset_member(self, k: int) -> None:
        with torch.no_grad():
            self.weight[k] = torch.randn(self.weight.shape[1:]) * 0.02

    def forward(self, h: Tensor) -> Tensor:
        """h (K, B, d, C) plus member k's positional table on member k's rows."""
        return h + self.weight.unsqueeze(1)


class PackedLayerNorm(Packed):
    """LayerNorm over the last axis with a per-member affine (weight, bias each (K, C)); init ones / zeros."""

    def __init__(self, K: int, width: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(K, width))
        self.bias = nn.Parameter(torch.zeros(K, width))

    def reset_member(self, k: int) -> None:
        with torch.no_grad():
            self.weight[k] = 1.0
            self.bias[k] = 0.0

    def forward(self, x: Tensor) -> Tensor:
        K, C = self.weight.shape
        shape = (K, *[1] * (x.dim() - 2), C)
        return torch.addcmul(self.bias.view(shape), F.layer_norm(x, (C,), eps=self.eps), self.weight.view(shape))


def norm_linear(x: Tensor, ln: PackedLayerNorm, lin: PackedLinear | PackedQKV) -> list[Tensor]:
    """`lin(ln(x))` with the LayerNorm's per-member affine folded into the linear maps that follow it:
    (n g + b) W + c = n (g W) + (b W + c). The same function, computed with weight-sized operations instead of a
    pass over the activations (forward and backward) for the affine. One output per map of `lin`."""
    K, C = ln.weight.shape
    n = F.layer_norm(x, (C,), eps=ln.eps).reshape(K, -1, C)
    g, b = ln.weight.unsqueeze(2), ln.bias.unsqueeze(1)                 # (K, C, 1), (K, 1, C)
    return [torch.baddbmm(torch.baddbmm(c, b, w), n, g * w).view(*x.shape[:-1], w.shape[2])
            for w, c in lin.maps()]


def member_dropout(x: Tensor, p: float, rng: MemberRNG | None, training: bool) -> Tensor:
    """Dropout on x (K, ...) whose masks member k draws from its own generator (not the global RNG)."""
    if not training or p == 0.0:
        return x
    if rng is None:
        raise ValueError("dropout in training needs the members' generators (pass rng to the network)")
    keep = rng.rand(*x.shape[1:]) >= p
    return x * keep / (1.0 - p)


def init_members(net: nn.Module, seeds: Sequence[int | None]) -> None:
    """Draw member k's slice of every `Packed` parameter of `net`, in module order, from a global RNG seeded with
    `seeds[k]` (forked, so the caller's RNG is untouched); a None seed draws from the caller's global RNG as is."""
    leaves = [m for m in net.modules() if isinstance(m, Packed)]
    for k, seed in enumerate(seeds):
        if seed is None:
            for m in leaves:
                m.reset_member(k)
            continue
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            for m in leaves:
                m.reset_member(k)


def pack_size(net: nn.Module) -> int:
    """K, the number of members, read off the first parameter's leading axis."""
    return next(net.parameters()).shape[0]
