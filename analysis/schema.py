"""The store's schema: every table, its columns, keys and the schema version. The only place these live.

`analysis.store` reads and writes these tables. The metric columns come from `analysis.registry`, so the metric
names `analysis.metrics` computes and the columns the store holds cannot drift apart.
"""
from __future__ import annotations

import pyarrow as pa

from analysis.registry import CURVE_METRICS, LEVEL_METRICS

#: Bumped whenever a column is removed, renamed or retyped, or the layout changes. Readers refuse files with a newer
#: version and read every older one. 2: one folder per sweep named by the sweep alone (`<table>/<sweep>/`, not
#: `sweep=<sweep>`, which made standard readers see `sweep` twice); `attempt` and `resumed_from_step` on every row.
SCHEMA_VERSION: int = 2
#: Key under which `SCHEMA_VERSION` is stored in every Parquet file's key-value metadata.
VERSION_KEY: bytes = b"memsweep.schema_version"
#: Prefix of the trials table's flattened config columns (`cfg.model.width`, ...); they vary by sweep.
CFG_PREFIX: str = "cfg."


#: `diverged`: training loss or weights went non-finite (the step is `final_step`); fits and reports leave it out.
#: `interrupted`: stopped by the user (Ctrl-C) before its end; `memsweep run ... --resume` continues it.
TRIAL_STATUSES: tuple[str, ...] = ("running", "done", "stopped", "failed", "diverged", "interrupted")

_TS = pa.timestamp("us", tz="UTC")
# Every row says which attempt of which trial wrote it and where that attempt resumed from, so the retry rule needs
# nothing but the row's own table (a damaged `trials` file loses trial metadata, never curve rows). `attempt` is a
# per-trial counter (1, 2, ...; null in stores written before it existed), `attempt_ns` the attempt's start time.
# `write_order` is the writer's flush sequence (ns, increasing within an attempt): of two rows of one attempt and key
# the larger wins, wherever compaction moved them (null in files written before it: the file name's order then).
_ID = [pa.field("sweep", pa.string()), pa.field("trial_id", pa.string()), pa.field("attempt_ns", pa.int64()),
       pa.field("attempt", pa.int64()), pa.field("resumed_from_step", pa.int64()),
       pa.field("write_order", pa.int64())]

