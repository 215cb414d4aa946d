"""The training loop: no Ray, no DataLoader. The training set lives on the device as one token tensor and batches
are drawn by index from a dedicated `torch.Generator` (which also drives the diffusion noise), so a run is exactly
reproducible and resumable from a checkpoint. Nothing in the inner loop syncs with the host; losses are accumulated
on device and read once per evaluation, at log-spaced steps.
"""
from __future__ import annotations

import contextlib
import copy
import dataclasses
import math
import os
from collections.abc import Callable
from pathlib import Path

import torch
from torch import Tensor

from .config import TrainConfig
from .diffusion import Diffusion


def eval_schedule(steps: int, evals_per_decade: int, first_eval: int) -> list[int]:
    """Log-spaced evaluation steps: round(first_eval * 10**(k / evals_per_decade)), unique, ending at `steps`."""
    for name, val in (("steps", steps), ("evals_per_decade", evals_per_decade), ("first_eval", first_eval)):
        if isinstance(val, bool) or not isinstance(val, int) or val < 1:
            raise ValueError(f"{name}={val!r} is invalid: expected an integer >= 1")
    points, k = set(), 0
    while (x := int(math.floor(first_eval * 10 ** (k / evals_per_decade) + 0.5))) < steps:
        points.add(x)
        k += 1
    points.add(steps)
    return sorted(points)


