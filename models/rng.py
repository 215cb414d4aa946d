"""Per-member randomness for packs: one `torch.Generator` per member, seeded from that member's own seed.

Every draw is made member by member from the member's generator, into its slice of a `(K, *shape)` tensor, so the
numbers a member sees depend on its seed and its own history only, never on which members share its pack or how
many there are: member k of a pack draws exactly what the same trial trained alone draws.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor


class MemberRNG:
    """K generators on one device; `rand`/`randint` return `(K, *shape)` tensors, member k drawn from generator k."""

    def __init__(self, seeds: Sequence[int], device: torch.device | str = "cpu") -> None:
        self.device = torch.device(device)
        self.gens = [torch.Generator(self.device).manual_seed(int(s)) for s in seeds]

    def __len__(self) -> int:
        return len(self.gens)

    def rand(self, *shape: int) -> Tensor:
        """U[0, 1) float32 of shape (K, *shape); member k's slice is `torch.rand(shape, generator=gens[k])`."""
        out = torch.empty((len(self.gens), *shape), device=self.device)
        for k, g in enumerate(self.gens):
            out[k].uniform_(0.0, 1.0, generator=g)
        return out

    def randint(self, high: int | Sequence[int], *shape: int) -> Tensor:
        """Integers in [0, high_k) of shape (K, *shape), int64; `high` is one bound or one per member."""
        highs = [int(high)] * len(self.gens) if isinstance(high, int) else [int(h) for h in high]
        if len(highs) != len(self.gens):
            raise ValueError(f"randint got {len(highs)} bounds for {len(self.gens)} members")
        out = torch.empty((len(self.gens), *shape), dtype=torch.long, device=self.device)
        for k, (g, h) in enumerate(zip(self.gens, highs)):
            out[k].random_(0, h, generator=g)
        return out

    def randperm(self, k: int, n: int) -> Tensor:
        """A random permutation of range(n) from member k's generator (members' sizes may differ)."""
        return torch.randperm(n, generator=self.gens[k], device=self.device)

    def select(self, idx: Sequence[int]) -> "MemberRNG":
        """The generators of the members `idx`, in that order (the same generator objects, not copies)."""
        out = MemberRNG([], self.device)
        out.gens = [self.gens[i] for i in idx]
        return out

    def get_state(self) -> list[Tensor]:
        return [g.get_state() for g in self.gens]

    def set_state(self, states: Sequence[Tensor]) -> None:
        if len(states) != len(self.gens):
            raise ValueError(f"got {len(states)} generator states for {len(self.gens)} members")
        for g, s in zip(self.gens, states):
            g.set_state(s)
