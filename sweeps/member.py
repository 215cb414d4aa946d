"""What one trial does at each evaluation and around its attempt, whether it trains alone (sweeps.trial) or as a
member of a pack (sweeps.pack_trial): one code path for both.

- `sample_seed`: the seed of a trial's generations at a step (its own seed and the step only).
- `score`: generated strings -> the evaluation (every curve metric, the two losses).
- `MemberLog`: a trial's early-stop streak, objective curve and rows at each evaluation, and its checkpoint state.
- `Attempt`: one attempt of one trial in the store: its writer, the `samples` rows of a fresh start and its
  `trials` rows (running, then done / stopped / failed).
- `diverged_at`: per member, the step its training loss (or weights) first went non-finite: it is then stored
  `diverged` with that step and trains no further (its curves would be noise that looks like a trial that never
  memorized).
- `maybe_crash`: the test-only fault hook (SIGKILL once, right after an evaluation's rows are flushed); `maybe_fail`
  and `maybe_poison` make one member raise, or its weights non-finite, at a step.
"""
from __future__ import annotations

import math
import os
import signal
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from sweeps.rows import data_columns, eval_rows, samples_rows, slop_null_rows, slop_null_seed, trials_row
from sweeps.spec import TrialConfig

# Test-only fault hooks, read from the Tune config (never from TrialConfig): kill the trial's own process once,
# right after the rows of the first evaluation at or past this step are flushed (before its checkpoint).
CRASH_AT_STEP = "_crash_at_step"
CRASH_MARKER = "_crash_marker"
# Test-only member faults, {trial id: step}: the member raises at its first evaluation at or past the step
# (FAIL_MEMBER), or its weights become NaN right after that evaluation (POISON_MEMBER).
FAIL_MEMBER = "_fail_member"
POISON_MEMBER = "_poison_member"
HOOKS = (CRASH_AT_STEP, CRASH_MARKER, FAIL_MEMBER, POISON_MEMBER)
DIVERGED = "diverged"


def sample_seed(cfg: TrialConfig, step: int) -> int:
    """The generator seed of a trial's evaluation at `step`: its own seed and the step, never its pack mates."""
    return cfg.seed * 1_000_003 + step


def score(data: Any, gen: Any, train_loss: float, heldout_loss: float) -> Any:
    """The evaluation of generated strings `gen` (n, d) against the trial's training set, with its two losses."""
    from analysis.metrics import evaluate

    ev = evaluate(data.grammar, gen, data.index)
    ev.scalars["train_loss"] = float(train_loss)
    ev.scalars["heldout_loss"] = float(heldout_loss)
    return ev


class MemberLog:
    """One trial's record within an attempt: early stop (metric >= theta at `patience` evaluations in a row), the
    curve of `curve_metric` (Optuna's boundary objective), and its rows, written and flushed at each evaluation."""

    def __init__(self, cfg: TrialConfig, data: Any, writer: Any, curve_metric: str,
                 state: Mapping[str, Any] | None = None) -> None:
        state = state or {}
        self.cfg, self.data, self.writer, self.curve_metric = cfg, data, writer, curve_metric
        self.streak = int(state.get("streak", 0))
        self.curve: list[tuple[int, float]] = [tuple(x) for x in state.get("curve", [])]
        self.wall0 = time.time() - float(state.get("wall", 0.0))
        self.wall = float(state.get("wall", 0.0))
        self.stopped = False
        self.n_evals = 0

    def record(self, step: int, ev: Any) -> bool:
        """Update the stop rule and the curve with evaluation `ev` at `step`, write and flush its rows; True when
        the trial has met its stop criterion."""
        stop_value = float(ev.scalars.get(self.cfg.stop_metric, math.nan))
        self.curve.append((int(step), float(ev.scalars.get(self.curve_metric, math.nan))))
        theta = self.cfg.theta_stop
        self.streak = self.streak + 1 if (theta is not None and stop_value >= theta) else 0
        self.stopped = theta is not None and self.streak >= self.cfg.stop_patience
        self.wall = time.time() - self.wall0
        if self.writer is not None:
            for table, cols in eval_rows(step, self.wall, ev, self.data.grammar).items():
                self.writer.append(table, cols)
            self.writer.flush()
        self.n_evals += 1
        return self.stopped

    def state(self, step: int) -> dict[str, Any]:
        """What a checkpoint keeps of this record (JSON): streak, curve, wall time at the last evaluation, step."""
        return {"streak": self.streak, "curve": self.curve, "wall": self.wall, "step": int(step)}