class Trainer:
    """Trains a `Diffusion` model on `train_tokens` (P, d) long with AdamW, gradient clipping and optional EMA.

    `run(on_eval)` calls `on_eval(trainer, step)` at every step of `eval_schedule`; at that moment `losses` holds
    the per-step training losses since the previous evaluation (CPU float32 tensor) and `train_loss` their mean.
    """

    def __init__(self, model: Diffusion, train_tokens: Tensor, cfg: TrainConfig) -> None:
        if not isinstance(cfg, TrainConfig):
            raise ValueError(f"cfg must be a TrainConfig, got {type(cfg).__name__}")
        self.cfg = cfg
        self.device = torch.device(cfg.device)
        if self.device.type == "cuda":
            if not torch.cuda.is_available():
                raise ValueError(f"device={cfg.device!r} requested but CUDA is not available: use device='cpu'")
            if self.device.index is not None and self.device.index >= torch.cuda.device_count():
                raise ValueError(f"device={cfg.device!r} is invalid: valid CUDA indices are "
                                 f"0..{torch.cuda.device_count() - 1}")
        tokens = torch.as_tensor(train_tokens)
        if tokens.dim() != 2 or tokens.shape[1] != model.d or tokens.shape[0] < 1:
            raise ValueError(f"train_tokens has shape {tuple(tokens.shape)}: expected (P >= 1, d={model.d})")
        if tokens.dtype.is_floating_point or tokens.dtype == torch.bool or tokens.is_complex():
            raise ValueError(f"train_tokens has dtype {tokens.dtype}: expected integer token ids")
        lo, hi = int(tokens.min()), int(tokens.max())
        if lo < 0 or hi >= model.v:
            raise ValueError(f"train_tokens has values in [{lo}, {hi}]: expected symbols in [0, v={model.v})")
        P = tokens.shape[0]
        if not cfg.replacement and cfg.batch_size > P:
            raise ValueError(f"batch_size={cfg.batch_size} is larger than the training set (P={P}) while sampling "
                             f"without replacement: expected batch_size <= {P}, or replacement=True")

        self.model = model.to(self.device)
        self.train_tokens = tokens.to(self.device, torch.long).contiguous()
        self.params = [p for p in self.model.parameters() if p.requires_grad]
        # fused AdamW exists on CPU and CUDA since torch 2.4; it is one kernel instead of a Python loop per tensor.
        self.opt = torch.optim.AdamW(self.params, lr=cfg.lr, weight_decay=cfg.weight_decay, fused=True)
        self.ema_model: Diffusion | None = None
        if cfg.ema > 0:
            self.ema_model = copy.deepcopy(self.model).requires_grad_(False).eval()
            self._ema_params = list(self.ema_model.parameters())
        if cfg.compile:
            self.model.net.compile()
            if self.ema_model is not None:
                self.ema_model.net.compile()
        self.gen = torch.Generator(self.device)
        self.gen.manual_seed(cfg.seed)
        # dropout draws from the global RNG: the trainer keeps its own copy of that state, seeded from cfg.seed,
        # swaps it in while training and checkpoints it, so runs neither depend on nor disturb the caller's RNG.
        with self._fork_global_rng():
            torch.manual_seed(cfg.seed + 1)
            self._rng_state = self._get_global_rng()
        self.step = 0
        self.schedule = eval_schedule(cfg.steps, cfg.evals_per_decade, cfg.first_eval)
        self.losses = torch.empty(0)
        self.train_loss = float("nan")
        self.history: list[tuple[int, float]] = []          # (step, train_loss) at every evaluation
        self._perm: Tensor | None = None
        self._pos = 0

    # ------------------------------------------------------------------ properties and helpers
    @property
    def eval_model(self) -> Diffusion:
        """The weights to evaluate: the EMA copy if `ema > 0`, else the trained model."""
        return self.ema_model if self.ema_model is not None else self.model

    def _autocast(self) -> contextlib.AbstractContextManager:
        if self.cfg.bf16:
            return torch.autocast(device_type="cuda", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def _fork_global_rng(self) -> contextlib.AbstractContextManager:
        return torch.random.fork_rng(devices=[self.device] if self.device.type == "cuda" else [],
                                     device_type=self.device.type)

    def _get_global_rng(self) -> tuple[Tensor, Tensor | None]:
        cuda = torch.cuda.get_rng_state(self.device) if self.device.type == "cuda" else None
        return torch.get_rng_state(), cuda

    def _set_global_rng(self, state: tuple[Tensor, Tensor | None]) -> None:
        torch.set_rng_state(state[0])
        if state[1] is not None and self.device.type == "cuda":
            torch.cuda.set_rng_state(state[1], self.device)

    def _batch_indices(self) -> Tensor:
        B, P = self.cfg.batch_size, self.train_tokens.shape[0]
        if self.cfg.replacement:
            return torch.randint(P, (B,), generator=self.gen, device=self.device)
        if self._perm is None or self._pos + B > P:       # new epoch; the remainder of the last one is dropped
            self._perm = torch.randperm(P, generator=self.gen, device=self.device)
            self._pos = 0
        idx = self._perm[self._pos:self._pos + B]
        self._pos += B
        return idx

    def _train_step(self) -> Tensor:
        x0 = self.train_tokens[self._batch_indices()]
        with self._autocast():
            loss = self.model.loss(x0, generator=self.gen)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        if self.cfg.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(self.params, self.cfg.grad_clip, foreach=True)
        self.opt.step()
        if self.ema_model is not None:
            torch._foreach_lerp_(self._ema_params, self.params, 1.0 - self.cfg.ema)
        return loss.detach()

    # ------------------------------------------------------------------ training
    def run(self, on_eval: Callable[["Trainer", int], bool] | None = None) -> int:
        """Train up to `cfg.steps`, calling `on_eval(self, step)` at each scheduled evaluation; stop early when it
        returns True. Returns the step reached. Resumes from `self.step` (e.g. after `load`)."""
        self.model.train()
        pending = [e for e in self.schedule if e > self.step]
        for target in pending:
            with self._fork_global_rng():
                self._set_global_rng(self._rng_state)
                recent = [self._train_step() for _ in range(target - self.step)]
                self._rng_state = self._get_global_rng()
            self.step = target
            self.losses = torch.stack(recent).float().cpu()          # the one host sync per evaluation
            self.train_loss = float(self.losses.double().mean())
            self.history.append((self.step, self.train_loss))
            if on_eval is not None and on_eval(self, self.step):
                break
        return self.step

    # ------------------------------------------------------------------ evaluation
    @torch.no_grad()
    def sample(self, n: int, steps: int | None = None, seed: int = 0) -> Tensor:
        """n generated strings (n, d) long on the device from `eval_model`; deterministic given `seed`."""
        g = torch.Generator(self.device)
        g.manual_seed(seed)
        m = self.eval_model
        was_training = m.training
        m.eval()
        try:
            with self._autocast():
                return m.sample(n, steps, g)
        finally:
            m.train(was_training)

    @torch.no_grad()
    def eval_loss(self, tokens: Tensor, seed: int = 0, repeats: int = 4, chunk: int = 1024) -> float:
        """Diffusion loss (the ELBO part) of `eval_model` on held-out tokens, averaged over `repeats` noise draws
        from a generator seeded with `seed`, so successive evaluations are comparable."""
        tokens = torch.as_tensor(tokens).to(self.device, torch.long)
        if tokens.dim() != 2 or tokens.shape[1] != self.model.d or tokens.shape[0] < 1:
            raise ValueError(f"tokens has shape {tuple(tokens.shape)}: expected (n >= 1, d={self.model.d})")
        g = torch.Generator(self.device)
        g.manual_seed(seed)
        m = self.eval_model
        was_training = m.training
        m.eval()
        total = torch.zeros((), dtype=torch.float64, device=self.device)
        try:
            for _ in range(repeats):
                for i in range(0, tokens.shape[0], chunk):
                    x = tokens[i:i + chunk]
                    with self._autocast():
                        total += m.loss(x, generator=g, elbo=True).double() * x.shape[0]
        finally:
            m.train(was_training)
        return float(total) / (repeats * tokens.shape[0])

    # ------------------------------------------------------------------ checkpoints
    def state_dict(self) -> dict:
        """Everything needed to continue bit-identically: weights, optimizer, EMA, RNG states, step, batch order."""
        state = {
            "step": self.step,
            "model": self.model.state_dict(),
            "opt": self.opt.state_dict(),
            "ema": self.ema_model.state_dict() if self.ema_model is not None else None,
            "gen": self.gen.get_state(),
            "torch_rng": self._rng_state[0],                  # dropout draws from the global RNG
            "cuda_rng": self._rng_state[1],
            "perm": self._perm.cpu() if self._perm is not None else None,
            "pos": self._pos,
            "history": [list(h) for h in self.history],
            "config": dataclasses.asdict(self.cfg),
        }
        return state

    def save(self, path: str | os.PathLike) -> None:
        """Write a checkpoint atomically (temporary file, then rename)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        torch.save(self.state_dict(), tmp)
        os.replace(tmp, path)

    def load(self, path: str | os.PathLike) -> None:
        """Restore a checkpoint written by `save` (loaded with `weights_only=True`)."""
        state = torch.load(path, map_location="cpu", weights_only=True)
        self.model.load_state_dict(state["model"])
        self.opt.load_state_dict(state["opt"])
        if (state["ema"] is None) != (self.ema_model is None):
            raise ValueError(f"checkpoint {path} has ema={'off' if state['ema'] is None else 'on'} but this "
                             f"trainer has ema={self.cfg.ema}")
        if self.ema_model is not None:
            self.ema_model.load_state_dict(state["ema"])
        self.gen.set_state(state["gen"])
        self._rng_state = (state["torch_rng"], state["cuda_rng"] if self.device.type == "cuda" else None)
        self._perm = state["perm"].to(self.device) if state["perm"] is not None else None
        self._pos = int(state["pos"])
        self.step = int(state["step"])
        self.history = [(int(s), float(v)) for s, v in state["history"]]
