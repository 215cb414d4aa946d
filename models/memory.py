"""How much device memory a pack needs, estimated before training, and what pack size fits a budget.

Per member: weights, gradients and AdamW's two moments (4 bytes each per parameter), the EMA copy if any, the
activations autograd keeps for the backward pass, the transient tensors of the backward pass, and the member's
training set. Activations are measured, not modelled: the bytes of the tensors autograd saves
(`saved_tensors_hooks`, storages counted once, parameters excluded) in a forward pass of the loss at batch 1 and 2,
extrapolated linearly to the training batch; the backward pass's transients are taken as twice the largest saved
tensor (a layer's output gradient and its input gradient are alive at once). The allocator's slack is left out:
`check` plans with `HEADROOM` of the budget. benchmarks/pack_bench.py prints the estimate beside measured peaks.
"""
from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Callable

import torch

from .rng import MemberRNG

HEADROOM = 0.75         # the share of a memory budget a pack may plan to use
GiB, MiB = 2.0 ** 30, 2.0 ** 20


@dataclasses.dataclass(frozen=True)
class MemoryEstimate:
    """Estimated bytes per member of a pack of K members (`total` = K * `per_member`)."""

    K: int
    params: int            # weights of one member
    optimizer: int         # gradients + AdamW moments (+ EMA weights)
    activations: int       # saved for backward at the training batch size
    transient: int         # alive only during the backward pass
    data: int              # the member's training set (padded to the pack's largest P)

    @property
    def per_member(self) -> int:
        return self.params + self.optimizer + self.activations + self.transient + self.data

    @property
    def total(self) -> int:
        return self.K * self.per_member

    def max_members(self, budget: int) -> int:
        """The largest pack size whose estimate fits `HEADROOM` of `budget` bytes (0 if not even one member)."""
        return int(HEADROOM * budget // self.per_member)

    def check(self, budget: int) -> None:
        """Raise ValueError, saying what pack size would fit, when this pack's estimate exceeds the budget."""
        if isinstance(budget, bool) or not isinstance(budget, int) or budget < 1:
            raise ValueError(f"memory budget {budget!r} is invalid: expected a positive number of bytes")
        if self.total <= HEADROOM * budget:
            return
        fit = self.max_members(budget)
        advice = (f"a pack of at most {fit} member{'s' if fit != 1 else ''} fits" if fit >= 1
                  else "not even one member fits: reduce batch_size or the model")
        raise ValueError(f"a pack of K={self.K} members needs about {self.total / GiB:.2f} GiB ({self.describe()}), "
                         f"over {HEADROOM:.0%} of the memory budget of {budget / GiB:.2f} GiB: {advice}")

    def describe(self) -> str:
        return (f"per member {self.per_member / MiB:.1f} MiB: weights {self.params / MiB:.1f}, gradients and "
                f"optimizer {self.optimizer / MiB:.1f}, activations {self.activations / MiB:.1f}, "
                f"backward transients {self.transient / MiB:.1f}, data {self.data / MiB:.1f}")


def estimate_memory(model: torch.nn.Module, batch_size: int, P_max: int, ema: bool = False,
                    autocast: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext
                    ) -> MemoryEstimate:
    """The memory estimate of training the pack `model` (a `Diffusion`) at `batch_size` per member."""
    K = model.K
    params = sum(p[0].numel() * p.element_size() for p in model.parameters())
    (act1, each1), (act2, each2) = (_saved_bytes(model, b, autocast) for b in (1, 2))
    per_sample = max(act2 - act1, 0)
    activations = (per_sample * batch_size + max(act1 - per_sample, 0)) // K
    largest = max((a + (b - a) * (batch_size - 1) for a, b in zip(each1, each2)), default=0) // K
    return MemoryEstimate(K=K, params=params, optimizer=params * (3 + int(ema)), activations=int(activations),
                          transient=int(2 * largest), data=P_max * model.d * 8)


def _saved_bytes(model: torch.nn.Module, batch: int, autocast: Callable) -> tuple[int, list[int]]:
    """Bytes of the tensors autograd saves for one training forward of the loss at `batch` strings per member: in
    all (each storage once), and of each saved tensor in the order they are saved (to extrapolate in the batch)."""
    own = {p.untyped_storage().data_ptr() for p in model.parameters()}
    seen: dict[int, int] = {}
    each: list[int] = []

    def pack(t: torch.Tensor) -> torch.Tensor:
        s = t.untyped_storage()
        if s.data_ptr() not in own:
            seen[s.data_ptr()] = max(seen.get(s.data_ptr(), 0), s.nbytes())
            each.append(s.nbytes())
        # detached: a saved tensor kept with its grad_fn is a reference cycle autograd never frees, and the leaked
        # graph would keep the parameters' gradient accumulators, with their shapes, alive past a pack's `drop`
        return t.detach()

    x0 = torch.zeros(model.K, batch, model.d, dtype=torch.long, device=model.device)
    was_training = model.training
    model.train()
    try:
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t), autocast():
            loss = model.loss(x0, MemberRNG([0] * model.K, model.device))
        del loss
    finally:
        model.train(was_training)
    return sum(seen.values()), each
