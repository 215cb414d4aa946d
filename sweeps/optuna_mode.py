"""The Optuna side of the two Optuna modes: the search space over a spec's axes, the study and its journal, and the
OptunaSearch a Tuner drives (sweeps.runner builds the Tuner around it).

- Studies live in a journal file (`JournalStorage(JournalFileBackend)`), name `<sweep>:<mode>` (optuna-grid adds a
  hash of the axes); every invocation continues the study. Trials a killed driver left RUNNING are marked FAIL.
- optuna-grid: a fresh study on a store without finished points lets `GridSampler` hand out each grid point once;
  otherwise exactly the grid points without a finished store row are enqueued, and Tune asks for exactly that
  many, so no finished point repeats. The store is the source of truth: COMPLETE trials of the journal whose
  points the store does not hold finished (an edited journal, or one kept beside a wiped store) are not counted,
  with a warning naming them.
- optuna-boundary: TPE over the axes' values (categorical) until the study holds `optuna.trials` COMPLETE trials.
"""
from __future__ import annotations

import functools
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from sweeps.spec import SweepSpec
from sweeps.spec.storage import is_local, local_path
from sweeps.trial import RESUME_FROM


def axis_labels(spec: SweepSpec) -> dict[str, list[Any]]:
    """{axis name: readable labels of its values} (e.g. "power(a=1)@0" for a tail): the Optuna search space."""
    return {a.name: a.labels for a in spec.axes}


def optuna_space(ot_trial: Any, spec: SweepSpec, categorical_sampler: bool, extra: Mapping[str, Any],
                 resume_from: Mapping[str, str] | None = None) -> dict:
    """Optuna define-by-run space over the spec's axes (one categorical per axis) -> {"trial": that point's trial}
    (plus the checkpoint it continues from, if `resume_from` has one).

    Module level (pickled by reference through functools.partial) so Tune can checkpoint the searcher."""
    labels = axis_labels(spec)
    params = {name: ot_trial.suggest_categorical(name, values) for name, values in labels.items()}
    trial = spec.trial_for(spec.point_of_labels(params))
    ot_trial.set_user_attr("trial_id", trial.trial_id)  # joins the study with the store
    out: dict[str, Any] = {"trial": trial.to_dict(), **extra}
    if resume_from and out["trial"]["trial_id"] in resume_from:
        out[RESUME_FROM] = resume_from[out["trial"]["trial_id"]]
    if not categorical_sampler:
        o = spec.optuna
        out["boundary"] = {"metric": o.metric, "theta": float(o.theta), "target_step": int(o.target_step)}
    return out


def study_name(spec: SweepSpec) -> str:
    """The Optuna study of a sweep: `<name>:<mode>`, plus a hash of the axes for optuna-grid (Optuna cannot change a
    categorical's choices within a study, so an extended grid is a new study; the store still skips done points)."""
    if spec.mode != "optuna-grid":
        return f"{spec.name}:{spec.mode}"
    import hashlib
    import json

    blob = json.dumps(axis_labels(spec), sort_keys=True, default=str).encode()
    return f"{spec.name}:{spec.mode}:{hashlib.sha1(blob).hexdigest()[:8]}"


def _study(storage: Any, name: str, sampler: Any, direction: str) -> Any:
    import optuna

    return optuna.create_study(storage=storage, sampler=sampler, study_name=name, load_if_exists=True,
                               direction=direction)


def _fail_stale(study: Any, storage: Any) -> int:
    """Mark trials a dead driver left RUNNING as FAIL (no driver of this study can still be running them)."""
    from optuna.trial import TrialState

    stale = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
    for t in stale:
        storage.set_trial_state_values(t._trial_id, TrialState.FAIL)  # noqa: SLF001 - no public id accessor
    return len(stale)


def journal_path(spec: SweepSpec, storage_path: str) -> str:
    """The Optuna journal file: spec.optuna.journal, else `<store parent>/optuna-<name>.journal` (local stores),
    else `<cwd>/optuna-<name>.journal`. Only the driver touches it."""
    if spec.optuna.journal:
        return spec.optuna.journal
    if is_local(str(spec.store)):
        return str(local_path(str(spec.store)).parent / f"optuna-{spec.name}.journal")
    return str(Path.cwd() / f"optuna-{spec.name}.journal")


def _journal(path: str) -> Any:
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    Path(path).parent.mkdir(parents=True, exist_ok=True)
    return JournalStorage(JournalFileBackend(path))


