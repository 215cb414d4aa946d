"""One trial: train a diffusion model on RHM strings and stream its memorization curves into the store.

`train_trial` is the Ray-free loop (used by benchmarks and by `run_trial`); `run_trial` is the Tune function
trainable that wires it to `tune.report` / `tune.get_checkpoint`.

Retry and resume contract (see docs/ARCHITECTURE.md, "Retries"): every attempt writes with a fresh `attempt_ns`
and `resumed_from_step` = the step of the checkpoint it resumed from (0 from scratch). At each evaluation the rows
are flushed first, then the checkpoint is written, then Tune is told. A crash between any two of those leaves rows
newer than the last checkpoint; the retry resumes from that checkpoint, so the store's supersession rule drops them
and the retry writes them again: one row per (trial, step), no gaps.
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
import tempfile
import time
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from analysis.registry import OBJECTIVE_METRICS
from sweeps.member import (DIVERGED, HOOKS, Attempt, MemberLog, diverged_at, divergence, end_status, maybe_crash,
                           maybe_poison, sample_seed, score)
from sweeps.overest_eval import attach, generate, measure, overest_due
from sweeps.rows import data_columns, eval_rows, samples_rows, summary, trials_row  # noqa: F401 - re-exported
from sweeps.spec import TrialConfig

TRAINER_FILE = "trainer.pt"
STATE_FILE = "trial_state.json"
DONE_STATUSES = ("done", "stopped")          # trained to its budget or its stop rule: what fits and reports use
FINAL_STATUSES = (*DONE_STATUSES, DIVERGED)  # never trained again (a diverged trial would diverge again)
# The store's trial id in every Tune result (Tune overwrites a metric named `trial_id` with its own id).
STORE_ID_KEY = "memsweep_trial_id"

# Driver-set keys of the Tune config (sweeps.runner): a checkpoint to continue from when Tune has none (resume
# across drivers, see sweeps.recovery), this start's number within the driver's run (1 = first, set by the
# runner's retry callback), and the first retry's backoff in seconds (doubling per retry, capped).
RESUME_FROM = "_resume_from"
ATTEMPT = "_attempt"
RETRY_BACKOFF = "_retry_backoff_s"

ReportFn = Callable[[dict[str, Any], str], None]


@dataclasses.dataclass
class TrialOutcome:
    """What a finished (or early-stopped) trial returns to its caller."""

    trial_id: str
    status: str  # "done" | "stopped" | "diverged" | "skipped" (already finished in the store)
    final_step: int
    resumed_from_step: int
    n_evals: int  # evaluations run by this attempt
    wall_seconds: float  # this attempt, end to end
    summary: dict[str, Any]  # the last reported summary


@dataclasses.dataclass
class _Data:
    """Grammar and data sets of a trial, built deterministically from its config."""

    grammar: Any
    train: np.ndarray
    heldout: np.ndarray
    index: Any  # analysis.metrics.TrainIndex: the training-set side of every metric, computed once


# ---------------------------------------------------------------------------------------------------- setup
def build_data(cfg: TrialConfig) -> _Data:
    """Grammar (with the trial's tail on its levels), training set (unique or iid) and held-out set."""
    from rhm import Grammar, draw_seed, sample_heldout, sample_iid, sample_unique

    gspec = dataclasses.replace(cfg.grammar, levels=cfg.tail.level_dists(cfg.grammar.L))
    grammar = Grammar.from_spec(gspec)
    sample = sample_unique if cfg.unique else sample_iid
    seed = draw_seed(cfg.grammar.seed, cfg.data_seed, cfg.data_draw)     # both seeds: grammars are independent
    train = np.asarray(sample(grammar, cfg.P, seed), dtype=np.int64)
    heldout = np.asarray(sample_heldout(grammar, cfg.heldout, train, seed + 1), dtype=np.int64)
    from analysis.metrics import index_training_set

    return _Data(grammar, train, heldout, index_training_set(grammar, train, heldout=heldout))


def pick_device(gpus: float) -> str:
    """`cuda` when this trial was given a GPU and torch can see one, else `cpu`."""
    return "cuda" if gpus > 0 and torch.cuda.is_available() else "cpu"


def build_trainer(cfg: TrialConfig, data: _Data, device: str) -> Any:
    """The model and its Trainer on `device`, from the trial's model and train configs."""
    from models import Trainer, build_model

    g = cfg.grammar
    # seeded init: with Ray reusing worker processes the global RNG depends on which trials ran before this one
    model = build_model(cfg.model, g.v, g.d, g.s, g.L, seed=cfg.train.seed)
    train_cfg = dataclasses.replace(cfg.train, device=device)
    tokens = torch.as_tensor(data.train, dtype=torch.long, device=device)
    return Trainer(model, tokens, train_cfg)


# ---------------------------------------------------------------------------------------------------- evaluation
def evaluate_step(cfg: TrialConfig, trainer: Any, data: _Data, step: int, heldout: torch.Tensor | None = None) -> Any:
    """Generate `n_gen` strings, score them against the training set, and fill in the two losses.

    `heldout`: the held-out tokens already on the trainer's device (built here when not given)."""
    # sample_steps=None is the exact sampler (masked: one position per network call; uniform: all T steps):
    # K parallel masked steps would unmask tokens jointly-independently and cap even a perfect memorizer's copies.
    due, seed = overest_due(cfg, trainer.schedule, step), sample_seed(cfg, step)
    if due:         # the probe reads the generations' own trajectories (a Trainer's pack form, K = 1)
        gen, trajs = generate(trainer, [cfg], [seed], due)
        gen = gen[0]
    else:           # any generator with `sample`: a Trainer, or the nulls' stand-ins (analysis.nulls)
        gen = trainer.sample(cfg.n_gen, cfg.sample_steps, seed)
    if heldout is None:
        heldout = torch.as_tensor(data.heldout, dtype=torch.long, device=trainer.device)
    ev = score(data, gen, trainer.train_loss, trainer.eval_loss(heldout))
    if due:
        attach(ev, measure(trainer, [cfg], [data], step, trajs)[0])
    return ev


def boundary_objective(curve: list[tuple[int, float]], theta: float, target_step: int) -> tuple[float, float]:
    """optuna-boundary objective: (metric at target_step - theta)^2, the metric taken at the last evaluation at or
    before target_step (a trial early-stopped before it keeps its last value). Returns (value, objective)."""
    before = [v for s, v in curve if s <= target_step]
    value = before[-1] if before else (curve[0][1] if curve else math.nan)
    value = 0.0 if math.isnan(value) else float(value)
    return value, (value - theta) ** 2


# ---------------------------------------------------------------------------------------------------- loop
class _Loop:
    """State of one attempt's evaluation loop: the trial's record (MemberLog), checkpoints and reports."""

    def __init__(self, cfg: TrialConfig, data: _Data, writer: Any, report: ReportFn | None,
                 hooks: Mapping[str, Any], start_state: Mapping[str, Any]):
        self.cfg, self.data, self.report, self.hooks = cfg, data, report, hooks
        metric = (hooks.get("boundary") or {}).get("metric", "copy_frac")
        self.log = MemberLog(cfg, data, writer, metric, start_state)
        self.last: dict[str, Any] = {}
        self._heldout: torch.Tensor | None = None
        self.diverged: int | None = None   # the step its loss or weights went non-finite

    @property
    def stopped(self) -> bool:
        return self.log.stopped

    @property
    def n_evals(self) -> int:
        return self.log.n_evals

    def on_eval(self, trainer: Any, step: int) -> bool:
        """Evaluate, write rows, checkpoint, report; True when the early-stop criterion is met or training diverged
        (nothing is written for an evaluation of non-finite weights)."""
        (self.diverged,) = diverged_at(trainer)
        if self.diverged is not None:
            return True
        if self._heldout is None:  # once per attempt, not once per evaluation
            self._heldout = torch.as_tensor(self.data.heldout, dtype=torch.long, device=trainer.device)
        ev = evaluate_step(self.cfg, trainer, self.data, step, self._heldout)
        self.log.record(step, ev)
        maybe_crash(self.hooks, step)
        self.last = summary(step, ev.scalars, trial_extra(self.cfg, self.log, self.hooks))
        maybe_poison(self.hooks, trainer, step, [self.cfg.trial_id])
        if self.report is not None:
            with tempfile.TemporaryDirectory(prefix="memsweep-ckpt-") as d:
                trainer.save(os.path.join(d, TRAINER_FILE))
                Path(d, STATE_FILE).write_text(json.dumps(self.log.state(step)))
                self.report(self.last, d)
        return self.stopped


def trial_extra(cfg: TrialConfig, log: MemberLog, hooks: Mapping[str, Any]) -> dict[str, Any]:
    """Trial-level report fields: its store id, stop flag, budget, where it ran, the boundary objective if asked."""
    out: dict[str, Any] = {STORE_ID_KEY: cfg.trial_id, "stopped": log.stopped, "budget_steps": int(cfg.train.steps),
                           "node_id": _node_id()}
    b = hooks.get("boundary")
    if b:
        value, obj = boundary_objective(log.curve, float(b["theta"]), int(b["target_step"]))
        out.update(boundary_value=value, boundary_obj=obj)
    return out


def _node_id() -> str:
    """The Ray node this process runs on ('' outside Ray)."""
    try:
        import ray

        return ray.get_runtime_context().get_node_id() if ray.is_initialized() else ""
    except Exception:  # noqa: BLE001 - purely informational
        return ""


def load_checkpoint(trainer: Any, checkpoint_dir: str | None) -> dict[str, Any]:
    """Restore trainer state from a checkpoint directory; returns the loop state saved beside it ({} if none)."""
    if checkpoint_dir is None:
        return {}
    trainer.load(os.path.join(checkpoint_dir, TRAINER_FILE))
    state_path = Path(checkpoint_dir, STATE_FILE)
    return json.loads(state_path.read_text()) if state_path.exists() else {}


def _restore(cfg: TrialConfig, data: _Data, device: str, checkpoint_dir: str | None) -> tuple[Any, dict, int]:
    """A trainer resumed from `checkpoint_dir`, with its loop state and resume step; a fresh one (step 0) when there
    is no checkpoint or it cannot be read (e.g. torn by a node dying while it was persisted). Starting over is
    always safe: the new attempt's resumed_from_step=0 supersedes every row of the earlier attempts."""
    trainer = build_trainer(cfg, data, device)
    if checkpoint_dir is None:
        return trainer, {}, 0
    try:
        state = load_checkpoint(trainer, checkpoint_dir)
    except Exception as e:  # noqa: BLE001 - any unreadable checkpoint: torch/pickle/JSON/OS errors alike
        warnings.warn(f"trial {cfg.trial_id}: checkpoint {checkpoint_dir} is unreadable ({type(e).__name__}: {e}); "
                      "starting the trial over from step 0", RuntimeWarning, stacklevel=2)
        return build_trainer(cfg, data, device), {}, 0
    return trainer, state, int(trainer.step)


def train_trial(trial_config: TrialConfig, report: ReportFn | None = None, checkpoint_dir: str | None = None, *,
                write_store: bool = True, device: str = "cpu", hooks: Mapping[str, Any] | None = None
                ) -> TrialOutcome:
    """Run one trial to its budget or early stop, Ray-free.

    report(metrics, checkpoint_dir) is called after each evaluation's rows are flushed, with a directory holding
    the trainer state (only saved when a report callback is given). checkpoint_dir resumes from such a state.
    write_store=False skips every store write (the bare loop the benchmarks compare against).
    """
    cfg = trial_config
    t0 = time.time()
    data = build_data(cfg)
    trainer, state, resumed = _restore(cfg, data, device, checkpoint_dir)
    hooks = dict(hooks or {})
    if not write_store:
        return _run_loop(cfg, data, trainer, None, report, hooks, state, resumed, t0)
    attempt = Attempt(cfg, data, resumed, t0)
    try:
        out = _run_loop(cfg, data, trainer, attempt.writer, report, hooks, state, resumed, t0)
    except BaseException as e:
        status = end_status(e)
        attempt.finish(status, int(trainer.step), f"{type(e).__name__}: {e}" if status == "failed" else None)
        raise
    attempt.finish(out.status, out.final_step, divergence(out.final_step) if out.status == DIVERGED else None)
    return out


def _run_loop(cfg: TrialConfig, data: _Data, trainer: Any, writer: Any, report: ReportFn | None,
              hooks: dict[str, Any], state: dict[str, Any], resumed: int, t0: float) -> TrialOutcome:
    """Drive Trainer.run with the evaluation callback and package the outcome."""
    loop = _Loop(cfg, data, writer, report, hooks, state)
    final = int(trainer.run(loop.on_eval))
    if loop.diverged is not None:
        final, status = loop.diverged, DIVERGED
    else:
        status = "stopped" if loop.stopped else "done"
    return TrialOutcome(cfg.trial_id, status, final, resumed, loop.n_evals, time.time() - t0, loop.last)


# ---------------------------------------------------------------------------------------------------- Tune
def finished_in_store(cfg: TrialConfig) -> bool:
    """True when the store already holds a done/stopped `trials` row for this trial (the source of truth)."""
    return cfg.trial_id in finished_ids([cfg])


def finished_ids(cfgs: list[TrialConfig]) -> set[str]:
    """The ids among `cfgs` (trials of one sweep and store) that the store lists as finished (FINAL_STATUSES)."""
    from analysis.store import Store

    if not cfgs:
        return set()
    try:
        rows = Store(cfgs[0].store).read("trials", sweep=cfgs[0].sweep, trials=[c.trial_id for c in cfgs],
                                         columns=["trial_id", "status"])
    except FileNotFoundError:
        return set()
    return {t for t, s in zip(rows.column("trial_id").to_pylist(), rows.column("status").to_pylist())
            if s in FINAL_STATUSES}


def stored_summary(cfg: TrialConfig, boundary: Mapping[str, Any]) -> dict[str, Any]:
    """The final report of a finished trial rebuilt from its stored curve (for a point Optuna proposes again)."""
    from analysis.store import Store

    metric = boundary.get("metric", "copy_frac")
    t = Store(cfg.store).read("curves", sweep=cfg.sweep, trials=[cfg.trial_id]).sort_by("step")
    steps = t.column("step").to_pylist()
    last = {k: t.column(k).to_pylist()[-1] for k in (*OBJECTIVE_METRICS, "valid_frac")} if steps else {}
    value, obj = boundary_objective(list(zip(steps, t.column(metric).to_pylist())), float(boundary["theta"]),
                                    int(boundary["target_step"]))
    return summary(steps[-1] if steps else 0, last, {STORE_ID_KEY: cfg.trial_id, "from_store": True,
                                                     "boundary_value": value, "boundary_obj": obj})


def _allotted() -> tuple[float, float]:
    """CPUs and GPUs Tune gave this trial (1 CPU, 0 GPU when unknown)."""
    from ray import tune

    try:
        res = tune.get_context().get_trial_resources().required_resources
        return float(res.get("CPU", 1)), float(res.get("GPU", 0))
    except Exception:  # noqa: BLE001 - outside a Tune session
        return 1.0, 0.0


def session_start(config: Mapping[str, Any]) -> int:
    """This start's number (ATTEMPT); a retry first waits its backoff (`retry_delay`)."""
    from sweeps.recovery import RETRY_BACKOFF_S, retry_delay

    attempt = int(config.get(ATTEMPT, 1))
    time.sleep(retry_delay(attempt, float(config.get(RETRY_BACKOFF, RETRY_BACKOFF_S))))
    return attempt


def session_device() -> tuple[str, float]:
    """(device, GPU share) of this Tune trial, with torch's threads set to the CPUs it was given."""
    cpus, gpus = _allotted()
    torch.set_num_threads(max(1, int(cpus)))
    return pick_device(gpus), gpus


def tune_reporter(owner: Mapping[str, Any], attempt: int) -> ReportFn:
    """report(metrics, checkpoint directory or None) for Tune; the directory gets `owner` as owner.json, which lets
    a later driver check whose checkpoint it is (sweeps.recovery)."""
    from ray import tune

    from sweeps.recovery import OWNER_FILE

    def report(metrics: dict[str, Any], directory: str | None) -> None:
        if directory is None:
            tune.report({**metrics, "attempt": attempt})
            return
        Path(directory, OWNER_FILE).write_text(json.dumps(dict(owner)))
        tune.report({**metrics, "attempt": attempt}, checkpoint=tune.Checkpoint.from_directory(directory))
    return report


def run_from(ckpt: Any, cfg: TrialConfig, train: Callable[[str | None], Any]) -> None:
    """train(checkpoint directory or None), with a store write failure restated as StoreUnavailable."""
    from sweeps.recovery import store_error

    try:
        if ckpt is None:
            train(None)
            return
        with ckpt.as_directory() as d:
            train(d)
    except OSError as e:
        err = store_error(cfg, e)
        if err is e:
            raise
        raise err from e


def run_trial(config: dict) -> None:
    """Tune function trainable: config = {"trial": TrialConfig.to_dict(), optional driver keys and hooks}.

    A retry (ATTEMPT > 1) first waits `retry_delay`. Resumes from tune.get_checkpoint() on a retry, else from the
    driver's RESUME_FROM checkpoint; skips (reporting nothing, or for optuna-boundary the summary rebuilt from the
    store) a trial the store says is finished. Store write failures are raised as StoreUnavailable.
    """
    from ray import tune

    from sweeps.recovery import resume_checkpoint

    if "trial" not in config:
        raise ValueError(f"run_trial needs config['trial'] (a TrialConfig.to_dict()); got keys {sorted(config)}")
    cfg = TrialConfig.from_dict(config["trial"])
    attempt = session_start(config)
    if finished_in_store(cfg):  # the store is the source of truth: a finished trial is never trained again
        if "boundary" in config:  # Optuna needs the objective of a re-proposed point: recompute it, no retraining
            tune.report(stored_summary(cfg, config["boundary"]))
        return
    ckpt = resume_checkpoint(cfg, config.get(RESUME_FROM))
    device, _ = session_device()
    hooks = {k: config[k] for k in (*HOOKS, "boundary") if k in config}
    report = tune_reporter({"sweep": cfg.sweep, "trial_id": cfg.trial_id}, attempt)
    run_from(ckpt, cfg, lambda d: train_trial(cfg, report, d, device=device, hooks=hooks))
