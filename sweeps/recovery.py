"""What a new driver takes over from earlier ones: unfinished trials' checkpoints, and `running` rows left behind.

Resume never unpickles anything from Tune's experiment directories (`tuner.pkl`, `params.pkl`, searcher and
experiment state): a store writer could have replaced them, and unpickling runs code. It only lists directories,
reads JSON (`params.json`, `trial_state.json`, `owner.json`) and hands the chosen checkpoint's path to the trial,
which loads the trainer with `torch.load(weights_only=True)` (see sweeps.trial).

A checkpoint is `<storage>/<experiment>/<trial id>_<tune id>/checkpoint_<n>/` holding `trainer.pt`,
`trial_state.json` and (since this module) `owner.json`. For each unfinished trial the candidates are its
complete checkpoints in the sweep's experiments (`<name>` and `<name>-<time>[-<k>]`) whose trial directory and
owner (or, for older checkpoints, `params.json`) name this trial. The newest one (latest experiment, then highest
checkpoint number) wins, provided the store still holds every scheduled evaluation up to its step: resuming from
it then leaves no gap (the store supersedes the dead attempts' rows past that step, and the new attempt rewrites
them). A trial with no such checkpoint starts from step 0.
"""
from __future__ import annotations

import json
import re
import time
import warnings
from collections.abc import Iterable, Mapping
from typing import Any

import pyarrow.fs as pafs

from sweeps.spec import TrialConfig

OWNER_FILE = "owner.json"
CHECKPOINT_FILES = ("trainer.pt", "trial_state.json")
_CKPT = re.compile(r"checkpoint_(\d+)$")
RETRY_BACKOFF_S = 10.0  # wait before a trial's first retry; doubles per retry, capped at MAX_BACKOFF_S
MAX_BACKOFF_S = 120.0


def experiment_pattern(name: str) -> re.Pattern:
    """Names of the Tune experiments of sweep `name` (the runner's `<name>` and `<name>-YYYYmmdd-HHMMSS[-k]`)."""
    return re.compile(re.escape(name) + r"(-\d{8}-\d{6}(-\d+)?)?$")


def _fs(path: str) -> tuple[pafs.FileSystem, str]:
    if "://" in path:
        return pafs.FileSystem.from_uri(path)
    return pafs.LocalFileSystem(), path


def _uri(storage_path: str, fs_path: str) -> str:
    """A path as `run_trial` can open it: local paths as they are, others with the storage's scheme."""
    if "://" not in storage_path or storage_path.startswith("file://"):
        return fs_path
    return f"{storage_path.split('://', 1)[0]}://{fs_path}"


def _dirs(fs: pafs.FileSystem, path: str) -> list[pafs.FileInfo]:
    sel = pafs.FileSelector(path, recursive=False, allow_not_found=True)
    return [i for i in fs.get_file_info(sel) if i.type == pafs.FileType.Directory]


def _json(fs: pafs.FileSystem, path: str) -> Any:
    try:
        with fs.open_input_stream(path) as f:
            return json.loads(f.read().decode())
    except (OSError, ValueError):
        return None


def _owned_by(fs: pafs.FileSystem, trial_dir: str, ckpt_dir: str, trial_id: str) -> bool:
    """The checkpoint's owner.json (or, for checkpoints written before it existed, its trial's params.json) names
    `trial_id`."""
    owner = _json(fs, f"{ckpt_dir}/{OWNER_FILE}")
    if isinstance(owner, dict):
        return owner.get("trial_id") == trial_id
    params = _json(fs, f"{trial_dir}/params.json")
    return isinstance(params, dict) and isinstance(params.get("trial"), dict) \
        and params["trial"].get("trial_id") == trial_id


