"""A pack: up to K compatible trials (sweeps.packing) trained as one Tune trial, one vectorized step for all.

Each member is the trial it would be alone (models.Trainer: its own data, init, batches, noise and sampler seeds)
and writes what a lone trial writes (sweeps.member: the same rows, attempt bookkeeping, stop rule and sample seeds),
so the store, its readers, fits and reports cannot tell a member from a lone trial.

At each evaluation, members whose loss or weights went non-finite are stored `diverged` (with the step) and dropped;
for every member still training: generate, score, write and flush its rows (a member whose scoring or writing raises
is stored `failed` with the error and dropped: its mates go on as a pack without it would); then the fault hook;
then members that met their stop rule are marked `stopped` in the store and dropped from the pack (they cost
no compute from the next step on); then one checkpoint of every remaining member (trainer state keyed by member
id, and per member its stop streak, curve and wall time, all `weights_only`-safe and JSON), then Tune is told.
A retried pack resumes from that checkpoint with the members the store does not list as finished; each writes a
new attempt with `resumed_from_step` = the checkpoint's step, so the store keeps one row per (trial, step).
"""
from __future__ import annotations

import dataclasses
import json
import os
import tempfile
import time
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from sweeps.member import (DIVERGED, HOOKS, Attempt, MemberLog, diverged_at, divergence, end_status, maybe_crash,
                           maybe_fail, maybe_poison, sample_seed, score)
from sweeps.packing import MEMBERS_KEY, Pack
from sweeps.overest_eval import attach, generate, measure, overest_due
from sweeps.rows import summary
from sweeps.trial import (RESUME_FROM, STATE_FILE, STORE_ID_KEY, TRAINER_FILE, ReportFn, TrialOutcome, build_data,
                          finished_ids, load_checkpoint, run_from, session_device, session_start, trial_extra,
                          tune_reporter)


def build_pack_trainer(pack: Pack, datas: Mapping[str, Any], device: str, memory_budget: int | None = None) -> Any:
    """The pack's model (member k initialized from member k's seed) and its Trainer on `device`; refuses, before
    training, a pack whose memory estimate exceeds `memory_budget` bytes, naming the pack size that fits."""
    from models import Trainer, build_model

    first = pack.members[0]
    g = first.grammar
    seeds = [t.train.seed for t in pack.members]
    model = build_model(first.model, g.v, g.d, g.s, g.L, seed=seeds)
    tokens = [torch.as_tensor(datas[t.trial_id].train, dtype=torch.long, device=device) for t in pack.members]
    return Trainer(model, tokens, dataclasses.replace(first.train, device=device), seeds=seeds,
                   member_ids=pack.member_ids, memory_budget=memory_budget)


def _restore(pack: Pack, datas: Mapping[str, Any], device: str, checkpoint_dir: str | None,
             memory_budget: int | None) -> tuple[Any, dict[str, Any], int]:
    """(trainer, per-member loop states, resume step): from `checkpoint_dir` when it holds every member, else fresh
    (step 0, with a warning when a checkpoint was given: starting over is always safe, resumed_from_step=0
    supersedes every earlier row)."""
    trainer = build_pack_trainer(pack, datas, device, memory_budget)
    if checkpoint_dir is None:
        return trainer, {}, 0
    try:
        state = load_checkpoint(trainer, checkpoint_dir)
    except Exception as e:  # noqa: BLE001 - unreadable, or without a member: torch/JSON/OS/ValueError alike
        warnings.warn(f"pack {pack.pack_id}: checkpoint {checkpoint_dir} cannot resume members {pack.member_ids} "
                      f"({type(e).__name__}: {e}); starting the pack over from step 0", RuntimeWarning, stacklevel=2)
        return build_pack_trainer(pack, datas, device, memory_budget), {}, 0
    return trainer, dict(state.get("members", {})), int(trainer.step)