def complete_trials(spec: SweepSpec, journal: str, done_before: set[str] | None = None) -> int:
    """How many COMPLETE trials the sweep's study holds in `journal` whose points the store holds finished (the
    count `searcher` plans from; `done_before`: the store's finished trial ids, read when not given); 0 when there
    is no journal or no study yet; reads only."""
    if not Path(journal).is_file():
        return 0
    import optuna

    try:
        study = optuna.load_study(study_name=study_name(spec), storage=_journal(journal))
    except KeyError:          # no study of that name in the journal
        return 0
    if done_before is None:
        from sweeps.runner import finished_trials

        done_before = finished_trials(spec.store, spec.name)
    return _complete_in_store(spec, study, done_before)[0]


def _plan_optuna_grid(spec: SweepSpec, study: Any, done_before: set[str]) -> int:
    """How many trials Tune must ask for; on a continued study, enqueues exactly the unfinished grid points."""
    from optuna.trial import TrialState

    points = spec.points()
    target = min(spec.optuna.trials or len(points), len(points))
    trials = study.get_trials(deepcopy=False)
    ids = [spec.trial_for(p).trial_id for p in points]
    if not trials and not done_before.intersection(ids):
        return target  # fresh study, fresh store: GridSampler maps trial number i to grid point i, each once
    key = lambda params: tuple(params.get(n) for n in spec.axis_names)  # noqa: E731
    labels = [spec.labels_of(p) for p in points]
    # the store is the source of truth: a COMPLETE trial of the journal counts only if the store holds its point
    finished = {key(lab) for lab, tid in zip(labels, ids) if tid in done_before}
    waiting = [key(t.system_attrs.get("fixed_params", {})) for t in trials if t.state == TrialState.WAITING]
    if any(w in finished for w in waiting):
        raise RuntimeError(f"Optuna study {study.study_name!r} has WAITING trials for finished grid points; "
                           "delete the journal or use a new sweep name")
    need = max(0, target - len(finished))
    todo = [lab for lab in labels if key(lab) not in finished][:need]
    for lab in todo:
        if key(lab) not in waiting:
            study.enqueue_trial(lab)
    return len(todo)


def _complete_in_store(spec: SweepSpec, study: Any, done_before: set[str]) -> tuple[int, list[str]]:
    """(COMPLETE trials of the study whose point the store holds finished, {labels} of those it does not hold):
    a journal edited, or kept beside a wiped store, does not stand for trials the store never saw."""
    from optuna.trial import TrialState

    held, unheld = 0, []
    for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        try:
            tid = spec.trial_for(spec.point_of_labels(t.params)).trial_id
        except (KeyError, ValueError):
            tid = None
        if tid in done_before:
            held += 1
        else:
            unheld.append(str(t.params))
    return held, unheld


def searcher(spec: SweepSpec, journal: str, done_before: set[str], extra: Mapping[str, Any],
             resume_from: Mapping[str, str]) -> tuple[Any, int]:
    """The OptunaSearch for `spec`'s mode over its journal's study, and how many trials Tune must ask for (0: none
    left)."""
    import optuna
    from ray.tune.search.optuna import OptunaSearch

    storage = _journal(journal)
    name_of_study = study_name(spec)
    grid = spec.mode == "optuna-grid"
    if grid:
        sampler = optuna.samplers.GridSampler(axis_labels(spec), seed=spec.optuna.seed)
        metric, mode = "copy_frac", "max"
    else:
        sampler = optuna.samplers.TPESampler(seed=spec.optuna.seed)
        metric, mode = "boundary_obj", "min"
    study = _study(storage, name_of_study, sampler, "maximize" if grid else "minimize")
    _fail_stale(study, storage)
    complete, unheld = _complete_in_store(spec, study, done_before)
    if unheld:
        warnings.warn(f"the Optuna journal {journal} lists {len(unheld)} COMPLETE trial(s) whose points the store "
                      f"{spec.store} does not hold finished (e.g. {unheld[0]}); they are not counted as done and "
                      "their points are trained", RuntimeWarning, stacklevel=2)
    if grid:
        n = _plan_optuna_grid(spec, study, done_before)
    else:
        n = max(0, int(spec.optuna.trials) - complete)
    space = functools.partial(optuna_space, spec=spec, categorical_sampler=grid, extra=dict(extra),
                              resume_from=dict(resume_from))
    search = OptunaSearch(space=space, metric=metric, mode=mode, sampler=sampler, study_name=name_of_study,
                          storage=storage)
    return search, n