#: Fixed columns of every table (the trials table also holds any number of `cfg.*` columns).
SCHEMAS: dict[str, pa.Schema] = {
    "trials": pa.schema(_ID + [
        pa.field("attempts", pa.int64()),           # attempts the trial has had (readers and compaction fill it)
        pa.field("status", pa.string()),
        pa.field("started_at", _TS),
        pa.field("finished_at", _TS),
        pa.field("final_step", pa.int64()),
        pa.field("budget_steps", pa.int64()),
        pa.field("tail", pa.string()),          # TailSpec.label, e.g. "power(a=1)@0"
        pa.field("tail_family", pa.string()),
        pa.field("tail_a", pa.float64()),
        pa.field("tail_levels", pa.string()),   # "0,1"; null = every level
        pa.field("L", pa.int64()),
        pa.field("P", pa.int64()),
        pa.field("seed", pa.int64()),
        pa.field("n_gen", pa.int64()),              # strings generated per evaluation (the nulls need it)
        pa.field("config_json", pa.string()),
        pa.field("entropy", pa.float64()),          # exact string entropy H(x) in nats
        pa.field("entropy_root", pa.float64()),     # its root-class part
        pa.field("entropy_tilt", pa.float64()),     # where it sits: upper minus lower levels' per-node entropy
        pa.field("entropy_levels", pa.list_(pa.float64())),   # per production level: s**l H(p_l)
        pa.field("train_mass", pa.float64()),       # p(T), distinct training strings
        pa.field("twin_set_mass", pa.float64()),    # p(T'), NaN when the twin null is undefined
        pa.field("heldout_mass", pa.float64()),     # p(H), distinct held-out strings
        pa.field("twin_note", pa.string()),         # why the twin null is undefined ("" when defined)
        pa.field("chance_valid", pa.float64()),     # probability that a uniformly random string is valid
        pa.field("data_draw", pa.string()),         # which seeds drew T and H: "grammar+data" or "data" (legacy)
        pa.field("error", pa.string()),             # why a failed / diverged attempt ended (null otherwise)
        # the sweep spec the trial was planned from: `spec` = its settings but the axes' values (a resume that only
        # adds axis values keeps it; fit/report keep trials of different keys apart), `spec_copy` = the digest of
        # its file <store>/_specs/<sweep>-<spec_copy>.yaml; null in stores written before them
        pa.field("spec", pa.string()),
        pa.field("spec_copy", pa.string()),
    ]),
    "curves": pa.schema(_ID + [
        pa.field("step", pa.int64()),
        pa.field("wall_time", pa.float64()),    # seconds since the trial (attempt) started training
        pa.field("written_at", _TS),
    ] + [pa.field(m, pa.float64()) for m in CURVE_METRICS]),
    "level_curves": pa.schema(_ID + [pa.field("step", pa.int64()), pa.field("level", pa.int64())]
                              + [pa.field(m, pa.float64()) for m in LEVEL_METRICS]),
    "copies": pa.schema(_ID + [
        pa.field("step", pa.int64()), pa.field("train_index", pa.int64()), pa.field("count", pa.int64()),
        pa.field("twin_count", pa.int64()),         # generated strings that are this sample's twins in T'
        pa.field("twin_scaled", pa.float64()),      # twin_count * p(x) / p(its twins in T'): the null's copies
    ]),
    "samples": pa.schema(_ID + [
        pa.field("train_index", pa.int64()), pa.field("loglik", pa.float64()), pa.field("prob", pa.float64()),
        pa.field("proto", pa.float64()), pa.field("proto_levels", pa.list_(pa.float64())),
        pa.field("root", pa.int64()), pa.field("twin_group", pa.int64()),   # (root, twin_group) = the string
        pa.field("twin_mass", pa.float64()), pa.field("n_twins", pa.int64()),   # its twins in T'
        pa.field("emp_prob", pa.float64()),     # its probability under the empirical grammar of T
    ]),
    "parts": pa.schema(_ID + [
        pa.field("step", pa.int64()), pa.field("level", pa.int64()), pa.field("production", pa.int64()),
        pa.field("gen_count", pa.int64()), pa.field("train_count", pa.int64()),
        pa.field("grammar_prob", pa.float64()),
        pa.field("null_prob", pa.float64()),        # frequency among a grammar-faithful generator's non-copies
    ]),
    "overest": pa.schema(_ID + [             # analysis.overest: o(x, t) of each probed string at an evaluation
        pa.field("step", pa.int64()), pa.field("t", pa.float64()),     # t: fraction of the string masked
        pa.field("split", pa.string()),             # "train" or "heldout"
        pa.field("string_index", pa.int64()),       # row of the training (train_index) or held-out set
        pa.field("o", pa.float64()),                # mean over draws and masked i of log p_model - log p_grammar
        pa.field("model_logp", pa.float64()),       # the same mean of log p_model alone (reference-free score)
    ]),
    # Per trial, once: each slop reference's null at the trial's N (analysis.slop.slop_nulls); level -1 = all
    # levels, node-weighted; n_strings = the non-copy strings a replicate's value rests on.
    "slop_nulls": pa.schema(_ID + [
        pa.field("reference", pa.string()), pa.field("null", pa.string()), pa.field("level", pa.int64()),
        pa.field("null_mean", pa.float64()), pa.field("null_sd", pa.float64()), pa.field("null_lo", pa.float64()),
        pa.field("null_hi", pa.float64()), pa.field("n_strings", pa.float64()), pa.field("n_gen", pa.int64()),
        pa.field("n_rep", pa.int64()),
    ]),
}

#: Columns that identify one logical row; readers return exactly one row per key.
KEYS: dict[str, tuple[str, ...]] = {
    "trials": ("trial_id",),
    "curves": ("trial_id", "step"),
    "level_curves": ("trial_id", "step", "level"),
    "copies": ("trial_id", "step", "train_index"),
    "samples": ("trial_id", "train_index"),
    "parts": ("trial_id", "step", "level", "production"),
    "overest": ("trial_id", "step", "t", "split", "string_index"),
    "slop_nulls": ("trial_id", "reference", "level"),
}

TABLES: tuple[str, ...] = tuple(SCHEMAS)

#: Columns every row carries about the attempt that wrote it (filled by the writer).
ATTEMPT_COLUMNS: tuple[str, ...] = ("sweep", "trial_id", "attempt_ns", "attempt", "resumed_from_step", "write_order")


class SchemaVersionError(RuntimeError):
    """A store file was written by a newer schema version than this code understands."""


def schema_metadata() -> dict[bytes, bytes]:
    """Key-value metadata stamped into every Parquet file the store writes."""
    return {VERSION_KEY: str(SCHEMA_VERSION).encode()}


def file_version(metadata: dict[bytes, bytes] | None) -> int | None:
    """The schema version recorded in a file's key-value metadata, or None if it has none."""
    if not metadata or VERSION_KEY not in metadata:
        return None
    return int(metadata[VERSION_KEY].decode())


def check_version(metadata: dict[bytes, bytes] | None, where: str = "") -> int | None:
    """Raise `SchemaVersionError` if a file's schema version is newer than `SCHEMA_VERSION`."""
    v = file_version(metadata)
    if v is not None and v > SCHEMA_VERSION:
        raise SchemaVersionError(
            f"{where or 'file'} has store schema version {v}, but this code reads versions <= {SCHEMA_VERSION}; "
            "upgrade memsweep to read it")
    return v


def table_schema(table: str) -> pa.Schema:
    """The fixed schema of `table` (ValueError naming the valid tables if unknown)."""
    try:
        return SCHEMAS[table]
    except KeyError:
        raise ValueError(f"unknown table {table!r}; tables are {', '.join(TABLES)}") from None