def checkpoint_candidates(storage_path: str, name: str, trial_ids: Iterable[str]) -> dict[str, list[tuple[int, str]]]:
    """{trial id: [(step, path), ...] newest first} of the complete checkpoints each trial owns."""
    want = set(trial_ids)
    fs, root = _fs(storage_path)
    root = root.rstrip("/")
    pattern = experiment_pattern(name)
    experiments = sorted(i.base_name for i in _dirs(fs, root) if pattern.match(i.base_name))
    found: dict[str, list[tuple[tuple, int, str]]] = {}
    for rank, exp in enumerate(experiments):
        for tdir in _dirs(fs, f"{root}/{exp}"):
            # `<trial id>_<tune id>`; Tune's ids are `<5 hex>_<5 digits>` (older runs: one part)
            n = tdir.base_name
            tid = next((p for p in (n.rsplit("_", 2)[0], n.rsplit("_", 1)[0]) if p in want), None)
            if tid is None:
                continue
            for cdir in _dirs(fs, tdir.path):
                m = _CKPT.match(cdir.base_name)
                if not m:
                    continue
                files = {i.base_name for i in fs.get_file_info(pafs.FileSelector(cdir.path, allow_not_found=True))
                         if i.type == pafs.FileType.File}
                state = _json(fs, f"{cdir.path}/trial_state.json") if set(CHECKPOINT_FILES) <= files else None
                if not isinstance(state, dict) or not isinstance(state.get("step"), int):
                    continue
                if not _owned_by(fs, tdir.path, cdir.path, tid):
                    continue
                found.setdefault(tid, []).append(((rank, int(m.group(1))), state["step"], _uri(storage_path,
                                                                                                cdir.path)))
    return {tid: [(step, path) for _, step, path in sorted(c, reverse=True)] for tid, c in found.items()}


def resume_checkpoints(store_uri: str, storage_path: str, name: str, trials: Iterable[TrialConfig]
                       ) -> dict[str, tuple[int, str]]:
    """{trial id: (step, checkpoint path)} for the given (unfinished) trials that can continue from a checkpoint:
    the newest one whose step the store covers without a gap (see the module docstring)."""
    from models import eval_schedule

    trials = list(trials)
    cands = checkpoint_candidates(storage_path, name, [t.trial_id for t in trials])
    if not cands:
        return {}
    stored = _stored_steps(store_uri, name, list(cands))
    out = {}
    for t in trials:
        have = stored.get(t.trial_id, set())
        schedule = eval_schedule(t.train.steps, t.train.evals_per_decade, t.train.first_eval)
        for step, path in cands.get(t.trial_id, []):
            if step > 0 and all(s in have for s in schedule if s <= step):
                out[t.trial_id] = (step, path)
                break
    return out


def resume_pack_checkpoints(store_uri: str, storage_path: str, name: str, packs: Iterable[Any]
                            ) -> dict[str, tuple[int, str]]:
    """{pack id: (step, checkpoint path)} for packs (sweeps.packing.Pack, finished members left out) that can
    continue from a pack checkpoint: the newest one that holds every member still to train (its trial_state.json
    lists them) and whose step the store covers, for each of them, without a gap."""
    from models import eval_schedule

    packs = [p for p in packs if p.members]
    cands = checkpoint_candidates(storage_path, name, [p.pack_id for p in packs])
    if not cands:
        return {}
    stored = _stored_steps(store_uri, name, [t.trial_id for p in packs for t in p.members])
    fs, _ = _fs(storage_path)
    out = {}
    for p in packs:
        for step, path in cands.get(p.pack_id, []):
            state = _json(fs, f"{path.split('://', 1)[-1]}/trial_state.json")
            held = set((state or {}).get("members") or ())
            covered = all(s in stored.get(t.trial_id, set()) for t in p.members
                          for s in eval_schedule(t.train.steps, t.train.evals_per_decade, t.train.first_eval)
                          if s <= step)
            if step > 0 and set(p.member_ids) <= held and covered:
                out[p.pack_id] = (step, path)
                break
    return out


def _stored_steps(store_uri: str, sweep: str, trial_ids: list[str]) -> dict[str, set[int]]:
    from analysis.store import Store

    try:
        t = Store(store_uri).read("curves", sweep=sweep, trials=trial_ids, columns=["trial_id", "step"])
    except FileNotFoundError:
        return {}
    out: dict[str, set[int]] = {}
    for tid, step in zip(t.column("trial_id").to_pylist(), t.column("step").to_pylist()):
        out.setdefault(tid, set()).add(int(step))
    return out


