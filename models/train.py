"""The training loop for a pack of K members (K = 1: a lone trial): no Ray, no DataLoader.

Each member's training set lives on the device (padded into one (K, P_max, d) tensor, with its own P); its batches
are drawn by index from the member's own `torch.Generator`, which also drives its diffusion noise and dropout, so a
member's run is exactly reproducible and resumable, and the same in any pack. One optimizer step updates every
member: the summed loss gives each member the gradient of its own loss, gradients are clipped per member (each
member's global norm), and AdamW is elementwise, so it is per-member AdamW. Nothing in the inner loop syncs with the
host; losses are accumulated on device and read once per evaluation, at log-spaced steps. Members leave the pack at
an evaluation (`drop`), after which they cost nothing. Checkpoints hold every member's state keyed by member id.
"""
from __future__ import annotations

import contextlib
import copy
import dataclasses
import math
import os
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import torch
from torch import Tensor

from .config import TrainConfig, check_member_seeds
from .diffusion import Diffusion
from .memory import MemoryEstimate, estimate_memory
from .rng import MemberRNG


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
    """Trains a pack `model` of K members with AdamW, per-member gradient clipping and optional EMA.

    `train_tokens`: one (P_k, d) long tensor per member (a single (P, d) tensor for K = 1); `seeds`: each member's
    seed (its batch order, noise and dropout; default `[cfg.seed]` for K = 1); `member_ids`: the keys of its
    checkpointed state (default "0".."K-1"). `memory_budget` (bytes): refuse, before training, a pack whose
    estimated memory exceeds it, naming the pack size that fits. Every setting of `cfg` but the seed is shared.

    `run(on_eval)` calls `on_eval(trainer, step)` at every step of `eval_schedule`; at that moment `step_losses`
    (K, n) holds each member's per-step training losses since the previous evaluation and `train_losses` their
    means. The callback may `drop` members (they stop training at once) and returns True to end the whole run.
    """

    def __init__(self, model: Diffusion, train_tokens: Tensor | Sequence[Tensor], cfg: TrainConfig,
                 seeds: Sequence[int] | None = None, member_ids: Sequence[str] | None = None,
                 memory_budget: int | None = None) -> None:
        if not isinstance(cfg, TrainConfig):
            raise ValueError(f"cfg must be a TrainConfig, got {type(cfg).__name__}")
        self.cfg = cfg
        self.device = _check_device(cfg.device)
        K = model.K
        tokens = _member_tokens(train_tokens, K, model.v, model.d)
        self.seeds = check_member_seeds(_member_list("seeds", [cfg.seed] if seeds is None and K == 1 else seeds, K))
        self.member_ids = [str(m) for m in _member_list("member_ids", member_ids or [str(k) for k in range(K)], K)]
        if len(set(self.member_ids)) != K:
            raise ValueError(f"member_ids {self.member_ids} repeat an id: each member needs its own")
        self.P = [t.shape[0] for t in tokens]
        if not cfg.replacement and cfg.batch_size > min(self.P):
            k = self.P.index(min(self.P))
            raise ValueError(f"batch_size={cfg.batch_size} is larger than member {self.member_ids[k]}'s training set "
                             f"(P={self.P[k]}) while sampling without replacement: expected batch_size <= "
                             f"{min(self.P)}, or replacement=True")
        if memory_budget is not None:
            self.memory_estimate(model).check(memory_budget)

        self.model = model.to(self.device)
        self.tokens = torch.zeros(K, max(self.P), model.d, dtype=torch.long, device=self.device)
        for k, t in enumerate(tokens):
            self.tokens[k, :t.shape[0]] = t.to(self.device)
        self.params = [p for p in self.model.parameters() if p.requires_grad]
        # fused AdamW exists on CPU and CUDA since torch 2.4; it is one kernel instead of a Python loop per tensor.
        self.opt = torch.optim.AdamW(self.params, lr=cfg.lr, weight_decay=cfg.weight_decay, fused=True)
        self.ema_model: Diffusion | None = None
        if cfg.ema > 0:
            self.ema_model = copy.deepcopy(self.model).requires_grad_(False).eval()
        self._grads = member_grads
        if cfg.compile == "network":
            self.model.net.compile()
            if self.ema_model is not None:
                self.ema_model.net.compile()
        elif cfg.compile == "step":
            self._grads = compiled_member_grads()
        self.rng = MemberRNG(self.seeds, self.device)
        self.step = 0
        self.schedule = eval_schedule(cfg.steps, cfg.evals_per_decade, cfg.first_eval)
        self.step_losses = torch.empty(K, 0)
        self.train_losses = [float("nan")] * K
        self.histories: list[list[tuple[int, float]]] = [[] for _ in range(K)]  # (step, train_loss) per member
        self._perm: list[Tensor | None] = [None] * K
        self._pos = [0] * K

    # ------------------------------------------------------------------ members
    @property
    def K(self) -> int:
        """The number of members still training."""
        return len(self.member_ids)

    def drop(self, member_ids: Iterable[str]) -> None:
        """Remove members from the pack (e.g. early-stopped ones): their weights, optimizer state, generators and
        data are sliced away, so they cost nothing from the next step on. Call between steps (in `on_eval`)."""
        gone = {str(m) for m in member_ids}
        unknown = sorted(gone - set(self.member_ids))
        if unknown:
            raise ValueError(f"cannot drop {unknown}: not in this pack (members: {self.member_ids})")
        keep = [k for k, m in enumerate(self.member_ids) if m not in gone]
        if not keep:                   # nobody left: the run ends; the tensors are left as they were
            self.member_ids = []
            return
        self._select(keep)

    def _select(self, keep: list[int]) -> None:
        """Keep members `keep` (indices into the current pack), in that order, in every per-member structure."""
        idx = torch.tensor(keep, device=self.device)
        K = len(self.seeds)
        models = [self.model] + ([self.ema_model] if self.ema_model is not None else [])
        with torch.no_grad():
            for m in models:
                for p in m.parameters():
                    p.data = p.data.index_select(0, idx)
                    p.grad = None
            for state in self.opt.state.values():
                for key, val in state.items():
                    if torch.is_tensor(val) and val.dim() > 0 and val.shape[0] == K:
                        state[key] = val.index_select(0, idx)
        P = [self.P[k] for k in keep]
        self.tokens = self.tokens.index_select(0, idx)[:, :max(P)].contiguous()
        self.rng = self.rng.select(keep)
        for name in ("seeds", "member_ids", "P", "_perm", "_pos", "histories", "train_losses"):
            setattr(self, name, [getattr(self, name)[k] for k in keep])
        self.step_losses = self.step_losses[keep]

    def memory_estimate(self, model: Diffusion | None = None) -> MemoryEstimate:
        """Estimated bytes of this pack on its device: weights, gradients, AdamW state, EMA, activations, data."""
        return estimate_memory(model if model is not None else self.model, self.cfg.batch_size, max(self.P),
                               ema=self.cfg.ema > 0, autocast=self._autocast)

    # ------------------------------------------------------------------ helpers
    @property
    def eval_model(self) -> Diffusion:
        """The weights to evaluate: the EMA copy if `ema > 0`, else the trained model."""
        return self.ema_model if self.ema_model is not None else self.model

    def _autocast(self) -> contextlib.AbstractContextManager:
        if self.cfg.bf16:
            return torch.autocast(device_type="cuda", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def _batch(self) -> Tensor:
        """x0 (K, B, d): member k's batch drawn from its own training set with its own generator."""
        B, K = self.cfg.batch_size, self.K
        if self.cfg.replacement:
            idx = self.rng.randint(self.P, B)
        else:
            idx = torch.stack([self._next_epoch_slice(k) for k in range(K)])
        return self.tokens[torch.arange(K, device=self.device)[:, None], idx]

    def _next_epoch_slice(self, k: int) -> Tensor:
        B = self.cfg.batch_size
        if self._perm[k] is None or self._pos[k] + B > self.P[k]:   # new epoch; the last one's remainder is dropped
            self._perm[k] = self.rng.randperm(k, self.P[k])
            self._pos[k] = 0
        self._pos[k] += B
        return self._perm[k][self._pos[k] - B:self._pos[k]]

    def _clip(self) -> None:
        """Scale each member's gradients to global norm <= grad_clip (as `clip_grad_norm_` does for one model)."""
        clip_members([p.grad for p in self.params if p.grad is not None], self.cfg.grad_clip)

    def _train_step(self) -> Tensor:
        """One optimizer step of every member; returns the members' losses (K,) on the device. The random draws
        (batch, noise) are made here, eagerly, from the members' generators; `self._grads` (compiled with
        `compile: step`) is then a function of tensors only."""
        x0 = self._batch()
        noise = self.model.draw_noise(x0.shape[1], self.rng)
        self.opt.zero_grad(set_to_none=True)
        loss = self._grads(self.model, x0, noise, self.model._net_rng(self.rng), self.cfg.grad_clip,
                           self.cfg.bf16)
        self.opt.step()
        if self.ema_model is not None:
            torch._foreach_lerp_(list(self.ema_model.parameters()), self.params, 1.0 - self.cfg.ema)
        return loss

    # ------------------------------------------------------------------ training
    def run(self, on_eval: Callable[["Trainer", int], bool] | None = None) -> int:
        """Train up to `cfg.steps`, calling `on_eval(self, step)` at each scheduled evaluation; stop early when it
        returns True or no member is left. Returns the step reached. Resumes from `self.step` (e.g. after `load`)."""
        self.model.train()
        for target in [e for e in self.schedule if e > self.step]:
            if self.K == 0:
                break
            # Each step's losses go into one buffer: a list of the compiled step's outputs kept ~0.7 MB of
            # memory alive per step (K = 20 tree_conv; 7 GB between two late evaluations, Ray's OOM killer ended
            # the tails sweep; benchmarks/step_memory.py).
            losses = torch.empty(self.K, target - self.step, device=self.device)
            for i in range(target - self.step):
                losses[:, i] = self._train_step()
            self.step = target
            self.step_losses = losses.cpu()                                    # the one host sync per evaluation
            self.train_losses = self.step_losses.double().mean(1).tolist()
            for hist, loss in zip(self.histories, self.train_losses):
                hist.append((self.step, loss))
            if on_eval is not None and on_eval(self, self.step):
                break
        return self.step

    # ------------------------------------------------------------------ evaluation
    @torch.no_grad()
    def sample_members(self, n: int, steps: int | None, seeds: Sequence[int]) -> Tensor:
        """n generated strings per member (K, n, d) long on the device from `eval_model`; member k's are a
        function of its weights and `seeds[k]` alone."""
        rng = MemberRNG(check_member_seeds(_member_list("seeds", seeds, self.K)), self.device)
        m = self.eval_model
        was_training = m.training
        m.eval()
        try:
            with self._autocast():
                return m.sample(n, steps, rng)
        finally:
            m.train(was_training)

    @torch.no_grad()
    def sample_trajectories(self, n: int, seeds: Sequence[int]) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """`sample_members(n, None, seeds)` of a masked diffusion model with its trajectories recorded
        (`MaskedDiffusion.sample_trajectory`): strings, order, times, entropy, each (K, n, d) on the device."""
        rng = MemberRNG(check_member_seeds(_member_list("seeds", seeds, self.K)), self.device)
        m = self.eval_model
        if not hasattr(m, "sample_trajectory"):
            raise ValueError(f"sample_trajectories needs a masked diffusion model (exact sampler), got "
                             f"{type(m).__name__}")
        was_training = m.training
        m.eval()
        try:
            with self._autocast():
                return m.sample_trajectory(n, rng)
        finally:
            m.train(was_training)

    @torch.no_grad()
    def eval_losses(self, tokens: Tensor | Sequence[Tensor], seed: int | Sequence[int] = 0, repeats: int = 4,
                    chunk: int = 1024) -> list[float]:
        """Per member, the diffusion loss (the ELBO part) of `eval_model` on its held-out tokens (K, n, d),
        averaged over `repeats` noise draws from a generator seeded with `seed` (one, or one per member), so
        successive evaluations are comparable."""
        x = torch.stack([torch.as_tensor(t) for t in tokens]) if not torch.is_tensor(tokens) else tokens
        x = x.to(self.device, torch.long)
        if x.dim() != 3 or x.shape[0] != self.K or x.shape[2] != self.model.d or x.shape[1] < 1:
            raise ValueError(f"tokens has shape {tuple(x.shape)}: expected (K={self.K}, n >= 1, d={self.model.d})")
        seeds = [seed] * self.K if isinstance(seed, int) else seed
        rng = MemberRNG(check_member_seeds(_member_list("seeds", seeds, self.K)), self.device)
        m = self.eval_model
        was_training = m.training
        m.eval()
        total = torch.zeros(self.K, dtype=torch.float64, device=self.device)
        try:
            for _ in range(repeats):
                for i in range(0, x.shape[1], chunk):
                    xc = x[:, i:i + chunk]
                    with self._autocast():
                        total += m.loss(xc, rng, elbo=True).double() * xc.shape[1]
        finally:
            m.train(was_training)
        return (total / (repeats * x.shape[1])).tolist()

    # ------------------------------------------------------------------ a lone trial (K = 1)
    def _lone(self, what: str) -> None:
        if self.K != 1:
            raise ValueError(f"{what} is for a lone trial; this pack has K={self.K} members: use the per-member "
                             f"form (sample_members, eval_losses, train_losses, step_losses, histories)")

    @property
    def train_loss(self) -> float:
        self._lone("train_loss")
        return self.train_losses[0]

    @property
    def losses(self) -> Tensor:
        self._lone("losses")
        return self.step_losses[0]

    @property
    def history(self) -> list[tuple[int, float]]:
        self._lone("history")
        return self.histories[0]

    def sample(self, n: int, steps: int | None = None, seed: int = 0) -> Tensor:
        """A lone trial's n generated strings (n, d); deterministic given `seed`."""
        self._lone("sample")
        return self.sample_members(n, steps, [seed])[0]

    def eval_loss(self, tokens: Tensor, seed: int = 0, repeats: int = 4, chunk: int = 1024) -> float:
        """A lone trial's held-out diffusion loss on tokens (n, d)."""
        self._lone("eval_loss")
        return self.eval_losses(torch.as_tensor(tokens)[None], seed, repeats, chunk)[0]

    # ------------------------------------------------------------------ checkpoints
    def state_dict(self) -> dict:
        """Everything needed to continue bit-identically, per member (keyed by `members`): weights, optimizer,
        EMA, generator states, batch order, history; and the shared step."""
        return {
            "members": list(self.member_ids),
            "seeds": list(self.seeds),
            "step": self.step,
            "model": self.model.state_dict(),
            "opt": self.opt.state_dict(),
            "ema": self.ema_model.state_dict() if self.ema_model is not None else None,
            "gens": self.rng.get_state(),
            "perm": [p.cpu() if p is not None else None for p in self._perm],
            "pos": list(self._pos),
            "histories": [[list(h) for h in hist] for hist in self.histories],
            "config": dataclasses.asdict(self.cfg),
        }

    def save(self, path: str | os.PathLike) -> None:
        """Write a checkpoint atomically (temporary file, then rename)."""
        if self.K == 0:
            raise ValueError("no member left in the pack: nothing to checkpoint")
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        torch.save(self.state_dict(), tmp)
        os.replace(tmp, path)

    @staticmethod
    def checkpoint_members(path: str | os.PathLike) -> list[str]:
        """The member ids a checkpoint holds (to build the trainer that resumes them)."""
        return list(torch.load(path, map_location="cpu", weights_only=True)["members"])

    def load(self, path: str | os.PathLike) -> None:
        """Restore this trainer's members from a checkpoint written by `save` (`weights_only=True`). The
        checkpoint may hold more members (e.g. some since finished): each member is found by its id."""
        state = torch.load(path, map_location="cpu", weights_only=True)
        saved = list(state["members"])
        missing = [m for m in self.member_ids if m not in saved]
        if missing:
            raise ValueError(f"checkpoint {path} holds members {saved}; this pack's members {missing} are not in it")
        rows = [saved.index(m) for m in self.member_ids]
        seeds = [state["seeds"][r] for r in rows]
        if seeds != self.seeds:
            raise ValueError(f"checkpoint {path} has seeds {seeds} for members {self.member_ids}, "
                             f"but this pack has seeds {self.seeds}: not the same trials")
        if (state["ema"] is None) != (self.ema_model is None):
            raise ValueError(f"checkpoint {path} has ema={'off' if state['ema'] is None else 'on'} but this "
                             f"trainer has ema={self.cfg.ema}")
        K = len(saved)
        self.model.load_state_dict(_rows(state["model"], rows, K))
        opt = state["opt"]
        opt["state"] = {i: _rows(s, rows, K) for i, s in opt["state"].items()}
        self.opt.load_state_dict(opt)
        if self.ema_model is not None:
            self.ema_model.load_state_dict(_rows(state["ema"], rows, K))
        self.rng.set_state([state["gens"][r] for r in rows])
        self._perm = [state["perm"][r].to(self.device) if state["perm"][r] is not None else None for r in rows]
        self._pos = [int(state["pos"][r]) for r in rows]
        self.step = int(state["step"])
        self.histories = [[(int(s), float(v)) for s, v in state["histories"][r]] for r in rows]


def member_grads(model: Diffusion, x0: Tensor, noise: tuple[Tensor, ...], net_rng: MemberRNG | None,
                 grad_clip: float, bf16: bool) -> Tensor:
    """Every member's loss (K,) given its batch and noise, its gradients accumulated into the parameters and
    clipped per member: the part of a step `compile: step` compiles (forward, loss, backward, clipping)."""
    with torch.autocast(device_type="cuda", dtype=torch.bfloat16) if bf16 else contextlib.nullcontext():
        loss = model.loss_given(x0, noise, net_rng)
    loss.sum().backward()                      # member k's parameters only see member k's loss
    if grad_clip > 0:
        clip_members([p.grad for p in model.parameters() if p.grad is not None], grad_clip)
    return loss.detach()


def clip_members(grads: list[Tensor], max_norm: float) -> None:
    """Scale each member's gradients (leading axis K) to global norm <= max_norm, as `clip_grad_norm_` does for
    one model."""
    K = grads[0].shape[0]
    norm = torch.linalg.vector_norm(
        torch.stack([torch.linalg.vector_norm(g.reshape(K, -1), dim=1) for g in grads], dim=1), dim=1)  # (K,)
    coef = (max_norm / (norm + 1e-6)).clamp_(max=1.0)
    for g in grads:
        g.mul_(coef.view(K, *[1] * (g.dim() - 1)))


_COMPILED: dict[str, Callable] = {}


def compiled_member_grads(backend: str = "inductor") -> Callable:
    """`member_grads` under torch.compile, one wrapper per process: its compiled graphs serve every trainer the
    process builds (a new trial of the same shapes reuses them: the warm-up is paid once per worker, and across
    processes inductor's on-disk cache skips the code generation).

    Shapes: the member axis K is left to dynamo's automatic dynamic shapes, parameters included
    (`force_parameter_static_shapes` off): the first K compiles static, a second K (a member dropped, a resume
    with fewer members, another pack size) recompiles once with K symbolic, and every later K reuses that graph.
    Batch size and the model's sizes are fixed per trial. AdamW stays torch's fused kernel (one call already;
    compiling it multiplies the compile time and guards on the optimizer's state). `backend`: torch.compile's."""
    if backend not in _COMPILED:
        import torch._dynamo

        torch._dynamo.config.force_parameter_static_shapes = False
        _COMPILED[backend] = torch.compile(member_grads, backend=backend)
    return _COMPILED[backend]


def _rows(tensors: dict, rows: list[int], K: int) -> dict:
    """The members `rows` of every per-member tensor (leading axis K) of a state dict; other values as they are."""
    idx = torch.tensor(rows)
    return {k: v.index_select(0, idx) if torch.is_tensor(v) and v.dim() > 0 and v.shape[0] == K else v
            for k, v in tensors.items()}


def _check_device(device: str) -> torch.device:
    dev = torch.device(device)
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device={device!r} requested but CUDA is not available: use device='cpu'")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ValueError(f"device={device!r} is invalid: valid CUDA indices are 0..{torch.cuda.device_count() - 1}")
    return dev


def _member_list(name: str, values: Sequence | None, K: int) -> list:
    if values is None or isinstance(values, (str, bytes)) or not isinstance(values, Sequence):
        raise ValueError(f"{name}={values!r} is invalid: expected one per member, a sequence of length K={K}")
    if len(values) != K:
        raise ValueError(f"{name} has {len(values)} entries for a pack of K={K} members: expected one per member")
    return list(values)


def _member_tokens(train_tokens: Tensor | Sequence[Tensor], K: int, v: int, d: int) -> list[Tensor]:
    """Each member's training set as a (P_k, d) long tensor, validated: shapes, dtype, symbols in [0, v)."""
    if torch.is_tensor(train_tokens) and train_tokens.dim() == 2:
        train_tokens = [train_tokens]
    sets = _member_list("train_tokens", list(train_tokens) if not isinstance(train_tokens, Sequence)
                        else train_tokens, K)
    out = []
    for k, t in enumerate(sets):
        t = torch.as_tensor(t)
        who = "train_tokens" if K == 1 else f"member {k}'s train_tokens"
        if t.dim() != 2 or t.shape[1] != d or t.shape[0] < 1:
            raise ValueError(f"{who} has shape {tuple(t.shape)}: expected (P >= 1, d={d}); the members of a pack "
                             f"share one model shape")
        if t.dtype.is_floating_point or t.dtype == torch.bool or t.is_complex():
            raise ValueError(f"{who} has dtype {t.dtype}: expected integer token ids")
        lo, hi = int(t.min()), int(t.max())
        if lo < 0 or hi >= v:
            raise ValueError(f"{who} has values in [{lo}, {hi}]: expected symbols in [0, v={v})")
        out.append(t.long())
    return out
