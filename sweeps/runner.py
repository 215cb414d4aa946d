"""Run a sweep on Ray Tune: an embedded local Ray or an existing cluster, grid or Optuna-driven.

Resume, retry and idempotence (end to end):
- One driver per sweep: `run_sweep` holds the sweep's lease in the store (sweeps.lease) from start to end,
  renewed by a heartbeat; a second driver on the same sweep and store is refused (LeaseHeld, naming the holder)
  unless the lease is stale (not renewed for its TTL, or its holder's process on this machine is gone). The lease
  is released at the end, on errors and on Ctrl-C.
- The store is the source of truth. A trial whose `trials` row is `done`/`stopped` is never trained again: the
  runner leaves it out before Tune starts (counted as skipped), and `run_trial` itself re-checks the store when it
  starts. So running the same spec twice, with or without `resume`, only runs what is unfinished; to re-run
  finished trials use a new sweep name or a new store.
- Within one invocation, a trial whose process dies is retried by Tune (FailureConfig(max_failures=3)) from its
  latest Tune checkpoint (`tune.get_checkpoint()`), after a backoff (`retry_backoff_s`, doubling per retry, capped;
  a callback passes each start's number to the trial); the new attempt writes with `resumed_from_step` = that
  step, and the store drops the dead attempt's rows past it.
- Every invocation is a fresh Tune experiment (`<name>`, then `<name>-<time>`); Tune's experiment state
  (`tuner.pkl`, searcher state, `params.pkl`: pickles a store writer could replace) is never loaded. With
  `resume=True`, each unfinished trial continues from its newest checkpoint in the sweep's earlier experiments
  that the store covers without a gap (sweeps.recovery: directory listings and JSON only; the trainer state is
  loaded with `torch.load(weights_only=True)`), whether its earlier run was interrupted or errored; without one,
  or with `resume=False`, it starts from step 0 (`resumed_from_step=0` supersedes its partial rows).
- The store never keeps saying `running` for a trial no driver runs: at start the lease holder marks its sweep's
  `running` trials `failed` (their driver is gone), and after Tune returns it marks the trials Tune reports as
  errored `failed` (a killed process cannot), best effort: when the store is not writable, a message says so and
  the next run does it. Trial errors are returned (SweepResult.errors) and printed one line each; a failed
  end-of-run compaction is a message (SweepResult.messages), the rows stay intact.
- Optuna modes (sweeps.optuna_mode) continue their study in a journal file on every invocation; a point the
  sampler proposes again is not retrained: its trial finds itself finished in the store and reports the objective
  recomputed from its stored curve.
"""
from __future__ import annotations

import dataclasses
import functools
import math
import os
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ray import tune

from sweeps import fanout, optuna_mode, reaper, recovery
from sweeps.interrupt import SigintGuard
from sweeps.member import DIVERGED
from sweeps.lease import TTL_S, Lease
from sweeps.packing import member_ids_of, plan_packs
from sweeps.spec import SweepSpec, TrialConfig
from sweeps.spec.storage import is_local, local_path
from sweeps.trial import ATTEMPT, FINAL_STATUSES, RESUME_FROM, RETRY_BACKOFF, run_trial

MODES = ("grid", "optuna-grid", "optuna-boundary")
# Tune warns when checkpoints (one per evaluation) force frequent experiment snapshots; that is by design here.
os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
MAX_FAILURES = 3


@dataclasses.dataclass
class SweepResult:
    """Counts of one invocation: trials finished now, failed, skipped (finished before); where things are; what a
    Tune user reads: Tune's ResultGrid and each store trial id's log folder (members of packs included)."""

    n_done: int
    n_failed: int
    n_skipped: int
    experiment_path: str | None  # the Tune experiment directory (None when nothing had to run)
    store: str  # the store URI
    resumed: dict[str, int] = dataclasses.field(default_factory=dict)  # trial id -> checkpoint step it resumed from
    errors: dict[str, str] = dataclasses.field(default_factory=dict)   # trial id -> why it failed (last line)
    messages: list[str] = dataclasses.field(default_factory=list)      # what went wrong around the trials
    n_interrupted: int = 0  # trials stopped by Ctrl-C after they started (`interrupted` in the store; --resume)
    n_diverged: int = 0  # trials whose loss or weights went non-finite (stored `diverged`, never retrained)
    interrupted: bool = False  # the user stopped the sweep (Ctrl-C)
    n_not_started: int = 0  # trials a Ctrl-C left before they started
    grid: Any = None  # Tune's ResultGrid (one Result per Tune trial: a lone trial or a pack); None if nothing ran
    runs: dict[str, str] = dataclasses.field(default_factory=dict)  # store trial id -> its Tune log folder