# ---------------------------------------------------------------------------------------------------- store
def mark_failed(store_uri: str, sweep: str, trial_ids: Iterable[str] | None = None, status: str = "failed"
                ) -> list[str]:
    """Write `status` (`failed`; `interrupted` after a Ctrl-C) for the latest attempt of every trial (of
    `trial_ids`, default all) the store says is `running`, as a later row of that same attempt (so the store's
    retry rule is unchanged). Returns the trial ids marked. Only a driver holding the sweep's lease may call this:
    no other driver can be running them."""
    from analysis.schema import ATTEMPT_COLUMNS, CFG_PREFIX, table_schema
    from analysis.store import Store

    store = Store(store_uri)
    # the columns a row states, not those the writer fills or the reader counts
    stored = set(table_schema("trials").names) - {*ATTEMPT_COLUMNS, "attempts"}
    ids = None if trial_ids is None else sorted(set(trial_ids))
    if ids == []:
        return []
    try:
        rows = store.read("trials", sweep=sweep, trials=ids).to_pylist()
    except FileNotFoundError:
        return []
    marked = []
    for row in rows:
        if row.get("status") != "running":
            continue
        update = {k: [v] for k, v in row.items() if k in stored or k.startswith(CFG_PREFIX)}
        update.update(status=[status], finished_at=[time.time()])
        with store.writer(sweep, row["trial_id"], attempt_ns=row["attempt_ns"], attempt=row.get("attempt"),
                          resumed_from_step=row["resumed_from_step"] or 0) as w:
            w.append("trials", update)
        marked.append(row["trial_id"])
    return marked


def try_mark_failed(store_uri: str, sweep: str, trial_ids: Iterable[str] | None, when: str,
                    status: str = "failed") -> tuple[list[str], str]:
    """`mark_failed`, best effort: (marked ids, '' or a message saying why the store could not be updated)."""
    try:
        return mark_failed(store_uri, sweep, trial_ids, status), ""
    except OSError as e:
        return [], (f"could not mark {status} trials {when} (store {store_uri}: {e}); the next `memsweep run` "
                    "marks them failed")


def checkpoint_map(found: Mapping[str, tuple[int, str]]) -> dict[str, str]:
    """{trial id: checkpoint path}: what goes into the trials' Tune config."""
    return {tid: path for tid, (_, path) in found.items()}


# ---------------------------------------------------------------------------------------------------- trial side
class StoreUnavailable(OSError):
    """A trial could not write to its store (read-only, full, unreachable); the message names store and error."""


def retry_delay(attempt: int, base: float = RETRY_BACKOFF_S, cap: float = MAX_BACKOFF_S) -> float:
    """Seconds to wait before start number `attempt` of a trial: 0 for the first, then base, 2*base, ... <= cap.
    A fault that outlasts a few seconds (a full or remounted disk, a flaky mount) no longer burns every retry."""
    return 0.0 if attempt <= 1 else min(float(cap), float(base) * 2.0 ** (attempt - 2))


def store_error(cfg: TrialConfig, e: OSError) -> OSError:
    """`e` restated as StoreUnavailable (naming the trial, the store and the OS error) when it is about the store."""
    from analysis.store import Store

    root = Store(cfg.store).root
    if isinstance(e, StoreUnavailable) or not root or root not in f"{e} {getattr(e, 'filename', '') or ''}":
        return e
    return StoreUnavailable(f"trial {cfg.trial_id} could not write to the store {cfg.store}: {e}")


def resume_checkpoint(cfg: TrialConfig, path: str | None, owner_id: str | None = None) -> Any:
    """Tune's checkpoint of this trial; else the checkpoint at `path` that the driver found in an earlier
    experiment, if its owner.json names this trial (or `owner_id`, a pack's id; else None, with a warning: the
    trial starts over)."""
    from ray import tune

    owner_id = owner_id or cfg.trial_id
    ckpt = tune.get_checkpoint()
    if ckpt is not None or not path:
        return ckpt
    ckpt = tune.Checkpoint(str(path))
    try:
        with ckpt.filesystem.open_input_stream(f"{ckpt.path}/{OWNER_FILE}") as f:
            owner = json.loads(f.read().decode())
    except FileNotFoundError:
        owner = None  # written before owner.json existed: the driver matched it by its trial's params.json
    except (OSError, ValueError) as e:
        warnings.warn(f"trial {owner_id}: cannot read checkpoint {path} ({e}); starting over",
                      RuntimeWarning, stacklevel=2)
        return None
    if owner is not None and (not isinstance(owner, dict)
                              or (owner.get("trial_id"), owner.get("sweep")) != (owner_id, cfg.sweep)):
        warnings.warn(f"trial {owner_id}: checkpoint {path} belongs to {owner}; starting over",
                      RuntimeWarning, stacklevel=2)
        return None
    return ckpt