class _PackLoop:
    """One attempt of a pack's evaluation loop: per-member records, finishing stopped members, checkpoints."""

    def __init__(self, pack: Pack, datas: Mapping[str, Any], attempts: Mapping[str, Attempt],
                 report: ReportFn | None, hooks: Mapping[str, Any], states: Mapping[str, Any]) -> None:
        self.pack, self.datas, self.attempts, self.report, self.hooks = pack, datas, attempts, report, hooks
        self.cfgs = {t.trial_id: t for t in pack.members}
        self.logs = {m: MemberLog(self.cfgs[m], datas[m], attempts[m].writer, "copy_frac", states.get(m))
                     for m in self.cfgs}
        self.last: dict[str, dict[str, Any]] = {}
        self.final: dict[str, int] = {}             # member -> step it left the pack at (stopped, failed, diverged)
        self.ended: dict[str, str] = {}             # member -> its status when it left the pack early
        self._heldout: dict[str, torch.Tensor] = {}

    def _end(self, trainer: Any, members: dict[str, tuple[str, int, str | None]]) -> None:
        """Finish members in the store ({member: (status, step, error)}) and drop them from the pack."""
        for m, (status, at, error) in members.items():
            self.attempts[m].finish(status, at, error)
            self.final[m], self.ended[m] = at, status
        trainer.drop(list(members))

    def on_eval(self, trainer: Any, step: int) -> bool:
        """Drop diverged members; evaluate every other member, write its rows (a member that raises fails alone);
        finish and drop stopped members; checkpoint; report."""
        bad = {m: (DIVERGED, at, divergence(at)) for m, at in zip(trainer.member_ids, diverged_at(trainer))
               if at is not None}
        self._end(trainer, bad)
        ids = list(trainer.member_ids)
        if not ids:
            if self.report is not None:
                self._report(trainer, step, list(bad))
            return False
        cfgs = [self.cfgs[m] for m in ids]
        for m in ids:
            if m not in self._heldout:
                self._heldout[m] = torch.as_tensor(self.datas[m].heldout, dtype=torch.long, device=trainer.device)
        due = overest_due(cfgs[0], trainer.schedule, step)
        gen, trajs = generate(trainer, cfgs, [sample_seed(c, step) for c in cfgs], due)
        held = trainer.eval_losses(torch.stack([self._heldout[m] for m in ids]))
        over = measure(trainer, cfgs, [self.datas[m] for m in ids], step, trajs) if due else None
        ended: dict[str, tuple[str, int, str | None]] = {}
        for k, m in enumerate(ids):
            try:
                maybe_fail(self.hooks, m, step)
                ev = score(self.datas[m], gen[k], trainer.train_losses[k], held[k])
                if over is not None:
                    attach(ev, over[k])
                if self.logs[m].record(step, ev):
                    ended[m] = ("stopped", step, None)
            except Exception as e:  # noqa: BLE001 - one member's fault is that member's, not its pack mates'
                ended[m] = ("failed", step, f"{type(e).__name__}: {e}")
                continue
            self.last[m] = summary(step, ev.scalars, trial_extra(self.cfgs[m], self.logs[m], {}))
        maybe_crash(self.hooks, step)
        self._end(trainer, ended)                   # finished in the store at once, then out of the pack
        maybe_poison(self.hooks, trainer, step)
        if self.report is not None:
            self._report(trainer, step, list(bad) + ids)
        return False                                # the run ends by itself when no member is left

    def _entry(self, m: str, step: int) -> dict[str, Any]:
        """Member `m`'s entry in the pack's report: what it would report alone at `step` (sweeps.fanout hands it to
        loggers as its own run), with `status` once it left the pack; one that failed or diverged at this evaluation
        has no metrics of it, its entry says only which member and why it ended (the fan-out ends its run in error)."""
        status = self.ended.get(m)
        if status is None:
            return self.last[m]
        if status == "stopped":
            return {**self.last[m], "status": status}
        return summary(step, {}, {STORE_ID_KEY: m, "stopped": False, "budget_steps": int(self.cfgs[m].train.steps),
                                  "status": status})

    def _report(self, trainer: Any, step: int, ids: list[str]) -> None:
        """Tell Tune: the pack's step, each member's state, and a checkpoint of the members left (if any)."""
        alive = list(trainer.member_ids)
        members = {m: {**self._entry(m, step), "finished": m not in alive or step >= self.cfgs[m].train.steps}
                   for m in ids}
        metrics = {"step": int(step), STORE_ID_KEY: self.pack.pack_id, "pack_id": self.pack.pack_id,
                   "members_training": len(alive), MEMBERS_KEY: members,
                   "copy_frac": max((self.last.get(m, {}).get("copy_frac", 0.0) for m in ids), default=0.0)}
        if not alive:
            self.report(metrics, None)
            return
        with tempfile.TemporaryDirectory(prefix="memsweep-pack-ckpt-") as d:
            trainer.save(os.path.join(d, TRAINER_FILE))
            state = {"step": int(step), "members": {m: self.logs[m].state(step) for m in alive}}
            Path(d, STATE_FILE).write_text(json.dumps(state))
            self.report(metrics, d)


