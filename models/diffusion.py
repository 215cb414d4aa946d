"""Discrete diffusion processes on token strings for a pack of K members, sharing one interface:
`loss(x0 (K, B, d), rng) -> (K,)` and `sample(n, steps, rng) -> (K, n, d)`.

- `MaskedDiffusion`: absorbing-state continuous-time diffusion (MDLM / MD4). Each token is masked independently with
  probability t (the log-linear schedule alpha_t = 1 - t), the network predicts x0 at masked positions, and the loss is
  the continuous-time ELBO: cross-entropy on masked positions weighted by 1/t.
- `UniformDiffusion`: D3PM with uniform transitions, discrete time t = 1..T, cosine schedule
  abar_t = cos(pi/2 * t/T)^2 so q(x_t|x0) = abar_t x0 + (1 - abar_t)/v. The network predicts x0; the loss is the ELBO
  T * E_t KL(q(x_{t-1}|x_t,x0) || p(x_{t-1}|x_t)) plus `ce_weight` * CE(x0) (D3PM's hybrid loss).

Losses are per token (divided by d), one per member; randomness comes only from the members' generators
(`MemberRNG`), member k's from its own, so a run is reproducible from its generator states and a member draws the
same numbers in any pack.
"""
from __future__ import annotations

import abc
import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .backbones import Transformer, TreeConv
from .config import ModelConfig, check_member_seeds
from .packed import init_members, pack_size
from .rng import MemberRNG

T_MIN = 1e-3          # masked process: smallest t in training (the 1/t weight is clamped there)


def _gumbel_argmax(logits: Tensor, rng: MemberRNG) -> Tensor:
    """Sample from softmax(logits) along the last axis with the Gumbel-max trick; logits (K, ...), member k's
    noise from its own generator."""
    u = rng.rand(*logits.shape[1:]).clamp_(min=1e-20)
    return (logits.float() - torch.log(-torch.log(u))).argmax(-1)


def _stratified(u0: Tensor, n: int) -> Tensor:
    """(K, n) low-discrepancy (antithetic) samples in [0, 1): per member one uniform offset u0 (K, 1) plus an
    evenly spaced grid."""
    return torch.remainder(u0 + torch.arange(n, device=u0.device) / n, 1.0)


class Diffusion(nn.Module, abc.ABC):
    """Base: holds the pack's denoiser `net(x_t ids (K, B, d), t (K, B)) -> logits (K, B, d, v)` and the sizes."""

    def __init__(self, net: nn.Module, v: int, d: int) -> None:
        super().__init__()
        self.net, self.v, self.d = net, v, d

    def loss(self, x0: Tensor, rng: MemberRNG, elbo: bool = False) -> Tensor:
        """Per-member training loss (K,) for clean tokens x0 (K, B, d); `elbo=True` drops auxiliary terms."""
        self._check(rng, x0)
        return self.loss_given(x0, self.draw_noise(x0.shape[1], rng), self._net_rng(rng), elbo)

    @abc.abstractmethod
    def draw_noise(self, B: int, rng: MemberRNG) -> tuple[Tensor, ...]:
        """The random numbers of one loss on B strings per member (times, corruption), from the members'
        generators in the order `loss` uses them. Kept apart from `loss_given` so that a compiled training step
        sees tensors only (a generator is opaque to torch.compile)."""

    @abc.abstractmethod
    def loss_given(self, x0: Tensor, noise: tuple[Tensor, ...], net_rng: MemberRNG | None = None,
                   elbo: bool = False) -> Tensor:
        """The loss of `loss`, a function of x0 and `draw_noise`'s draws (and `net_rng` for dropout) alone."""

    @abc.abstractmethod
    def sample(self, n: int, steps: int | None, rng: MemberRNG) -> Tensor:
        """n strings per member (K, n, d) long in [0, v), generated in `steps` denoising steps."""

    @property
    def K(self) -> int:
        """The number of members."""
        return pack_size(self.net)

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def _check(self, rng: MemberRNG, x0: Tensor | None = None, n: int | None = None) -> None:
        K = self.K
        if len(rng) != K:
            raise ValueError(f"got {len(rng)} generators for a pack of K={K} members: expected one per member")
        if x0 is not None and (x0.dim() != 3 or x0.shape[0] != K or x0.shape[2] != self.d):
            raise ValueError(f"x0 has shape {tuple(x0.shape)}: expected (K={K}, B, d={self.d})")
        if n is not None and (isinstance(n, bool) or not isinstance(n, int) or n < 1):
            raise ValueError(f"n={n!r} is invalid: expected an integer >= 1 strings per member")

    def _net_rng(self, rng: MemberRNG) -> MemberRNG | None:
        """The generators for the network's dropout, None when it draws nothing (keeps compiled graphs simple)."""
        return rng if self.training and getattr(self.net, "dropout", 0.0) > 0 else None