# ---------------------------------------------------------------------------------------------------- helpers
def _resources(spec: SweepSpec) -> tuple[float, float]:
    """(cpu, gpu) per trial from the spec's resources (a mapping or an object with cpu/gpu)."""
    r = spec.resources
    get = r.get if isinstance(r, Mapping) else (lambda k, d=None: getattr(r, k, d))
    return float(get("cpu", 1) or 0), float(get("gpu", 0) or 0)


def _validate(spec: SweepSpec, workers: int | None) -> None:
    """Reject bad arguments before any work starts."""
    if not isinstance(spec, SweepSpec):
        raise TypeError(f"spec must be a SweepSpec (see sweeps.spec.load_spec), got {type(spec).__name__}")
    if workers is not None and (not isinstance(workers, int) or isinstance(workers, bool) or workers < 1):
        raise ValueError(f"workers must be a positive integer or None, got {workers!r}")
    if spec.mode not in MODES:
        raise ValueError(f"unknown sweep mode {spec.mode!r}; valid modes are {', '.join(MODES)}")
    cpu, gpu = _resources(spec)
    if cpu <= 0 and gpu <= 0:
        raise ValueError(f"a trial must request some resources; got cpu={cpu}, gpu={gpu}")


def default_storage_path(store: str) -> str:
    """Tune's storage path: `<store parent>/tune` (local path or URI). Must be shared on a multi-node cluster."""
    s = str(store).rstrip("/")
    if "://" in s and not s.startswith("file://"):
        return s.rsplit("/", 1)[0] + "/tune"
    local = Path(s[len("file://"):] if s.startswith("file://") else s).expanduser().resolve()
    return str(local.parent / "tune")


def finished_trials(store_uri: str, sweep: str, statuses: tuple[str, ...] = FINAL_STATUSES) -> set[str]:
    """Trial ids of `sweep` whose latest `trials` row has one of `statuses` (default: finished, never trained
    again: done, stopped, diverged); empty when the store has none."""
    return {tid for tid, (st, _, _) in trial_outcomes(store_uri, sweep).items() if st in statuses}


def trial_outcomes(store_uri: str, sweep: str) -> dict[str, tuple[str, int | None, str | None]]:
    """{trial id: (status, final step, error)} of the latest `trials` row of each trial of `sweep`."""
    from analysis.store import Store

    try:
        t = Store(store_uri).read("trials", sweep=sweep)
    except FileNotFoundError:
        return {}
    if t.num_rows == 0:
        return {}
    errors = t.column("error").to_pylist() if "error" in t.column_names else [None] * t.num_rows
    return {tid: (st, step, err) for tid, st, step, err in zip(
        t.column("trial_id").to_pylist(), t.column("status").to_pylist(), t.column("final_step").to_pylist(), errors)}


def _ensure_ray(address: str | None, workers: int | None, cpu: float) -> bool:
    """Connect to `address`, or start an embedded local Ray; True when this call started it (we shut it down)."""
    import ray

    if ray.is_initialized():
        return False
    if address:
        ray.init(address=address, log_to_driver=False)
        return False
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    _lock_local_ray()
    num_cpus = max(1, math.ceil(workers * cpu)) if workers else None
    ray.init(address="local", num_cpus=num_cpus, include_dashboard=False, log_to_driver=False)
    return True


def _session_dir() -> str:
    """The session directory of the Ray this process started (its processes' logs and sockets live there)."""
    import ray

    return str(ray._private.worker._global_node.get_session_dir_path())  # noqa: SLF001 - no public accessor


def _lock_local_ray() -> None:
    """Make the embedded Ray reachable from this machine only, and only with credentials (a Ray cluster runs the
    code its clients send): every Ray server binds 127.0.0.1 (Ray does so when the node's address is loopback, its
    default on macOS and Windows), and token authentication is on, with the user's token when RAY_AUTH_MODE=token,
    else a fresh one for this run, kept in the environment its processes inherit (no file is written)."""
    import secrets

    from ray._private import ray_constants
    from ray._raylet import Config

    os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"   # Ray's processes read it when they start
    ray_constants.ENABLE_RAY_CLUSTER = False               # this process read it when it imported ray
    if os.environ.get("RAY_AUTH_MODE", "").lower() != "token":
        os.environ.update(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=secrets.token_hex(32))
        os.environ.pop("RAY_AUTH_TOKEN_PATH", None)
    Config.initialize("")                                  # Ray's config cache sees the auth mode of now