class Attempt:
    """One attempt of one trial in the store: writes with a fresh attempt number and `resumed_from_step`, so the
    store's supersession rule keeps one row per (trial, step) whatever attempts died before it."""

    def __init__(self, cfg: TrialConfig, data: Any, resumed: int, t0: float) -> None:
        from analysis.store import Store

        store = Store(cfg.store)
        self.cfg, self.t0 = cfg, t0
        self.facts = data_columns(data)
        # the attempt counter orders this trial's attempts whatever the clocks of the nodes they ran on say
        self.writer = store.writer(cfg.sweep, cfg.trial_id, attempt_ns=time.time_ns(), resumed_from_step=resumed,
                                   attempt=store.next_attempt(cfg.sweep, cfg.trial_id))
        self.finished = False
        if resumed == 0:
            self.writer.append("samples", samples_rows(data))
            self.writer.append("slop_nulls", slop_null_rows(data, cfg.n_gen, seed=slop_null_seed(cfg)))
        self.writer.append("trials", trials_row(cfg, "running", t0, None, False, self.facts))
        self.writer.flush()

    def finish(self, status: str, final_step: int, error: str | None = None) -> None:
        """Write the attempt's last `trials` row (done / stopped / failed / diverged / interrupted, with why for
        failed and diverged) and flush; once."""
        if self.finished:
            return
        row = trials_row(self.cfg, status, self.t0, int(final_step), True, self.facts)
        row["error"] = [error]
        self.writer.append("trials", row)
        self.writer.flush()
        self.finished = True


def diverged_at(trainer: Any) -> list[int | None]:
    """Per member still training: the step of its first non-finite training loss since the last evaluation, else
    the current step when only its weights are non-finite, else None. One host sync for the whole pack."""
    import torch

    losses = trainer.step_losses                                    # (K, n): steps step-n+1 .. step
    K, n = losses.shape
    bad = ~torch.isfinite(losses)
    weights_ok = torch.stack([torch.isfinite(p.detach().reshape(K, -1)).all(1)
                              for p in trainer.model.parameters()]).all(0).cpu()
    first = bad.int().argmax(1)
    return [int(trainer.step) - n + 1 + int(first[k]) if bad[k].any() else
            (None if weights_ok[k] else int(trainer.step)) for k in range(K)]


def divergence(step: int) -> str:
    """The `error` a diverged trial is stored with."""
    return f"training diverged: non-finite loss or weights at step {step}"


def maybe_fail(hooks: Mapping[str, Any], trial_id: str, step: int) -> None:
    """Test hook: raise in member `trial_id` at its first evaluation at/after `hooks[FAIL_MEMBER][trial_id]`."""
    at = (hooks.get(FAIL_MEMBER) or {}).get(trial_id)
    if at is not None and step >= int(at):
        raise RuntimeError(f"injected fault in trial {trial_id} at step {step}")


def maybe_poison(hooks: Mapping[str, Any], trainer: Any, step: int, ids: list[str] | None = None) -> None:
    """Test hook: set the weights of each member listed in `hooks[POISON_MEMBER]` to NaN once its step is reached
    (its next training step's loss is then non-finite). `ids`: the trial id of each member (default member_ids)."""
    import torch

    ids = list(trainer.member_ids) if ids is None else ids
    for m, at in (hooks.get(POISON_MEMBER) or {}).items():
        if m in ids and step >= int(at):
            k = ids.index(m)
            with torch.no_grad():
                for p in trainer.model.parameters():
                    p[k] = float("nan")


def end_status(error: BaseException) -> str:
    """The `trials` status of an attempt that ended with `error`: `interrupted` when Tune stopped it (its session
    raises SystemExit at the next report after a Ctrl-C) or on KeyboardInterrupt, else `failed`."""
    return "interrupted" if isinstance(error, (SystemExit, KeyboardInterrupt)) else "failed"


def maybe_crash(hooks: Mapping[str, Any], step: int) -> None:
    """Test hook: SIGKILL this process once (marker file) at the first evaluation at/after `_crash_at_step`."""
    at, marker = hooks.get(CRASH_AT_STEP), hooks.get(CRASH_MARKER)
    if at is None or marker is None or step < int(at) or os.path.exists(marker):
        return
    Path(marker).write_text(str(step))
    os.kill(os.getpid(), signal.SIGKILL)
