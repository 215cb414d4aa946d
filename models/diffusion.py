"""Discrete diffusion processes on token strings, sharing one interface: `loss(x0)` and `sample(n, steps, g)`.

- `MaskedDiffusion`: absorbing-state continuous-time diffusion (MDLM / MD4). Each token is masked independently with
  probability t (the log-linear schedule alpha_t = 1 - t), the network predicts x0 at masked positions, and the loss is
  the continuous-time ELBO: cross-entropy on masked positions weighted by 1/t.
- `UniformDiffusion`: D3PM with uniform transitions, discrete time t = 1..T, cosine schedule
  abar_t = cos(pi/2 * t/T)^2 so q(x_t|x0) = abar_t x0 + (1 - abar_t)/v. The network predicts x0; the loss is the ELBO
  T * E_t KL(q(x_{t-1}|x_t,x0) || p(x_{t-1}|x_t)) plus `ce_weight` * CE(x0) (D3PM's hybrid loss).

Losses are per token (divided by d); randomness comes only from the `generator` argument, so a run is reproducible
from its generator state.
"""
from __future__ import annotations

import abc

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .backbones import Transformer, TreeConv
from .config import ModelConfig

T_MIN = 1e-3          # masked process: smallest t in training (the 1/t weight is clamped there)


def _gumbel_argmax(logits: Tensor, generator: torch.Generator | None) -> Tensor:
    """Sample from softmax(logits) along the last axis with the Gumbel-max trick (all on device)."""
    u = torch.rand(logits.shape, generator=generator, device=logits.device).clamp_(min=1e-20)
    return (logits.float() - torch.log(-torch.log(u))).argmax(-1)


def _stratified_uniform(n: int, generator: torch.Generator | None, device: torch.device) -> Tensor:
    """n low-discrepancy (antithetic) samples in [0, 1): one uniform offset plus an evenly spaced grid."""
    u0 = torch.rand(1, generator=generator, device=device)
    return torch.remainder(u0 + torch.arange(n, device=device) / n, 1.0)


class Diffusion(nn.Module, abc.ABC):
    """Base: holds the denoiser `net(x_t ids (B, d), t (B,)) -> logits (B, d, v)` and the sizes."""

    def __init__(self, net: nn.Module, v: int, d: int) -> None:
        super().__init__()
        self.net, self.v, self.d = net, v, d

    @abc.abstractmethod
    def loss(self, x0: Tensor, generator: torch.Generator | None = None, elbo: bool = False) -> Tensor:
        """Scalar training loss for a batch of clean tokens x0 (B, d); `elbo=True` drops auxiliary terms."""

    @abc.abstractmethod
    def sample(self, n: int, steps: int | None = None, generator: torch.Generator | None = None) -> Tensor:
        """n strings (n, d) long in [0, v), generated in `steps` denoising steps."""

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device


class MaskedDiffusion(Diffusion):
    """Absorbing-state diffusion; the mask token is id `v` (the network has v+1 input ids, v output logits)."""

    @property
    def mask_id(self) -> int:
        return self.v

    def loss(self, x0: Tensor, generator: torch.Generator | None = None, elbo: bool = False) -> Tensor:
        B, d = x0.shape
        t = T_MIN + (1 - T_MIN) * _stratified_uniform(B, generator, x0.device)
        mask = torch.rand(B, d, generator=generator, device=x0.device) < t[:, None]
        xt = torch.where(mask, self.mask_id, x0)
        logits = self.net(xt, t)
        ce = F.cross_entropy(logits.float().reshape(B * d, self.v), x0.reshape(-1), reduction="none").view(B, d)
        return (ce * mask / t[:, None]).sum() / (B * d)

    @torch.no_grad()
    def sample(self, n: int, steps: int | None = None, generator: torch.Generator | None = None) -> Tensor:
        """Ancestral sampling from all-masked; unmasked tokens never change (carry-over).

        `steps=K`: over the grid t = 1, 1 - 1/K, ..., 0, from t to s each masked token is unmasked with probability
        (t - s)/t to a draw from p(x0|x_t). Tokens unmasked in the same step are drawn independently, which a
        perfect model pays for (two coupled tokens can disagree) unless K >> d.
        `steps=None`: the exact K -> infinity limit in d network calls: every position gets an i.i.d. U(0, 1)
        unmasking time, and positions are unmasked one at a time in decreasing time order, the network seeing
        the state and the time just before each event.
        """
        dev = self.device
        x = torch.full((n, self.d), self.mask_id, dtype=torch.long, device=dev)
        if steps is None:
            times, order = torch.rand(n, self.d, generator=generator, device=dev).sort(dim=1, descending=True)
            for j in range(self.d):
                pos = order[:, j:j + 1]
                logits = self.net(x, times[:, j]).gather(1, pos[:, :, None].expand(n, 1, self.v))
                x.scatter_(1, pos, _gumbel_argmax(logits, generator))
            return x
        if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
            raise ValueError(f"steps={steps!r} is invalid: expected an integer >= 1, or None for the exact sampler")
        for i in range(steps):
            t, s = 1.0 - i / steps, 1.0 - (i + 1) / steps
            x0 = _gumbel_argmax(self.net(x, torch.full((n,), t, device=dev)), generator)
            unmask = torch.rand(n, self.d, generator=generator, device=dev) < (t - s) / t
            x = torch.where((x == self.mask_id) & unmask, x0, x)
        return x