def _trial_name(trial: Any) -> str:
    """Tune trial name: the memsweep trial id, or a pack's id (both stable across re-expansion)."""
    pack = trial.config.get("pack")
    if isinstance(pack, Mapping) and pack.get("pack_id"):
        return str(pack["pack_id"])
    return str(trial.config.get("trial", {}).get("trial_id", trial.trial_id))


def _trial_dirname(trial: Any) -> str:
    """Tune trial directory: memsweep trial id plus Tune's own id (unique even if an id repeats)."""
    return f"{_trial_name(trial)}_{trial.trial_id}"


def _experiment_name(storage_path: str, name: str) -> str:
    """A fresh Tune experiment name: `<name>` for the sweep's first, else `<name>-<time>[-k]` (never an existing
    one: Tune's state of an earlier experiment is never loaded, see the module docstring)."""
    import pyarrow.fs as pafs

    fs, root = pafs.FileSystem.from_uri(storage_path) if not is_local(storage_path) else \
        (pafs.LocalFileSystem(), str(local_path(storage_path)))
    sel = pafs.FileSelector(root.rstrip("/"), allow_not_found=True)
    taken = {i.base_name for i in fs.get_file_info(sel)}
    if not any(recovery.experiment_pattern(name).match(t) for t in taken):
        return name
    base = f"{name}-{time.strftime('%Y%m%d-%H%M%S')}"
    k, out = 1, base
    while out in taken:
        k += 1
        out = f"{base}-{k}"
    return out


