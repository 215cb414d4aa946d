"""Packs as the trials they hold, for every Tune logger callback: one run per member.

A pack (sweeps.pack_trial) is one Tune trial training K memsweep trials. Tune's logger callbacks (CSV, JSON,
TensorBoard, W&B, MLflow, a user's own) would see it as one run. `FanOut` wraps those callbacks: a lone trial's
events reach them unchanged, and a pack's events reach them once per member, as a `MemberTrial` named by the
member's store trial id, with the member's config and, at each evaluation, the member's own result (every curve
metric a lone trial reports, at the same step: its entry under `MEMBERS_KEY`, on the pack's Tune fields). A member
that stops early is completed at that evaluation; the rest complete with the pack, or err with it.

Each member logs into `<experiment>/<store trial id>/` (progress.csv, result.json, params.json, TensorBoard
events), beside Tune's own folder of the pack, which keeps the pack's result.json (what Tune's ResultGrid reads).
`wrap(callbacks)` is what the runner passes to Tune: the fan-out of Tune's default loggers and the caller's
callbacks, plus stand-ins that keep Tune from adding its default loggers a second time, unwrapped.
"""
from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from ray import tune
from ray.tune.logger import CSVLoggerCallback, JsonLoggerCallback, LoggerCallback, TBXLoggerCallback

from sweeps.packing import MEMBERS_KEY

# Keys of a pack's result that describe the pack, not a member (a member's own entry overwrites the rest): its
# copy_frac is the largest of its members', which a member without a metric at a step (one that failed or diverged
# there) must not inherit.
PACK_ONLY = (MEMBERS_KEY, "pack_id", "members_training", "copy_frac")
# A member entry that is `finished` with one of these `status` values left its pack by failing: its run errs.
FAILED = ("failed", "diverged")
_NO_DEFAULT_LOGGERS = "TUNE_DISABLE_AUTO_CALLBACK_LOGGERS"   # Tune's switch: "1" = no default loggers


def is_pack(trial: Any) -> bool:
    """Whether a Tune trial trains a pack (config = {"pack": {"pack_id", "members": [...]}})."""
    config = getattr(trial, "config", None)
    return isinstance(config, Mapping) and isinstance(config.get("pack"), Mapping)


class MemberTrial:
    """One member of a pack, as Tune's logger callbacks read a trial: `trial_id` and `str()` are the store's
    trial id, `config` = {"trial": its TrialConfig dict, the driver's keys}, `local_path` its own log folder;
    anything else (node, resources, storage) is the pack's."""

    def __init__(self, pack: Any, member: Mapping[str, Any]) -> None:
        self.pack = pack
        self.trial_id = str(member["trial_id"])
        self.custom_trial_name = self.trial_id
        self.config = {**{k: v for k, v in pack.config.items() if k != "pack"}, "trial": dict(member)}
        self.evaluated_params = {"trial": dict(member)}
        self.status = "PENDING"
        self.last_result: dict[str, Any] = {}
        self.error_file: str | None = None
        self.checkpoint = None          # the pack's checkpoints hold every member: none is this member's alone

    def __str__(self) -> str:
        return self.trial_id

    __repr__ = __str__

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_") or name == "pack":
            raise AttributeError(name)
        return getattr(self.pack, name)

    @property
    def local_path(self) -> str:
        """`<experiment>/<store trial id>`, made on first use (Tune's JSON logger writes params.json before it
        calls init_local_path; a real trial's folder exists by then)."""
        path = Path(self.pack.local_experiment_path, self.trial_id)
        path.mkdir(parents=True, exist_ok=True)
        return str(path)

    @property
    def path(self) -> str:
        return f"{str(self.pack.remote_experiment_path).rstrip('/')}/{self.trial_id}"

    def init_local_path(self) -> None:
        self.local_path  # noqa: B018 - makes the folder


def member_result(pack_result: Mapping[str, Any], entry: Mapping[str, Any], member: MemberTrial) -> dict[str, Any]:
    """A member's result: the pack's Tune fields (iteration, times, node), the member's own entry on top (step and
    every metric a lone trial reports), Tune's `trial_id` and `config` the member's."""
    out = {k: v for k, v in entry.items() if k != "finished"}
    out.update((k, v) for k, v in pack_result.items() if k not in PACK_ONLY and k not in out)
    out.update(trial_id=member.trial_id, config=member.config)
    return out


