"""The rows a trial writes to the store (trials, samples, slop_nulls, curves, level_curves, copies, parts, overest)
and the summary it reports to Tune: the same for a lone trial (sweeps.trial) and a member of a pack
(sweeps.pack_trial)."""
from __future__ import annotations

import json
import time
from collections.abc import Mapping
from typing import Any

import numpy as np

from analysis.registry import CURVE_METRICS
from sweeps.spec import TrialConfig

# Tune's name for a result's x-axis (ray.tune.result.TIMESTEPS_TOTAL): its TensorBoard and MLflow loggers plot
# against it when a result has it, else against the number of results.
TIMESTEPS_TOTAL = "timesteps_total"


def data_columns(data: Any) -> dict[str, Any]:
    """The trial-level facts of its grammar and data sets: exact entropy (total, root, per level) and the masses
    p(T), p(T'), p(H) that the nulls rest on, with the reason when the twin null is undefined."""
    spec, idx = data.grammar.spec, data.index
    return {"entropy": spec.entropy, "entropy_root": spec.root_entropy, "entropy_tilt": spec.entropy_tilt,
            "entropy_levels": [float(h) for h in spec.level_entropies()], "train_mass": float(idx.copy_baseline),
            "twin_set_mass": float(idx.twin_set_mass), "heldout_mass": float(idx.heldout_mass),
            "twin_note": idx.twin_note, "chance_valid": spec.chance_valid}


def trials_row(cfg: TrialConfig, status: str, attempt_start: float, final_step: int | None,
               finished: bool, extra: Mapping[str, Any] | None = None) -> dict[str, list]:
    """One `trials` row (dict of 1-element columns): identity, tail, size, status, flattened config, and `extra`
    (the trial's `data_columns`)."""
    tail = cfg.tail
    levels = None if tail.levels is None else ",".join(str(x) for x in tail.levels)
    row: dict[str, Any] = {
        "status": status,
        "started_at": _ts(attempt_start),
        "finished_at": _ts(time.time()) if finished else None,
        "final_step": final_step,
        "budget_steps": int(cfg.train.steps),
        "tail": tail.label,
        "tail_family": tail.family,
        "tail_a": float(tail.a),
        "tail_levels": levels,
        "L": int(cfg.grammar.L),
        "P": int(cfg.P),
        "seed": int(cfg.seed),
        "data_draw": cfg.data_draw,
        "spec": cfg.spec or None,
        "spec_copy": cfg.spec_copy or None,
        "n_gen": int(cfg.n_gen),
        "config_json": json.dumps(cfg.to_dict(), sort_keys=True, default=str),
    }
    row.update({f"cfg.{k}": v for k, v in cfg.flat().items()})
    row.update(extra or {})
    return {k: [v] for k, v in row.items()}


def _ts(t: float) -> Any:
    """A timezone-aware timestamp for the store's time columns."""
    import datetime as _dt

    return _dt.datetime.fromtimestamp(t, tz=_dt.timezone.utc)


def samples_rows(data: Any) -> dict[str, Any]:
    """The `samples` table: per training string its exact log-likelihood, probability, prototypicality, and its
    twins in T' (root class and twin group identify the string; twin_mass and n_twins describe its null)."""
    idx = data.index
    return {
        "train_index": np.arange(idx.P, dtype=np.int64),
        "loglik": np.asarray(idx.loglik, dtype=np.float64),
        "prob": np.asarray(idx.prob, dtype=np.float64),
        "proto": np.asarray(idx.proto, dtype=np.float64),
        "proto_levels": [list(map(float, r)) for r in np.asarray(idx.proto_levels, dtype=np.float64)],
        "root": idx.root, "twin_group": idx.twin_group, "twin_mass": idx.twin_mass, "n_twins": idx.n_twins,
        "emp_prob": np.asarray(idx.emp_prob, dtype=np.float64),
    }


def slop_null_seed(cfg: Any) -> int:
    """The seed of a trial's slop nulls: its data draw's (both seeds, `rhm.draw_seed`) + 2, a stream apart from the
    training (+0) and held-out (+1) draws, so a null never replays the draw of T itself."""
    from rhm import draw_seed

    return draw_seed(cfg.grammar.seed, cfg.data_seed, cfg.data_draw) + 2


def slop_null_rows(data: Any, n_gen: int, seed: int) -> dict[str, Any]:
    """The `slop_nulls` table: each slop reference's null at the trial's N (`analysis.slop.slop_nulls`), drawn
    once per trial from `seed`."""
    from analysis.slop import slop_nulls

    idx = data.index
    return slop_nulls(data.grammar, idx.empirical, idx.sorted_keys, idx.production_counts, idx.slop_ref, n_gen,
                      seed=seed)


def eval_rows(step: int, wall: float, ev: Any, grammar: Any) -> dict[str, dict[str, Any]]:
    """Rows of every per-step table for one evaluation: curves, level_curves, copies, parts."""
    L = grammar.spec.L
    curves = {"step": [step], "wall_time": [wall]}
    curves.update({k: [float(v)] for k, v in ev.scalars.items()})
    levels = {"step": np.full(L, step, np.int64), "level": np.arange(L, dtype=np.int64)}
    levels.update({k: np.asarray(v, dtype=np.float64) for k, v in ev.levels.items()})
    copies = {"step": np.full(len(ev.copies["train_index"]), step, np.int64), **ev.copies}
    out = {"curves": curves, "level_curves": levels, "copies": copies, "parts": _parts_rows(step, ev)}
    if getattr(ev, "overest", None) is not None:                # analysis.overest, at its evaluations only
        out["overest"] = {"step": np.full(len(ev.overest["o"]), step, np.int64), **ev.overest}
    return out


def _parts_rows(step: int, ev: Any) -> dict[str, np.ndarray]:
    """Per level and production: counts in generated vs training strings and the production's grammar frequency."""
    cols = {k: np.asarray(v) for k, v in ev.parts.items()}
    n = len(cols["production"])
    return {"step": np.full(n, step, np.int64), **cols}


def summary(step: int, ev_scalars: Mapping[str, float], extra: Mapping[str, Any]) -> dict[str, Any]:
    """The metrics reported to Tune after each evaluation: the step (also as Tune's `timesteps_total`, the x-axis
    of its TensorBoard and MLflow loggers) and every curve metric of the registry the evaluation has."""
    out: dict[str, Any] = {"step": int(step), TIMESTEPS_TOTAL: int(step)}
    for k in CURVE_METRICS:
        if k in ev_scalars:
            out[k] = float(ev_scalars[k])
    out.update(extra)
    return out
