"""The retry rule, in one place: which stored rows a reader returns when a trial was attempted more than once.

A row of an attempt is superseded when a later attempt of the same trial resumed from a step below the row's step
(an attempt with rows but no trials row counts as resumed_from_step=0); of the rest, per key, the latest attempt wins
(same attempt: the last written). Attempts are ordered by their counter `attempt`, then by `attempt_ns`.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc


def cutoffs(attempts: pa.Table) -> pa.Table:
    """Per (sweep, trial_id, attempt_ns): the smallest resumed_from_step of any later attempt of the same trial
    (rows of the attempt with a larger step are superseded). Only attempts that have a later one are returned.
    Attempts are ordered by their counter `attempt` (never by a clock across machines), then by attempt_ns (the only
    order stores written before the counter have)."""
    if attempts.num_rows == 0:
        return attempts.select(["sweep", "trial_id", "attempt_ns"]).append_column("cutoff", pa.array([], pa.int64()))
    df = attempts.to_pandas()
    df["_order"] = df["attempt"].fillna(-1)
    df = df.sort_values(["sweep", "trial_id", "_order", "attempt_ns"], ascending=[True, True, False, False],
                        kind="stable")
    g = df.groupby(["sweep", "trial_id"], sort=False)["rfs"]
    df["cutoff"] = g.cummin().groupby([df["sweep"], df["trial_id"]], sort=False).shift(1)
    df = df.dropna(subset=["cutoff"])
    return pa.table({"sweep": pa.array(df["sweep"], pa.string()), "trial_id": pa.array(df["trial_id"], pa.string()),
                     "attempt_ns": pa.array(df["attempt_ns"], pa.int64()),
                     "cutoff": pa.array(df["cutoff"].astype("int64"), pa.int64())})


def with_write_order(t: pa.Table, order: int) -> pa.Table:
    """`t` (rows of one fragment) with `write_order` filled where the file lacks it: the order in its name."""
    if "write_order" not in t.column_names:
        return t.append_column("write_order", pa.array(np.full(t.num_rows, order, np.int64)))
    col = t["write_order"]
    return t if col.null_count == 0 else t.set_column(
        t.column_names.index("write_order"), "write_order", pc.fill_null(col, pa.scalar(order, pa.int64())))


def latest(t: pa.Table, keys: Sequence[str]) -> pa.Table:
    """Keep, per `keys`, the row of the latest attempt; within an attempt the last written (largest `write_order`,
    then the later row in `t`). So it does not matter which files compaction merged rows into, or in what order."""
    n = t.num_rows
    if n == 0:
        return t
    # the attempt counter first (null: a store written before it), then the start time, then the write order
    by = [("attempt", "ascending", "at_start"), ("attempt_ns", "ascending", "at_start")]
    if "write_order" in t.column_names:
        by.append(("write_order", "ascending", "at_start"))
    perm = pc.sort_indices(t, by)
    k = t.select(list(keys)).take(perm).append_column("_pos", pa.array(np.arange(n, dtype=np.int64)))
    g = k.group_by(list(keys), use_threads=False).aggregate([("_pos", "max")])
    g = g.sort_by([(c, "ascending") for c in keys])
    return t.take(perm.take(g["_pos_max"]))


def attempt_counts(trials: pa.Table) -> pa.Table:
    """(sweep, trial_id, attempts) from raw trials rows: the attempts seen, where a row that compaction merged
    stands for `attempts` of them (its own and the ones before it, whose rows it replaced)."""
    cols = ["sweep", "trial_id", "attempt", "attempt_ns", "attempts"]
    if trials.num_rows == 0:
        return pa.table({"sweep": pa.array([], pa.string()), "trial_id": pa.array([], pa.string()),
                         "attempts": pa.array([], pa.int64())})
    df = trials.select(cols).to_pandas()
    df = df.groupby(["sweep", "trial_id", "attempt_ns"], dropna=False, sort=False).agg(
        attempt=("attempt", "max"), stored=("attempts", "max")).reset_index()
    df["_order"] = df["attempt"].fillna(-1)
    df = df.sort_values(["sweep", "trial_id", "_order", "attempt_ns"], kind="stable")
    # per trial: the latest attempt that carries a stored count, plus the attempts after it (else: all attempts)
    df["_n"] = df.groupby(["sweep", "trial_id"], sort=False).cumcount() + 1
    df["_base"] = (df["stored"] - df["_n"]).where(df["stored"].notna())
    df["_base"] = df.groupby(["sweep", "trial_id"], sort=False)["_base"].ffill().fillna(0)
    last = df.groupby(["sweep", "trial_id"], sort=False).tail(1)
    return pa.table({"sweep": pa.array(last["sweep"], pa.string()), "trial_id": pa.array(last["trial_id"], pa.string()),
                     "attempts": pa.array((last["_n"] + last["_base"]).astype("int64"), pa.int64())})


def latest_trials(raw: pa.Table) -> pa.Table:
    """The trials table as readers see it: per trial the latest row of its latest attempt, `attempts` counted."""
    out = latest(raw, ("sweep", "trial_id"))
    counts = attempt_counts(raw)
    att = out.select(["sweep", "trial_id"]).join(counts, ["sweep", "trial_id"], join_type="left outer")
    att = att.sort_by([("sweep", "ascending"), ("trial_id", "ascending")])
    return out.set_column(out.schema.get_field_index("attempts"), "attempts", att["attempts"].cast(pa.int64()))


def supersede(t: pa.Table, attempts: pa.Table, unknown_is_zero: bool) -> pa.Table:
    """Drop rows whose step is above the resumed_from_step of a later attempt of the same trial. Attempts seen
    in `t` but absent from `attempts` count as resumed_from_step=0 when `unknown_is_zero`, else are ignored."""
    if t.num_rows == 0:
        return t
    seen = t.select(["sweep", "trial_id", "attempt_ns"]).group_by(
        ["sweep", "trial_id", "attempt_ns"], use_threads=False).aggregate([])
    att = attempts.select(["sweep", "trial_id", "attempt_ns", "attempt", "rfs"])
    if unknown_is_zero:
        extra = seen.join(att, ["sweep", "trial_id", "attempt_ns"], join_type="left anti")
        extra = extra.append_column("attempt", pa.nulls(extra.num_rows, pa.int64())).append_column(
            "rfs", pa.array(np.zeros(extra.num_rows, np.int64)))
        all_att = pa.concat_tables([att, extra])
        all_att = all_att.set_column(4, "rfs", pc.fill_null(all_att["rfs"], 0))
    else:
        all_att = att.filter(pc.is_valid(att["rfs"]))
    # Only trials that appear in t matter.
    all_att = all_att.join(seen.select(["sweep", "trial_id"]).group_by(["sweep", "trial_id"]).aggregate([]),
                           ["sweep", "trial_id"], join_type="inner")
    cut = cutoffs(all_att)
    if cut.num_rows == 0:
        return t
    idx = t.select(["sweep", "trial_id", "attempt_ns", "step"]).append_column(
        "_i", pa.array(np.arange(t.num_rows, dtype=np.int64)))
    j = idx.join(cut, ["sweep", "trial_id", "attempt_ns"], join_type="inner")
    drop = j.filter(pc.field("step") > pc.field("cutoff"))["_i"]
    if len(drop) == 0:
        return t
    mask = np.ones(t.num_rows, dtype=bool)
    mask[drop.to_numpy()] = False
    return t.filter(pa.array(mask))