class FanOut(tune.Callback):
    """Tune callbacks that see a pack's members as trials (see the module docstring). `own`: callbacks that get
    a pack's own events as they are (Tune's JSON logger, so the pack's folder keeps the result.json Tune reads)."""

    def __init__(self, callbacks: Sequence[Any], own: Sequence[Any] = ()) -> None:
        self.callbacks = list(callbacks)
        self.own = list(own)
        self._members: dict[Any, dict[str, MemberTrial]] = {}

    # Tune pickles its RunConfig into the experiment folder: members refer to live Tune trials, leave them out.
    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_members": {}}

    # ---------------------------------------------------------------- members
    def members(self, trial: Any) -> dict[str, MemberTrial]:
        """{store trial id: MemberTrial} of a pack's Tune trial, made on first sight."""
        if trial not in self._members:
            self._members[trial] = {str(m["trial_id"]): MemberTrial(trial, m) for m in trial.config["pack"]["members"]}
        return self._members[trial]

    def _open(self, trial: Any) -> list[MemberTrial]:
        return [m for m in self.members(trial).values() if m.status not in ("TERMINATED", "ERROR")]

    def expand(self, trials: Iterable[Any]) -> list[Any]:
        """Tune's trial list with every pack replaced by its members."""
        return [m for t in trials for m in (self.members(t).values() if is_pack(t) else (t,))]

    def _call(self, hook: str, *, trials: list, targets: Sequence[Any] | None = None, **kw: Any) -> None:
        for cb in self.callbacks if targets is None else targets:
            getattr(cb, hook)(trials=trials, **kw)

    def _each(self, hook: str, iteration: int, trials: list, trial: Any, status: str | None, **kw: Any) -> None:
        """`hook` for a lone trial, or for each open member of a pack (setting its status first)."""
        if not is_pack(trial):
            self._call(hook, iteration=iteration, trials=trials, trial=trial, **kw)
            return
        self._call(hook, iteration=iteration, trials=trials, trial=trial, targets=self.own, **kw)
        expanded = self.expand(trials)
        for m in self._open(trial):
            if status == "ERROR":
                m.error_file = getattr(trial, "error_file", None)
            m.status = status or m.status
            self._call(hook, iteration=iteration, trials=expanded, trial=m, **kw)

    # ---------------------------------------------------------------- Tune hooks
    def setup(self, **info: Any) -> None:
        for cb in self.callbacks + self.own:
            cb.setup(**info)

    def on_step_begin(self, iteration: int, trials: list, **info: Any) -> None:
        self._call("on_step_begin", iteration=iteration, trials=self.expand(trials), **info)

    def on_step_end(self, iteration: int, trials: list, **info: Any) -> None:
        self._call("on_step_end", iteration=iteration, trials=self.expand(trials), **info)

    def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._each("on_trial_start", iteration, trials, trial, "RUNNING", **info)

    def on_trial_restore(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._each("on_trial_restore", iteration, trials, trial, "RUNNING", **info)

    def on_trial_save(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._each("on_trial_save", iteration, trials, trial, None, **info)

    def on_checkpoint(self, iteration: int, trials: list, trial: Any, checkpoint: Any, **info: Any) -> None:
        self._each("on_checkpoint", iteration, trials, trial, None, checkpoint=checkpoint, **info)

    def on_trial_recover(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._each("on_trial_recover", iteration, trials, trial, "PENDING", **info)

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._each("on_trial_complete", iteration, trials, trial, "TERMINATED", **info)

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._each("on_trial_error", iteration, trials, trial, "ERROR", **info)

    def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict, **info: Any) -> None:
        """A lone trial's result as it is; a pack's, once per member in it, each member that finished at this
        evaluation ended right after its last result: completed (an early stop, its budget), or erred when its
        entry's `status` is a failure (a member dropped from its pack)."""
        if not is_pack(trial):
            self._call("on_trial_result", iteration=iteration, trials=trials, trial=trial, result=result, **info)
            return
        self._call("on_trial_result", iteration=iteration, trials=trials, trial=trial, result=result,
                   targets=self.own, **info)
        members, expanded = self.members(trial), self.expand(trials)
        for tid, entry in (result.get(MEMBERS_KEY) or {}).items():
            m = members.get(tid)
            if m is None or m.status in ("TERMINATED", "ERROR") or not isinstance(entry, Mapping):
                continue
            m.status = "RUNNING"
            m.last_result = member_result(result, entry, m)
            self._call("on_trial_result", iteration=iteration, trials=expanded, trial=m, result=m.last_result,
                       **info)
            if entry.get("finished"):
                failed = entry.get("status") in FAILED
                m.status = "ERROR" if failed else "TERMINATED"
                self._call("on_trial_error" if failed else "on_trial_complete", iteration=iteration,
                           trials=expanded, trial=m, **info)

    def on_experiment_end(self, trials: list, **info: Any) -> None:
        self._call("on_experiment_end", trials=self.expand(trials), **info)
        self._call("on_experiment_end", trials=trials, targets=self.own, **info)


def log_dirs(results: Any) -> dict[str, str]:
    """{store trial id: its log folder (result.json, progress.csv, TensorBoard events)} of a Tune ResultGrid: a lone
    trial's Tune folder, a pack member's `<experiment>/<id>`."""
    from sweeps.packing import member_ids_of

    out: dict[str, str] = {}
    for r in results or ():
        ids = member_ids_of(r.config or {})
        if isinstance((r.config or {}).get("pack"), Mapping):
            root = str(r.path).rstrip("/").rsplit("/", 1)[0]
            out.update({tid: f"{root}/{tid}" for tid in ids})
        elif ids:
            out[ids[0]] = str(r.path)
    return out


class _StandIn(LoggerCallback):
    """Holds the place of one of Tune's default loggers among the top-level callbacks (Tune adds a default logger
    only where none of its class is there) and does nothing: the real one runs inside the fan-out."""

    def __init__(self) -> None:   # no writer, no tensorboardX import
        pass

    def log_trial_start(self, trial: Any) -> None:
        pass

    def log_trial_restore(self, trial: Any) -> None:
        pass

    def log_trial_save(self, trial: Any) -> None:
        pass

    def log_trial_result(self, iteration: int, trial: Any, result: dict) -> None:
        pass

    def log_trial_end(self, trial: Any, failed: bool = False) -> None:
        pass


class _CSVStandIn(_StandIn, CSVLoggerCallback):
    pass


class _JsonStandIn(_StandIn, JsonLoggerCallback):
    pass


class _TBXStandIn(_StandIn, TBXLoggerCallback):
    pass


def default_loggers(callbacks: Sequence[Any]) -> list[Any]:
    """Tune's default loggers (CSV, JSON, TensorBoard when tensorboardX imports) that Tune itself would add next to
    `callbacks`: none when TUNE_DISABLE_AUTO_CALLBACK_LOGGERS=1, and none of a class the caller brought."""
    if os.environ.get(_NO_DEFAULT_LOGGERS, "0") == "1":
        return []
    out = []
    for cls in (CSVLoggerCallback, JsonLoggerCallback, TBXLoggerCallback):
        if any(isinstance(c, cls) for c in callbacks):
            continue
        try:
            out.append(cls())
        except ImportError:       # tensorboardX missing: Tune would warn and go on without it
            continue
    return out


def wrap(callbacks: Sequence[Any]) -> list[Any]:
    """What the runner gives Tune in place of `callbacks`: one FanOut over Tune's default loggers and `callbacks`,
    plus the stand-ins that keep Tune from adding its default loggers outside it."""
    callbacks = list(callbacks)
    if os.environ.get(_NO_DEFAULT_LOGGERS, "0") == "1":
        return [FanOut(callbacks)]
    return [FanOut(default_loggers(callbacks) + callbacks, own=[JsonLoggerCallback()]),
            _CSVStandIn(), _JsonStandIn(), _TBXStandIn()]