class StartCounter(tune.Callback):
    """Before Tune restarts a failed trial, put that start's number (ATTEMPT) into its config, which Tune hands to
    the new trainable; run_trial waits `retry_delay(ATTEMPT)` before it starts."""

    def on_trial_recover(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        trial.config[ATTEMPT] = int(trial.num_failures) + 1


def _run_config(spec: SweepSpec, name: str, storage_path: str, progress: bool, n_total: int,
                max_failures: int = MAX_FAILURES, callbacks: Sequence[Any] = ()) -> Any:
    """RunConfig shared by every mode: retries (with backoff), latest-2 checkpoints, live progress, the caller's Tune
    callbacks and Tune's loggers (through sweeps.fanout: one run per trial, a pack's members included), quiet
    output."""
    callbacks = [StartCounter(), *fanout.wrap(callbacks)]
    if progress:
        from sweeps.progress import LiveProgress

        metric = spec.stop.metric if isinstance(spec.stop.metric, str) else "copy_frac"   # an axis: several
        callbacks.append(LiveProgress(total=n_total, title=spec.name, metric=metric, store=spec.store,
                                      sweep=spec.name))
    return tune.RunConfig(
        name=name, storage_path=storage_path, verbose=0, callbacks=callbacks,
        failure_config=tune.FailureConfig(max_failures=max_failures),
        checkpoint_config=tune.CheckpointConfig(num_to_keep=2),
    )


def _trainable(spec: SweepSpec) -> Any:
    """run_trial, or run_pack for a packed sweep, with the spec's resources (per trial, or per pack)."""
    cpu, gpu = _resources(spec)
    if spec.packed:
        from sweeps.pack_trial import run_pack

        return tune.with_resources(run_pack, {"cpu": cpu, "gpu": gpu})
    return tune.with_resources(run_trial, {"cpu": cpu, "gpu": gpu})


def _trial_ids(results: Any) -> list[str]:
    """memsweep trial ids of every trial (every member of every pack) in a ResultGrid."""
    return [tid for r in results for tid in member_ids_of(r.config or {})]


# ---------------------------------------------------------------------------------------------------- modes
def _resume_path(resume_from: Mapping[str, str], config: Mapping[str, Any]) -> str | None:
    """tune.sample_from hook (it takes the grid point's config; Tune deprecates the older spec dict): the
    checkpoint the trial (or pack) of this grid point continues from (None: from step 0)."""
    key = config["pack"]["pack_id"] if "pack" in config else config["trial"]["trial_id"]
    return resume_from.get(key)


def _run_grid(spec: SweepSpec, trials: list[TrialConfig], done_before: set[str], storage_path: str,
              workers: int | None, progress: bool, extra: Mapping[str, Any], resume_from: Mapping[str, str],
              max_failures: int, callbacks: Sequence[Any] = ()) -> tuple[Any, list[str]]:
    """Grid mode: every remaining trial once, through tune.grid_search, in a fresh Tune experiment."""
    todo = [t for t in trials if t.trial_id not in done_before]
    if not todo:
        return None, []
    if spec.packed:
        packs = plan_packs(trials, spec.pack.size, done_before)
        space = {"pack": tune.grid_search([p.to_dict() for p in packs]), **extra}
    else:
        space = {"trial": tune.grid_search([t.to_dict() for t in todo]), **extra}
    if resume_from:
        space[RESUME_FROM] = tune.sample_from(functools.partial(_resume_path, dict(resume_from)))
    name = _experiment_name(storage_path, spec.name)
    tuner = tune.Tuner(
        _trainable(spec), param_space=space,
        tune_config=tune.TuneConfig(max_concurrent_trials=workers, reuse_actors=True, trial_name_creator=_trial_name,
                                    trial_dirname_creator=_trial_dirname),
        run_config=_run_config(spec, name, storage_path, progress, len(todo), max_failures, callbacks),
    )
    return tuner.fit(), [t.trial_id for t in todo]


def _run_optuna(spec: SweepSpec, trials: list[TrialConfig], done_before: set[str], storage_path: str,
                workers: int | None, progress: bool, extra: Mapping[str, Any], resume_from: Mapping[str, str],
                max_failures: int, journal: str | None, callbacks: Sequence[Any] = ()) -> tuple[Any, list[str]]:
    """optuna-grid / optuna-boundary: OptunaSearch over a define-by-run space, persisted in a journal."""
    search, n = optuna_mode.searcher(spec, journal or optuna_mode.journal_path(spec, storage_path), done_before,
                                     extra, resume_from)
    if n == 0:
        return None, []
    name = _experiment_name(storage_path, spec.name)
    tuner = tune.Tuner(
        _trainable(spec),
        tune_config=tune.TuneConfig(search_alg=search, num_samples=n, max_concurrent_trials=workers, reuse_actors=True,
                                    trial_name_creator=_trial_name, trial_dirname_creator=_trial_dirname),
        run_config=_run_config(spec, name, storage_path, progress, n, max_failures, callbacks),
    )
    return tuner.fit(), []


# ---------------------------------------------------------------------------------------------------- entry
def run_sweep(spec: SweepSpec, workers: int | None = None, address: str | None = None, resume: bool = False,
              progress: bool = True, *, storage_path: str | None = None, journal: str | None = None,
              extra_config: Mapping[str, Any] | None = None, compact: bool = True, max_failures: int = MAX_FAILURES,
              retry_backoff_s: float | None = None, lease_ttl_s: float = TTL_S,
              callbacks: Sequence[Any] = ()) -> SweepResult:
    """Run every unfinished trial of `spec` on Ray Tune and return what happened (see the module docstring).

    workers: concurrent trials (and, for an embedded Ray, num_cpus = workers * cpu per trial); address: join an
    existing cluster ("auto" or "host:port") instead of starting one; resume: continue unfinished trials from
    their checkpoints in the sweep's earlier Tune experiments; storage_path: Tune's experiment root (default
    `<store parent>/tune`; must be shared on a cluster); journal: the Optuna journal file; extra_config: keys
    added to every trial's Tune config (test and debug hooks such as `_crash_at_step`); compact: merge the sweep's
    small store fragments at the end (readers return the same rows, only faster); max_failures: Tune's retries of a
    failed trial; retry_backoff_s: wait before a trial's first retry (doubling per retry, default
    sweeps.recovery.RETRY_BACKOFF_S); lease_ttl_s: how long this driver's lease outlives its last heartbeat;
    callbacks: Ray Tune callbacks added to the run (e.g. ray.air.integrations.wandb.WandbLoggerCallback; see the
    README). Ctrl-C stops the sweep gracefully (sweeps.interrupt): the result says `interrupted`, with the trials
    it stopped. Raises sweeps.lease.LeaseHeld when another live driver runs this sweep, StoreUnwritable when the store cannot
    take the lease.
    """
    _validate(spec, workers)
    if isinstance(max_failures, bool) or not isinstance(max_failures, int) or max_failures < 0:
        raise ValueError(f"max_failures must be an integer >= 0, got {max_failures!r}")
    trials = spec.trials()
    if not trials:
        raise ValueError(f"sweep {spec.name!r} expands to no trials")
    storage_path = storage_path or default_storage_path(spec.store)
    extra = dict(extra_config or {})
    if retry_backoff_s is not None:
        extra[RETRY_BACKOFF] = float(retry_backoff_s)
    if spec.packed and not address:
        _check_pack_memory(spec, trials)
    edited = _check_paths(spec, storage_path, journal)
    for msg in edited:
        print(f"memsweep: {msg}", file=sys.stderr)
    lease = Lease(spec.store, spec.name, ttl_s=lease_ttl_s).acquire()
    try:
        out = _run_leased(spec, trials, workers, address, resume, progress, storage_path, journal, extra, compact,
                          max_failures, callbacks)
    finally:
        lease.release()
    out.messages[:0] = edited
    return out


def _run_leased(spec: SweepSpec, trials: list[TrialConfig], workers: int | None, address: str | None, resume: bool,
                progress: bool, storage_path: str, journal: str | None, extra: dict[str, Any], compact: bool,
                max_failures: int, callbacks: Sequence[Any] = ()) -> SweepResult:
    """run_sweep's work while this driver holds the sweep's lease."""
    if is_local(storage_path):
        local_path(storage_path).mkdir(parents=True, exist_ok=True)
    messages = []
    _, msg = recovery.try_mark_failed(spec.store, spec.name, None, "left running by an earlier driver")
    messages += [msg] if msg else []
    done_before = finished_trials(spec.store, spec.name)
    unfinished = [t for t in trials if t.trial_id not in done_before]
    if spec.packed:
        packs = plan_packs(trials, spec.pack.size, done_before)
        found = recovery.resume_pack_checkpoints(spec.store, storage_path, spec.name, packs) if resume else {}
    else:
        found = recovery.resume_checkpoints(spec.store, storage_path, spec.name, unfinished) if resume else {}
    resume_from = recovery.checkpoint_map(found)
    started = _ensure_ray(address, workers, _resources(spec)[0])
    watchdog = reaper.watch(_session_dir()) if started else None   # ends Ray's processes if this driver is killed
    try:
        with SigintGuard() as guard:
            if spec.mode == "grid":
                results, planned = _run_grid(spec, trials, done_before, storage_path, workers, progress, extra,
                                             resume_from, max_failures, callbacks)
            else:
                results, planned = _run_optuna(spec, trials, done_before, storage_path, workers, progress, extra,
                                               resume_from, max_failures, journal, callbacks)
    finally:
        if started:
            import ray

            ray.shutdown()
            reaper.stop(watchdog)
    errors = _errors(results)
    outcomes = trial_outcomes(spec.store, spec.name)
    ran = {t.trial_id for t in unfinished}
    for tid, (status, step, why) in sorted(outcomes.items()):
        if tid in ran and status == "failed" and why and tid not in errors:   # a pack member that failed alone
            errors[tid] = why
        if tid in ran and status == DIVERGED:
            messages.append(f"trial {tid} diverged at step {step} (non-finite loss or weights); it is stored as "
                            "`diverged` and left out of fits and reports")
    if errors:
        _, msg = recovery.try_mark_failed(spec.store, spec.name, errors, "that Tune reported errored")
        messages += [msg] if msg else []
    if guard.hit:   # Tune has stopped every trial: those still `running` in the store were interrupted
        _, msg = recovery.try_mark_failed(spec.store, spec.name, None, "that Ctrl-C stopped", "interrupted")
        messages += [msg] if msg else []
    if compact:
        messages += _compact(spec)
    out = _result(spec, results, planned, done_before, trials, guard.hit)
    out.resumed = _resumed(spec, trials, done_before, found)
    out.errors, out.messages = errors, messages
    out.grid, out.runs = results, fanout.log_dirs(results)
    for tid, why in errors.items():
        print(f"memsweep: trial {tid} failed: {why}", file=sys.stderr)
    for msg in messages:
        print(f"memsweep: {msg}", file=sys.stderr)
    return out


def _resumed(spec: SweepSpec, trials: list[TrialConfig], done_before: set[str],
             found: Mapping[str, tuple[int, str]]) -> dict[str, int]:
    """{trial id: the checkpoint step it resumed from}; a pack's step for each of its unfinished members."""
    if not spec.packed:
        return {tid: step for tid, (step, _) in found.items()}
    return {tid: found[p.pack_id][0] for p in plan_packs(trials, spec.pack.size, done_before)
            if p.pack_id in found for tid in p.member_ids}


def _errors(results: Any) -> dict[str, str]:
    """{memsweep trial id: the last line of its error} for the trials Tune reports as errored."""
    out: dict[str, str] = {}
    for r in results or []:
        if r.error is None:
            continue
        err = getattr(r.error, "cause", None) or r.error
        lines = [ln for ln in str(err).strip().splitlines() if ln.strip()] or [type(err).__name__]
        for tid in member_ids_of(r.config or {}):   # a pack's error is each of its members' error
            out[tid] = lines[-1].strip()
    return out


def _compact(spec: SweepSpec) -> list[str]:
    """Merge the sweep's store fragments; a failure is a message (the fragments, and so every row, stay as they
    are), not an exception."""
    from analysis.store import Store

    try:
        Store(spec.store).compact(sweep=spec.name)
    except Exception as e:  # noqa: BLE001 - compaction is an optimization; what it could not merge stays readable
        return [f"could not compact store {spec.store} ({type(e).__name__}: {e}); nothing is lost, the readers "
                f"merge its fragments; run `memsweep compact {spec.store}` when it is writable"]
    return []


def _check_pack_memory(spec: SweepSpec, trials: list[TrialConfig]) -> None:
    """Refuse (SpecError, before Ray) packs whose memory estimate exceeds this machine's share for one pack,
    saying what pack size would fit."""
    from sweeps.packing import group_packs, memory_problems
    from sweeps.spec import SpecError
    from sweeps.spec.bounds import local_limits

    device, _ = local_limits(_resources(spec)[1])
    problems = memory_problems(group_packs(trials, spec.pack.size), device)
    if problems:
        raise SpecError(problems, spec.source)


def _check_paths(spec: SweepSpec, storage_path: str, journal: str | None) -> list[str]:
    """Refuse to start when Tune's directory or the Optuna journal cannot be created (a SpecError, before Ray);
    the effective spec is then recorded in the store (sweeps.spec.storage.record_spec). Returns a message naming
    what changed when the sweep ran before in this store with another effective spec."""
    from sweeps.spec import SpecError
    from sweeps.spec.storage import check_run_paths, record_spec, spec_changes

    journal = journal or (optuna_mode.journal_path(spec, storage_path) if spec.mode != "grid" else None)
    problems = check_run_paths(spec, storage_path, journal)
    edited: list[str] = []
    if not problems:
        try:
            before, changes = spec_changes(spec)
            if changes:
                edited.append(f"sweep {spec.name!r} ran before in this store with another spec ({before}): "
                              f"{'; '.join(changes)}. Its trials so far stay in the store beside the new ones; "
                              "`memsweep fit` and `report` keep trials of different effective specs apart (axis "
                              "values added or removed alone do not split a sweep; --pool-specs pools them)")
            record_spec(spec)
        except OSError as e:
            problems.append(f"store: cannot write the effective spec into {spec.store!r}: {e}")
    if problems:
        raise SpecError(problems, spec.source)
    return edited


def _result(spec: SweepSpec, results: Any, planned: list[str], done_before: set[str],
            trials: list[TrialConfig], interrupted: bool = False) -> SweepResult:
    """Count finished / failed / interrupted / skipped trials from the store (the source of truth) and the Tune
    results: after a Ctrl-C, an unfinished trial without a Tune error was interrupted, not failed."""
    ran = set(planned) | (set(_trial_ids(results)) if results is not None else set())
    ran -= done_before
    outcomes = trial_outcomes(spec.store, spec.name)       # one read of the store for every count below
    done_after = {tid for tid, (st, _, _) in outcomes.items() if st in FINAL_STATUSES}
    diverged = {tid for tid, (st, _, _) in outcomes.items() if st == DIVERGED}
    skipped = done_before & {t.trial_id for t in trials}   # optuna-boundary too: its finished points are in the store
    n_done = len(ran & done_after - diverged)
    unfinished = ran - done_after
    errored = {tid for r in results or () if r.error is not None for tid in member_ids_of(r.config or {})}
    failed = unfinished & errored if interrupted else unfinished
    stopped = ({tid for tid in unfinished - failed if outcomes.get(tid, ("",))[0] == "interrupted"} if interrupted
               else set())
    path = getattr(results, "experiment_path", None) if results is not None else None
    return SweepResult(n_done=n_done, n_failed=len(failed), n_skipped=len(skipped), experiment_path=path,
                       store=str(spec.store), n_interrupted=len(stopped), interrupted=interrupted,
                       n_diverged=len(ran & diverged), n_not_started=len(unfinished - failed - stopped))