class MaskedDiffusion(Diffusion):
    """Absorbing-state diffusion; the mask token is id `v` (the network has v+1 input ids, v output logits)."""

    @property
    def mask_id(self) -> int:
        return self.v

    def draw_noise(self, B: int, rng: MemberRNG) -> tuple[Tensor, ...]:
        return rng.rand(1), rng.rand(B, self.d)           # the time grid's offset, the masking uniforms

    def loss_given(self, x0: Tensor, noise: tuple[Tensor, ...], net_rng: MemberRNG | None = None,
                   elbo: bool = False) -> Tensor:
        K, B, d = x0.shape
        u0, u_mask = noise
        t = T_MIN + (1 - T_MIN) * _stratified(u0, B)                               # (K, B)
        mask = u_mask < t[..., None]
        xt = torch.where(mask, self.mask_id, x0)
        logits = self.net(xt, t, net_rng)
        ce = F.cross_entropy(logits.float().reshape(-1, self.v), x0.reshape(-1), reduction="none").view(K, B, d)
        return (ce * mask / t[..., None]).sum((1, 2)) / (B * d)

    @torch.no_grad()
    def sample(self, n: int, steps: int | None, rng: MemberRNG) -> Tensor:
        """Ancestral sampling from all-masked; unmasked tokens never change (carry-over).

        `steps=S`: over the grid t = 1, 1 - 1/S, ..., 0, from t to s each masked token is unmasked with probability
        (t - s)/t to a draw from p(x0|x_t). Tokens unmasked in the same step are drawn independently, which a
        perfect model pays for (two coupled tokens can disagree) unless S >> d.
        `steps=None`: the exact S -> infinity limit in d network calls: every position gets an i.i.d. U(0, 1)
        unmasking time, and positions are unmasked one at a time in decreasing time order, the network seeing
        the state and the time just before each event.
        """
        self._check(rng, n=n)
        K, dev = self.K, self.device
        if steps is None:
            return self._exact(n, rng, record=False)[0]
        x = torch.full((K, n, self.d), self.mask_id, dtype=torch.long, device=dev)
        if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
            raise ValueError(f"steps={steps!r} is invalid: expected an integer >= 1, or None for the exact sampler")
        for i in range(steps):
            t, s = 1.0 - i / steps, 1.0 - (i + 1) / steps
            x0 = _gumbel_argmax(self.net(x, torch.full((K, n), t, device=dev)), rng)
            unmask = rng.rand(n, self.d) < (t - s) / t
            x = torch.where((x == self.mask_id) & unmask, x0, x)
        return x

    @torch.no_grad()
    def sample_trajectory(self, n: int, rng: MemberRNG) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """The exact sampler, `sample(n, None, rng)` (the same draws, the same strings), with its reverse trajectory
        recorded: strings (K, n, d), order (K, n, d) the position unmasked at each step, times (K, n, d) the time the
        network saw, entropy (K, n, d) float64 (nats) of the distribution each token was drawn from."""
        self._check(rng, n=n)
        return self._exact(n, rng, record=True)

    def _exact(self, n: int, rng: MemberRNG, record: bool) -> tuple[Tensor, ...]:
        """The exact sampler's loop; with `record`, also its order, times and per-draw entropies (no extra draws)."""
        K, d, dev = self.K, self.d, self.device
        x = torch.full((K, n, d), self.mask_id, dtype=torch.long, device=dev)
        times, order = rng.rand(n, d).sort(dim=-1, descending=True)
        ent = torch.empty(K, n, d, dtype=torch.float64, device=dev) if record else None
        for j in range(d):
            pos = order[..., j:j + 1]                                               # (K, n, 1)
            logits = self.net(x, times[..., j]).gather(2, pos[..., None].expand(K, n, 1, self.v))
            if record:
                logp = torch.log_softmax(logits[:, :, 0].float(), -1)
                ent[:, :, j] = -(logp.exp() * logp).sum(-1).double()
            x.scatter_(2, pos, _gumbel_argmax(logits, rng))
        return (x, order, times, ent) if record else (x,)