class UniformDiffusion(Diffusion):
    """D3PM-uniform in discrete time t = 1..T; the network sees t/T. Sampling with K <= T steps walks the exact
    posterior q(x_s|x_t, x0) between K+1 evenly spaced times (with x0 replaced by the network's prediction)."""

    def __init__(self, net: nn.Module, v: int, d: int, T: int = 100, ce_weight: float = 0.01) -> None:
        super().__init__(net, v, d)
        self.T, self.ce_weight = T, ce_weight
        abar = torch.cos(0.5 * math.pi * torch.arange(T + 1, dtype=torch.float64) / T) ** 2
        abar[0] = 1.0
        self.register_buffer("abar", abar.float(), persistent=False)

    def _log_posterior(self, xt: Tensor, log_x0: Tensor, a_t: Tensor, a_s: Tensor) -> Tensor:
        """log q(x_s | x_t, x0) for x0 ~ exp(log_x0) (B, d, v), normalised over the last axis.

        q(x_s=k|x_t, x0) is proportional to q(x_t|x_s=k) q(x_s=k|x0) = (a [k=x_t] + (1-a)/v) (a_s p0_k + (1-a_s)/v)
        with a = a_t / a_s; for a predicted x0 distribution this is exactly D3PM's p(x_s|x_t).
        """
        a = (a_t / a_s)[:, None, None]
        a_s = a_s[:, None, None]
        onehot = F.one_hot(xt, self.v).to(log_x0.dtype)
        fwd = torch.log((a * onehot + (1 - a) / self.v).clamp_min(1e-30))
        prior = torch.logaddexp(torch.log(a_s) + log_x0, torch.log(((1 - a_s) / self.v).clamp_min(1e-30)))
        return torch.log_softmax(fwd + prior, dim=-1)

    def loss(self, x0: Tensor, generator: torch.Generator | None = None, elbo: bool = False) -> Tensor:
        B, d = x0.shape
        dev = x0.device
        t = (_stratified_uniform(B, generator, dev) * self.T).long().clamp_(max=self.T - 1) + 1   # in 1..T
        a_t, a_s = self.abar[t], self.abar[t - 1]
        keep = torch.rand(B, d, generator=generator, device=dev) < a_t[:, None]
        noise = torch.randint(self.v, (B, d), generator=generator, device=dev)
        xt = torch.where(keep, x0, noise)
        logits = self.net(xt, t.float() / self.T).float()
        log_p0 = torch.log_softmax(logits, dim=-1)
        log_true0 = torch.where(F.one_hot(x0, self.v).bool(), 0.0, -1e30)
        log_q = self._log_posterior(xt, log_true0, a_t, a_s)
        log_p = self._log_posterior(xt, log_p0, a_t, a_s)
        kl = (log_q.exp() * (log_q - log_p)).sum(-1)                  # (B, d); at t=1 this is -log p(x0|x1)
        out = self.T * kl.sum() / (B * d)
        if not elbo and self.ce_weight > 0:
            out = out + self.ce_weight * F.nll_loss(log_p0.reshape(B * d, self.v), x0.reshape(-1))
        return out

    @torch.no_grad()
    def sample(self, n: int, steps: int | None = None, generator: torch.Generator | None = None) -> Tensor:
        steps = self.T if steps is None else steps
        if isinstance(steps, bool) or not isinstance(steps, int) or not 1 <= steps <= self.T:
            raise ValueError(f"steps={steps} is invalid for uniform diffusion: expected 1 <= steps <= T={self.T}")
        dev = self.device
        times = [(2 * self.T * (steps - k) + steps) // (2 * steps) for k in range(steps + 1)]  # T ... 0, distinct
        x = torch.randint(self.v, (n, self.d), generator=generator, device=dev)
        for t, s in zip(times[:-1], times[1:]):
            logits = self.net(x, torch.full((n,), t / self.T, device=dev)).float()
            a_t, a_s = self.abar[t].expand(n), self.abar[s].expand(n)
            log_post = self._log_posterior(x, torch.log_softmax(logits, dim=-1), a_t, a_s)
            x = _gumbel_argmax(log_post, generator)
        return x


def build_model(cfg: ModelConfig, v: int, d: int, s: int, L: int, seed: int | None = None) -> Diffusion:
    """The diffusion model `cfg` describes for strings of length d = s**L over v symbols.

    `seed` (optional) makes the initial weights independent of the global RNG.
    """
    for name, val, lo in (("v", v, 2), ("d", d, 1), ("s", s, 2), ("L", L, 1)):
        if isinstance(val, bool) or not isinstance(val, int) or val < lo:
            raise ValueError(f"{name}={val!r} is invalid: expected an integer >= {lo}")
    if d != s ** L:
        raise ValueError(f"d={d} does not fit the grammar: the string length must be s**L = {s}**{L} = {s ** L}")
    n_in = v + 1 if cfg.process == "masked" else v
    if seed is None:
        net = _backbone(cfg, n_in, v, d, s, L)
    else:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            net = _backbone(cfg, n_in, v, d, s, L)
    return MaskedDiffusion(net, v, d) if cfg.process == "masked" else UniformDiffusion(net, v, d)


def _backbone(cfg: ModelConfig, n_in: int, v: int, d: int, s: int, L: int) -> nn.Module:
    if cfg.backbone == "transformer":
        return Transformer(n_in, v, d, cfg.width, cfg.depth, cfg.heads, cfg.time_cond, cfg.dropout)
    return TreeConv(n_in, v, s, L, cfg.width, cfg.depth, cfg.time_cond, cfg.dropout)