def _held_by(pack: Pack, checkpoint_dir: str | None) -> Pack:
    """The members of `pack` that its checkpoint holds (the others left the pack before it was written: failed or
    diverged, which the store does not count as finished); the whole pack without a readable checkpoint."""
    try:
        held = json.loads(Path(checkpoint_dir, STATE_FILE).read_text())["members"] if checkpoint_dir else None
    except (OSError, ValueError, KeyError, TypeError):
        return pack
    if not isinstance(held, dict) or not held or not set(held) & set(pack.member_ids):
        return pack
    return pack.without(m for m in pack.member_ids if m not in held)


def train_pack(pack: Pack, report: ReportFn | None = None, checkpoint_dir: str | None = None, *,
               device: str = "cpu", hooks: Mapping[str, Any] | None = None,
               memory_budget: int | None = None) -> list[TrialOutcome]:
    """Train the pack's members to their budgets or early stops, Ray-free; every member writes to the store as a
    lone trial would. `checkpoint_dir` resumes the members from a pack checkpoint. One outcome per member."""
    t0 = time.time()
    pack = _held_by(pack, checkpoint_dir)
    datas = {t.trial_id: build_data(t) for t in pack.members}
    trainer, states, resumed = _restore(pack, datas, device, checkpoint_dir, memory_budget)
    attempts = {t.trial_id: Attempt(t, datas[t.trial_id], resumed, t0) for t in pack.members}
    loop = _PackLoop(pack, datas, attempts, report, dict(hooks or {}), states)
    try:
        final = int(trainer.run(loop.on_eval))
    except BaseException as e:
        for m, a in attempts.items():
            status = end_status(e)
            a.finish(status, loop.final.get(m, int(trainer.step)), f"{type(e).__name__}: {e}" if status == "failed"
                     else None)
        raise
    for m in trainer.member_ids:
        attempts[m].finish("done", final)
    wall = time.time() - t0
    return [TrialOutcome(m, loop.ended.get(m, "done"), loop.final.get(m, final), resumed,
                         loop.logs[m].n_evals, wall, loop.last.get(m, {})) for m in pack.member_ids]


def memory_budget(gpus: float) -> int | None:
    """Bytes this pack may use on its device: its share of this machine's GPU, else the host's memory."""
    from sweeps.spec.bounds import local_limits

    device, _ = local_limits(gpus)
    return int(device) if device else None


def run_pack(config: dict) -> None:
    """Tune function trainable of a pack: config = {"pack": Pack.to_dict(), optional driver keys and hooks}.

    Like sweeps.trial.run_trial: a retry waits its backoff, members the store lists as finished are left out
    (nothing left: nothing to do), the pack resumes from tune.get_checkpoint() on a retry, else from the driver's
    RESUME_FROM checkpoint, and store write failures are raised as StoreUnavailable."""
    from sweeps.recovery import resume_checkpoint

    if "pack" not in config:
        raise ValueError(f"run_pack needs config['pack'] (a Pack.to_dict()); got keys {sorted(config)}")
    pack = Pack.from_dict(config["pack"])
    attempt = session_start(config)
    pack = pack.without(finished_ids(list(pack.members)))
    if not pack.members:
        return
    first = pack.members[0]
    ckpt = resume_checkpoint(first, config.get(RESUME_FROM), owner_id=pack.pack_id)
    device, gpus = session_device()
    hooks = {k: config[k] for k in HOOKS if k in config}
    report = tune_reporter({"sweep": first.sweep, "trial_id": pack.pack_id, "members": pack.member_ids}, attempt)
    run_from(ckpt, first, lambda d: train_pack(pack, report, d, device=device, hooks=hooks,
                                               memory_budget=memory_budget(gpus)))
