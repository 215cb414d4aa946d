"""Trials whose onsets cannot be read (SCIENCE.md, "Nulls that match what they are compared with"): per trial p(T),
p(T'), the chance level of validity, the generalization ceiling 1 - p(T) and the null sd of `mem_twin`, and the
reasons a trial is flagged. Flagged trials are listed and counted, and left out of onset laws and of the order and
slop verdicts unless the caller keeps them (`--keep-flagged`).

A trial is flagged when
* its grammar's chance level of validity exceeds `MAX_CHANCE` (a random string is valid that often: `valid_frac`
  and `novel_valid_frac` say nothing about learning);
* `p(T)` exceeds `MAX_TRAIN_MASS` (copies separate a memorizer from a generalizer only in the last 1 - p(T));
* the null sd of `mem_twin`, `sqrt(p(T) * (1 + p(T)/p(T')) / N)`, exceeds `theta * MAX_SD_FRACTION` (a crossing of
  theta can be the null's noise). This one depends on theta: at a lower theta more trials are flagged.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

MAX_CHANCE = 0.01
MAX_TRAIN_MASS = 0.5
MAX_SD_FRACTION = 0.25
#: Strings generated per evaluation when a trials table does not say (`n_gen`).
DEFAULT_N_GEN = 256
FLAG_COLUMNS = ("trial_id", "train_mass", "twin_set_mass", "chance_valid", "ceiling", "null_sd", "flag_chance",
                "flag_train_mass", "null_sd_limit", "flagged", "reason")


def chance_warning(spec: Any) -> str | None:
    """A warning (not a refusal) for a grammar (`rhm.GrammarSpec`) whose chance level of validity exceeds
    `MAX_CHANCE`, saying what would lower it; None when it is below."""
    from dataclasses import replace

    p = spec.chance_valid
    if p <= MAX_CHANCE:
        return None
    tries = []
    for key, value in (("v", spec.v * 2), ("s", spec.s + 1), ("m", spec.m // 2)):
        if value < 1 or (key == "m" and value == spec.m):
            continue
        try:
            alt = replace(spec, **{key: value})
        except ValueError:
            continue
        tries.append(f"{key}={value}: {alt.chance_valid:.2g}")
    return (f"grammar v={spec.v}, n_c={spec.n_c}, m={spec.m}, s={spec.s}, L={spec.L}: a uniformly random string is "
            f"valid with probability {p:.3g} (chance of validity above {MAX_CHANCE:.0%}), so valid_frac and "
            f"novel_valid_frac read that much with nothing learned; a larger v or s (or fewer rules m) lowers it ("
            + "; ".join(tries) + "). Such trials are flagged in the report.")


def twin_null_sd(train_mass: Any, twin_set_mass: Any, n_gen: Any) -> Any:
    """Sampling sd of `mem_twin` under a grammar-faithful generator: sqrt(p(T) (1 + p(T)/p(T')) / N); NaN where the
    twin null is undefined (p(T') not > 0). Scalars or arrays alike."""
    pt, pp, n = (np.asarray(a, float) for a in (train_mass, twin_set_mass, n_gen))
    with np.errstate(divide="ignore", invalid="ignore"):
        out = np.where(pp > 0, np.sqrt(pt * (1 + pt / pp) / n), np.nan)
    return float(out) if out.ndim == 0 else out


def _column(trials: pa.Table, name: str, default: float = math.nan) -> np.ndarray:
    if name not in trials.column_names:
        return np.full(trials.num_rows, default)
    return np.array([default if v is None else v for v in trials.column(name).to_pylist()], float)


def chance_of_trials(trials: pa.Table) -> np.ndarray:
    """Each trial's chance level: the stored `chance_valid`, else computed from its `cfg.grammar.*` columns (stores
    written before the column existed); NaN where neither is there."""
    from rhm import GrammarSpec

    out = _column(trials, "chance_valid")
    cols = [f"cfg.grammar.{k}" for k in ("v", "n_c", "m", "s", "L")]
    if np.isfinite(out).all() or not all(c in trials.column_names for c in cols):
        return out
    shape = zip(*(trials.column(c).to_pylist() for c in cols))
    for i, (v, n_c, m, s, L) in enumerate(shape):
        if not math.isfinite(out[i]) and None not in (v, n_c, m, s, L):
            out[i] = GrammarSpec(v=int(v), n_c=int(n_c), m=int(m), s=int(s), L=int(L)).chance_valid
    return out


def trial_flags(trials: pa.Table, theta: float = 0.5) -> pa.Table:
    """One row per trial (`FLAG_COLUMNS`): its nulls' facts and whether (and why) it is flagged at `theta`."""
    pt, pp = _column(trials, "train_mass"), _column(trials, "twin_set_mass")
    n_gen = _column(trials, "n_gen", DEFAULT_N_GEN)
    chance = chance_of_trials(trials)
    sd = twin_null_sd(pt, pp, n_gen)
    f_chance, f_mass = chance > MAX_CHANCE, pt > MAX_TRAIN_MASS
    f_sd = sd > theta * MAX_SD_FRACTION
    reasons = []
    for i in range(trials.num_rows):
        why = []
        if f_chance[i]:
            why.append(f"chance {chance[i]:.3g} > {MAX_CHANCE:g} (validity at chance)")
        if f_mass[i]:
            why.append(f"p(T) {pt[i]:.3g} > {MAX_TRAIN_MASS:g} (T holds most of the language)")
        if f_sd[i]:
            why.append(f"null sd of mem_twin {sd[i]:.3g} > theta/4 = {theta * MAX_SD_FRACTION:.3g}")
        reasons.append("; ".join(why))
    return pa.table({
        "trial_id": trials.column("trial_id"), "train_mass": pt, "twin_set_mass": pp, "chance_valid": chance,
        "ceiling": 1.0 - pt, "null_sd": sd, "flag_chance": f_chance, "flag_train_mass": f_mass,
        "null_sd_limit": np.full(trials.num_rows, theta * MAX_SD_FRACTION), "flagged": f_chance | f_mass | f_sd,
        "reason": reasons})


def flagged_ids(flags: pa.Table) -> list[str]:
    """Trial ids of the flagged rows."""
    return flags.filter(flags.column("flagged")).column("trial_id").to_pylist()


def drop_flagged_onsets(onsets: pa.Table, flags: pa.Table) -> pa.Table:
    """Onset rows of trials that are not flagged at the row's own theta: chance and p(T) flags at every theta, the
    null-sd flag where the trial's null sd exceeds that row's theta / 4."""
    if onsets.num_rows == 0 or flags.num_rows == 0:
        return onsets
    # each onset row's trial in `flags` (an unknown trial: the appended last entry, never flagged); rows keep their
    # order, and onsets read back from a CSV (all-null columns) need no join
    pos = pc.index_in(pc.cast(onsets.column("trial_id"), pa.string()),
                      value_set=pc.cast(flags.column("trial_id"), pa.string()))
    pos = pc.fill_null(pos, flags.num_rows).to_numpy(zero_copy_only=False)
    flag = lambda c: np.append([bool(v) for v in flags.column(c).to_pylist()], False)[pos]  # noqa: E731
    sd = np.append([np.nan if v is None else float(v) for v in flags.column("null_sd").to_pylist()], np.nan)[pos]
    theta = onsets.column("theta").to_numpy(zero_copy_only=False).astype(float)
    bad = flag("flag_chance") | flag("flag_train_mass") | (sd > theta * MAX_SD_FRACTION)
    return onsets.filter(pa.array(~bad))


def keep_trials(table: pa.Table | None, ids: list[str]) -> pa.Table | None:
    """Rows of `table` whose trial_id is in `ids` (None stays None)."""
    if table is None or "trial_id" not in table.column_names:
        return table
    return table.filter(pc.is_in(table.column("trial_id"), value_set=pa.array(ids, pa.string())))


def flag_lines(flags: pa.Table, theta: float, kept: bool, per_trial_max: int = 20,
               every: str = "flags.csv has every trial") -> list[str]:
    """Headline sentences: the nulls' facts per trial (each trial up to `per_trial_max` trials, else their
    ranges; `every` says where all of them are), then the flagged trials with their reasons and what was done."""
    rows = flags.to_pylist()
    if not rows:
        return []

    def rng(name: str) -> str:
        v = np.array([r[name] for r in rows], float)
        v = v[np.isfinite(v)]
        return "n/a" if v.size == 0 else (f"{v.min():.3g}" if v.min() == v.max() else f"{v.min():.3g} to {v.max():.3g}")

    out = [f"Nulls per trial: p(T) {rng('train_mass')}, p(T') {rng('twin_set_mass')}, chance of validity "
           f"{rng('chance_valid')}, ceiling of novel_valid_frac 1 - p(T) {rng('ceiling')}, null sd of mem_twin "
           f"{rng('null_sd')} ({every})."]
    if len(rows) <= per_trial_max:
        out += [f"  {r['trial_id']}: p(T) {r['train_mass']:.3g}, p(T') {r['twin_set_mass']:.3g}, chance "
                f"{r['chance_valid']:.2g}, ceiling {r['ceiling']:.3g}, null sd {r['null_sd']:.3g}" for r in rows]
    bad = [r for r in rows if r["flagged"]]
    if not bad:
        out.append(f"Flagged trials: none at theta={theta:g} (chance <= {MAX_CHANCE:g}, p(T) <= {MAX_TRAIN_MASS:g}, "
                   f"null sd <= theta/4).")
        return out
    what = ("kept in the laws and verdicts (--keep-flagged)" if kept
            else "left out of the onset laws, the order and slop verdicts and the regime count (--keep-flagged keeps "
                  "them)")
    out.append(f"Flagged trials: {len(bad)} of {len(rows)} at theta={theta:g}, {what}:")
    out += [f"  {r['trial_id']}: {r['reason']}." for r in bad]
    return out