class UniformDiffusion(Diffusion):
    """D3PM-uniform in discrete time t = 1..T; the network sees t/T. Sampling with S <= T steps walks the exact
    posterior q(x_s|x_t, x0) between S+1 evenly spaced times (with x0 replaced by the network's prediction)."""

    def __init__(self, net: nn.Module, v: int, d: int, T: int = 100, ce_weight: float = 0.01) -> None:
        super().__init__(net, v, d)
        self.T, self.ce_weight = T, ce_weight
        abar = torch.cos(0.5 * math.pi * torch.arange(T + 1, dtype=torch.float64) / T) ** 2
        abar[0] = 1.0
        self.register_buffer("abar", abar.float(), persistent=False)

    def _log_posterior(self, xt: Tensor, log_x0: Tensor, a_t: Tensor, a_s: Tensor) -> Tensor:
        """log q(x_s | x_t, x0) for x0 ~ exp(log_x0) (..., d, v), normalised over the last axis; a_t, a_s (...).

        q(x_s=k|x_t, x0) is proportional to q(x_t|x_s=k) q(x_s=k|x0) = (a [k=x_t] + (1-a)/v) (a_s p0_k + (1-a_s)/v)
        with a = a_t / a_s; for a predicted x0 distribution this is exactly D3PM's p(x_s|x_t).
        """
        a = (a_t / a_s)[..., None, None]
        a_s = a_s[..., None, None]
        onehot = F.one_hot(xt, self.v).to(log_x0.dtype)
        fwd = torch.log((a * onehot + (1 - a) / self.v).clamp_min(1e-30))
        prior = torch.logaddexp(torch.log(a_s) + log_x0, torch.log(((1 - a_s) / self.v).clamp_min(1e-30)))
        return torch.log_softmax(fwd + prior, dim=-1)

    def draw_noise(self, B: int, rng: MemberRNG) -> tuple[Tensor, ...]:
        return rng.rand(1), rng.rand(B, self.d), rng.randint(self.v, B, self.d)   # times, keep uniforms, symbols

    def loss_given(self, x0: Tensor, noise: tuple[Tensor, ...], net_rng: MemberRNG | None = None,
                   elbo: bool = False) -> Tensor:
        K, B, d = x0.shape
        u0, u_keep, symbols = noise
        t = (_stratified(u0, B) * self.T).long().clamp_(max=self.T - 1) + 1     # (K, B) in 1..T
        a_t, a_s = self.abar[t], self.abar[t - 1]
        keep = u_keep < a_t[..., None]
        xt = torch.where(keep, x0, symbols)
        logits = self.net(xt, t.float() / self.T, net_rng).float()
        log_p0 = torch.log_softmax(logits, dim=-1)
        log_true0 = torch.where(F.one_hot(x0, self.v).bool(), 0.0, -1e30)
        log_q = self._log_posterior(xt, log_true0, a_t, a_s)
        log_p = self._log_posterior(xt, log_p0, a_t, a_s)
        kl = (log_q.exp() * (log_q - log_p)).sum(-1)                  # (K, B, d); at t=1 this is -log p(x0|x1)
        out = self.T * kl.sum((1, 2)) / (B * d)
        if not elbo and self.ce_weight > 0:
            out = out - self.ce_weight * log_p0.gather(-1, x0[..., None]).mean((1, 2, 3))
        return out

    @torch.no_grad()
    def sample(self, n: int, steps: int | None, rng: MemberRNG) -> Tensor:
        self._check(rng, n=n)
        steps = self.T if steps is None else steps
        if isinstance(steps, bool) or not isinstance(steps, int) or not 1 <= steps <= self.T:
            raise ValueError(f"steps={steps} is invalid for uniform diffusion: expected 1 <= steps <= T={self.T}")
        K, dev = self.K, self.device
        times = [(2 * self.T * (steps - k) + steps) // (2 * steps) for k in range(steps + 1)]  # T ... 0, distinct
        x = rng.randint(self.v, n, self.d)
        for t, s in zip(times[:-1], times[1:]):
            logits = self.net(x, torch.full((K, n), t / self.T, device=dev)).float()
            a_t, a_s = self.abar[t].expand(K, n), self.abar[s].expand(K, n)
            log_post = self._log_posterior(x, torch.log_softmax(logits, dim=-1), a_t, a_s)
            x = _gumbel_argmax(log_post, rng)
        return x


def build_model(cfg: ModelConfig, v: int, d: int, s: int, L: int,
                seed: int | Sequence[int] | None = None) -> Diffusion:
    """The diffusion model `cfg` describes for strings of length d = s**L over v symbols.

    `seed`: an int makes the initial weights a function of it alone (independent of the global RNG); a sequence of
    K seeds builds a pack of K members, member k initialized exactly as `build_model(..., seed=seeds[k])`;
    None draws one member from the global RNG.
    """
    for name, val, lo in (("v", v, 2), ("d", d, 1), ("s", s, 2), ("L", L, 1)):
        if isinstance(val, bool) or not isinstance(val, int) or val < lo:
            raise ValueError(f"{name}={val!r} is invalid: expected an integer >= {lo}")
    if d != s ** L:
        raise ValueError(f"d={d} does not fit the grammar: the string length must be s**L = {s}**{L} = {s ** L}")
    seeds = _member_seeds(seed)
    n_in = v + 1 if cfg.process == "masked" else v
    net = _backbone(cfg, n_in, v, d, s, L, len(seeds))
    init_members(net, seeds)
    return MaskedDiffusion(net, v, d) if cfg.process == "masked" else UniformDiffusion(net, v, d)


def _member_seeds(seed: int | Sequence[int] | None) -> list[int | None]:
    if seed is None:
        return [None]
    if isinstance(seed, int) and not isinstance(seed, bool):
        return check_member_seeds([seed])
    if isinstance(seed, Sequence) and not isinstance(seed, str):
        return check_member_seeds(seed)
    raise ValueError(f"seed={seed!r} is invalid: expected an integer seed, a sequence of member seeds, or None")


def _backbone(cfg: ModelConfig, n_in: int, v: int, d: int, s: int, L: int, K: int) -> nn.Module:
    if cfg.backbone == "transformer":
        return Transformer(n_in, v, d, cfg.width, cfg.depth, cfg.heads, cfg.time_cond, cfg.dropout, K=K)
    return TreeConv(n_in, v, s, L, cfg.width, cfg.depth, cfg.time_cond, cfg.dropout, K=K)
