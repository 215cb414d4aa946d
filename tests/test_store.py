"""Tests of the shared store: atomic fragments, concurrency, retries, compaction, corruption, versions, filters."""
from __future__ import annotations

import multiprocessing as mp
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from analysis.schema import CURVE_METRICS, KEYS, LEVEL_METRICS, SCHEMA_VERSION, TABLES, VERSION_KEY, SchemaVersionError
from analysis.store import Store, print_summary

ROOT = Path(__file__).resolve().parents[1]


def _trial_row(P: int, lr: float, width: int, status: str = "done", **kw) -> dict:
    return {"status": status, "P": P, "L": 2, "seed": 0, "tail": "uniform", "tail_family": "uniform",
            "tail_a": 0.0, "cfg.train.lr": lr, "cfg.model.width": width, "cfg.data.P": P, **kw}


def _fill(store: Store, n_trials: int = 6, steps=(10, 20, 40, 80), sweep: str = "s1") -> None:
    rng = np.random.default_rng(0)
    for i in range(n_trials):
        with store.writer(sweep, f"{sweep}-t{i}", attempt_ns=1000 + i) as w:
            w.append("trials", _trial_row(P=16 * (i + 1), lr=10.0 ** -(i % 3), width=32 * (1 + i % 2)))
            for s in steps:
                w.append("curves", {"step": s, "wall_time": s / 10, **{m: float(rng.random()) for m in CURVE_METRICS}})
                w.append("level_curves", {"step": s, "level": [0, 1], **{m: rng.random(2) for m in LEVEL_METRICS}})
                idx = np.unique(rng.integers(0, 50, 8))
                w.append("copies", {"step": s, "train_index": idx, "count": rng.integers(1, 5, len(idx))})
                w.append("parts", {"step": s, "level": 0, "production": np.arange(4), "gen_count": rng.integers(0, 9, 4),
                                   "train_count": rng.integers(0, 9, 4), "grammar_prob": np.full(4, 0.25)})
                w.append("overest", {"step": s, "t": [0.9, 0.5], "split": ["train", "heldout"],
                                     "string_index": [i, 0], "o": [s / 10, -s / 10]})
                w.flush()
            w.append("samples", {"train_index": np.arange(5), "loglik": -rng.random(5), "prob": rng.random(5),
                                 "proto": rng.random(5), "proto_levels": [list(rng.random(2)) for _ in range(5)]})
            w.append("slop_nulls", {"reference": ["grammar", "train"], "null": ["empirical", "grammar"],
                                    "level": [-1, -1], "null_mean": rng.random(2), "null_sd": rng.random(2)})


def _read_all(store: Store) -> dict[str, pa.Table]:
    return {t: store.read(t) for t in TABLES}


# ------------------------------------------------------------------------------------------------ basics / types
def test_roundtrip_types_and_partition(tmp_path):
    store = Store(tmp_path / "st")
    with store.writer("2024", "a", attempt_ns=1) as w:           # numeric-looking sweep stays a string
        w.append("trials", _trial_row(P=64, lr=1e-3, width=64, started_at=1.7e9))
        w.append("curves", {"step": [10, 20], "copy_frac": [0.1, 0.2]})
    with store.writer("other", "b", attempt_ns=2) as w:            # int where the other sweep had a float
        w.append("trials", _trial_row(P=32, lr=1, width=32, **{"cfg.extra.flag": True}))
    tr = store.read_pandas("trials")
    assert tr["cfg.train.lr"].dtype == np.float64 and tr["cfg.train.lr"].tolist() == [1e-3, 1.0]
    assert tr["cfg.model.width"].dtype == np.int64
    assert tr["sweep"].tolist() == ["2024", "other"] and tr["attempts"].tolist() == [1, 1]
    assert tr["cfg.extra.flag"].isna().tolist() == [True, False]
    assert str(tr["started_at"].dtype).startswith("datetime64") and tr["started_at"].iloc[0].year == 2023
    cu = store.read("curves", sweep="2024")
    assert cu.schema.field("sweep").type == pa.string() and cu["copy_frac"].to_pylist() == [0.1, 0.2]
    assert cu.schema.field("written_at").type.tz == "UTC"
    # every file carries the schema version; temp names never linger after a clean flush
    files = [p for p in (tmp_path / "st").rglob("*") if p.is_file()]
    assert files and all(not p.name.startswith(".") for p in files)
    assert all(pq.read_schema(p).metadata[VERSION_KEY] == str(SCHEMA_VERSION).encode() for p in files)
    # the raw dataset view uses an explicit string partition schema
    assert store.dataset("curves").to_table().schema.field("sweep").type == pa.string()


def test_writer_validates_names(tmp_path):
    store = Store(tmp_path)
    with store.writer("s", "t") as w:
        with pytest.raises(ValueError, match="unknown column"):
            w.append("curves", {"step": [1], "copy_fraction": [0.1]})
        with pytest.raises(ValueError, match="key column"):
            w.append("curves", {"copy_frac": [0.1]})
        with pytest.raises(ValueError, match="writer is for"):
            w.append("curves", {"step": [1], "trial_id": ["other"]})
        with pytest.raises(ValueError, match="unknown table"):
            w.append("curvez", {"step": [1]})
        with pytest.raises(ValueError, match="different lengths"):
            w.append("curves", {"step": [1, 2], "copy_frac": [0.1]})
    with pytest.raises(ValueError):
        store.writer("a/b", "t")
    assert store.read("curves").num_rows == 0


# ------------------------------------------------------------------------------------------------ concurrency
def test_eight_concurrent_writer_processes_lose_nothing(tmp_path):
    from test_store_worker import write_trial
    root, n_flush = str(tmp_path / "st"), 12
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=write_trial, args=(root, k, n_flush)) for k in range(8)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    store = Store(root)
    cu = store.read_pandas("curves")
    assert len(cu) == 8 * n_flush
    assert sorted(zip(cu.trial_id, cu.step)) == sorted((f"trial{k}", s) for k in range(8) for s in range(n_flush))
    assert np.allclose(cu.copy_frac, cu.trial_id.str[5:].astype(int) + cu.step / 1000)
    co = store.read("copies")
    assert co.num_rows == 8 * n_flush * 10 and pc.sum(co["count"]).as_py() == sum(10 * n_flush * (k + 1) for k in range(8))
    assert store.read("trials").num_rows == 8 and not store.problems
    names = [p.name for p in Path(root).rglob("*.parquet")]
    assert len(names) == len(set(names)) == 8 * (1 + 2 * n_flush)


# ------------------------------------------------------------------------------------------------ crash safety
_KILL_SCRIPT = textwrap.dedent("""
    import sys, numpy as np
    from analysis.store import Store
    store = Store(sys.argv[1])
    with store.writer("k", "small", attempt_ns=1) as w:
        w.append("copies", {"step": 1, "train_index": np.arange(100), "count": np.ones(100, np.int64)})
    print("small done", flush=True)
    n = 8_000_000
    rng = np.random.default_rng(0)
    w = store.writer("k", "huge", attempt_ns=2)
    w.append("copies", {"step": rng.integers(0, 10**9, n), "train_index": rng.integers(0, 10**9, n),
                        "count": rng.integers(1, 10**9, n)})
    print("flushing", flush=True)
    w.flush()
    print("finished", flush=True)
""")


def test_sigkill_mid_flush_leaves_nothing_partial(tmp_path):
    root = tmp_path / "st"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-c", _KILL_SCRIPT, str(root)], env=env, stdout=subprocess.PIPE, text=True)
    try:
        tmp = None
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and proc.poll() is None:
            tmps = [p for p in root.rglob(".*_huge.parquet.*.tmp")] if root.exists() else []
            if tmps and tmps[0].stat().st_size > 0:        # the huge fragment is being written: kill now
                tmp = tmps[0]
                break
            time.sleep(0.002)
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
    out = proc.stdout.read()
    assert "finished" not in out and tmp is not None and tmp.exists(), out
    store = Store(root)
    co = store.read("copies")
    assert co.num_rows == 100 and set(co["trial_id"].to_pylist()) == {"small"}
    assert not store.problems
    assert store.summary()["k"]["fragments"]["copies"] == 1


# ------------------------------------------------------------------------------------------------ retries
def test_retry_keeps_later_attempt_and_supersedes(tmp_path):
    store = Store(tmp_path)
    with store.writer("r", "t", attempt_ns=100) as w:              # first attempt reaches step 50, then crashes
        w.append("trials", _trial_row(P=8, lr=0.1, width=8, status="running"))
        w.append("curves", {"step": [10, 20, 30, 40, 50], "copy_frac": [0.1, 0.2, 0.3, 0.4, 0.5]})
        w.append("copies", {"step": [50, 50], "train_index": [1, 2], "count": [3, 4]})
    with store.writer("r", "t", attempt_ns=200, resumed_from_step=20) as w:   # resumes from checkpoint at 20
        w.append("trials", _trial_row(P=8, lr=0.1, width=8, status="running"))
        w.append("curves", {"step": [30, 40], "copy_frac": [0.33, 0.44]})
        w.flush()
        w.append("curves", {"step": [40], "copy_frac": [0.444]})   # same attempt rewrites a key: last write wins
        w.append("trials", _trial_row(P=8, lr=0.1, width=8, status="done", final_step=40))
    cu = store.read_pandas("curves")
    assert cu.step.tolist() == [10, 20, 30, 40]                    # 50 of attempt 1 is superseded (50 > 20)
    assert cu.copy_frac.tolist() == [0.1, 0.2, 0.33, 0.444]
    assert cu.attempt_ns.tolist() == [100, 100, 200, 200]
    assert store.read("copies").num_rows == 0                      # step 50 of attempt 1 superseded too
    tr = store.read_pandas("trials")
    assert tr.status.tolist() == ["done"] and tr.attempts.tolist() == [2] and tr.resumed_from_step.tolist() == [20]
    assert store.last_step("r", "t") == 40
    # an attempt with rows but no trials row supersedes from its own resumed_from_step (0 here)
    with store.writer("r", "t", attempt_ns=300) as w:
        w.append("curves", {"step": [10], "copy_frac": [0.9]})
    assert store.read_pandas("curves")[["step", "copy_frac"]].values.tolist() == [[10, 0.9]]


def _reference(events: list[tuple[int, int, list[int], bool]]) -> dict[int, tuple[int, float]]:
    """Pure-python rule: events are (attempt_ns, rfs, steps, has_trials_row) in attempt order. Every row carries its
    attempt's resumed_from_step, so an attempt with rows but no trials row still resumed from its own step."""
    rfs = {a: r for a, r, steps, has in events if has or steps}   # an attempt that left no row leaves no trace

    out: dict[int, tuple[int, float]] = {}
    for a, _, steps, _ in events:
        for s in steps:
            if any(b > a and rfs[b] < s for b in rfs):
                continue
            if s not in out or out[s][0] <= a:
                out[s] = (a, a + s / 1000)
    return out


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.tuples(st.integers(0, 60), st.lists(st.integers(1, 8), min_size=0, max_size=6), st.booleans()),
                min_size=1, max_size=4), st.booleans())
def test_retry_rule_matches_reference(tmp_path_factory, attempts, compact):
    store = Store(tmp_path_factory.mktemp("prop"))
    events = []
    for i, (rfs, steps, has_row) in enumerate(attempts):
        a = 10 * (i + 1)
        steps = sorted({10 * s for s in steps})
        with store.writer("p", "t", attempt_ns=a, resumed_from_step=rfs) as w:
            if has_row:
                w.append("trials", {"status": "running"})
            if steps:
                w.append("curves", {"step": steps, "copy_frac": [a + s / 1000 for s in steps]})
        events.append((a, rfs, steps, has_row))
        if compact and i % 2 == 1:
            store.compact()
    got = store.read_pandas("curves")
    ref = _reference(events)
    assert got.step.tolist() == sorted(ref)
    assert got.attempt_ns.tolist() == [ref[s][0] for s in sorted(ref)]
    assert np.allclose(got.copy_frac, [ref[s][1] for s in sorted(ref)])


# ------------------------------------------------------------------------------------------------ compaction
def _equal(a: dict[str, pa.Table], b: dict[str, pa.Table]) -> None:
    for t in TABLES:
        assert a[t].equals(b[t]), t


def test_compaction_preserves_rows_and_races(tmp_path):
    root = tmp_path / "st"
    store = Store(root)
    _fill(store)
    _fill(store, n_trials=2, sweep="s2")
    with store.writer("s1", "s1-t0", attempt_ns=5000, resumed_from_step=20) as w:   # a retry
        w.append("trials", _trial_row(P=16, lr=1.0, width=32))
        w.append("curves", {"step": [40], "copy_frac": [0.5]})
    before = _read_all(store)
    n_before = len(list(root.rglob("*.parquet")))
    backup = tmp_path / "backup"
    shutil.copytree(root, backup)
    rep = store.compact()
    assert rep["curves"]["s1"]["fragments_in"] > 1
    after = _read_all(Store(root))
    _equal(before, after)
    assert len(list(root.rglob("*.parquet"))) == 2 * len(TABLES)      # one per (table, sweep)
    assert n_before > len(list(root.rglob("*.parquet")))
    # mid-compaction state (merged file written, originals not yet deleted) reads the same
    shutil.copytree(backup, root, dirs_exist_ok=True)
    _equal(before, _read_all(Store(root)))
    # later writes of the same attempt after compaction still win; a second compaction keeps that
    with store.writer("s1", "s1-t0", attempt_ns=5000, resumed_from_step=20) as w:
        w.append("curves", {"step": [40], "copy_frac": [0.75]})
    mid = _read_all(store)
    assert mid["curves"].filter(pc.field("trial_id") == "s1-t0")["copy_frac"].to_pylist()[-1] == 0.75
    store.compact()
    _equal(mid, _read_all(store))


def test_summary_and_print(tmp_path, capsys):
    store = Store(tmp_path)
    _fill(store, n_trials=2)
    with store.writer("s1", "s1-x", attempt_ns=1) as w:
        w.append("trials", _trial_row(P=1, lr=1, width=1, status="running"))
    s = store.summary()["s1"]
    assert s["trials"] == {"done": 2, "running": 1}
    assert s["rows"]["curves"] == 8 and s["fragments"]["curves"] == 8 and s["last_write"]
    print_summary(store)
    assert "s1" in capsys.readouterr().out


# ------------------------------------------------------------------------------------------------ damage / versions
def test_corrupt_fragments_are_reported_and_skipped(tmp_path):
    root = tmp_path / "st"
    store = Store(root)
    _fill(store, n_trials=3)
    good = store.read("curves")
    frags = sorted((root / "curves" / "s1").glob("*.parquet"))
    truncated = frags[0].with_name("99999999999999999999_1_00000_aaaa_trunc.parquet")
    truncated.write_bytes(frags[0].read_bytes()[: frags[0].stat().st_size // 2])
    garbage = frags[0].with_name("99999999999999999998_1_00000_bbbb_garbage.parquet")
    garbage.write_bytes(os.urandom(3000))
    flipped = frags[1].with_name("99999999999999999997_1_00000_cccc_flipped.parquet")
    data = bytearray(frags[1].read_bytes())
    for i in range(8, len(data) // 3):                 # damage the data pages, keep the footer intact
        data[i] ^= 0x5A
    flipped.write_bytes(bytes(data))
    store2 = Store(root)
    with pytest.warns(RuntimeWarning, match="skipped"):
        got = store2.read("curves")
    assert got.equals(good)
    assert len(store2.problems) == 3
    for p in (truncated, garbage, flipped):
        assert any(p.name in msg for msg in store2.problems)
    # compaction leaves damaged files alone and still preserves the good rows
    with pytest.warns(RuntimeWarning):
        store2.compact()
        assert store2.read("curves").equals(good)
    assert truncated.exists() and garbage.exists()


def test_newer_schema_version_is_refused(tmp_path):
    store = Store(tmp_path)
    _fill(store, n_trials=1)
    t = pa.table({"sweep": ["s1"], "trial_id": ["future"], "attempt_ns": [1], "step": [1]})
    t = t.replace_schema_metadata({VERSION_KEY: str(SCHEMA_VERSION + 1).encode()})
    pq.write_table(t, tmp_path / "curves" / "s1" / "00000000000000000001_1_00000_ffff_future.parquet")
    with pytest.raises(SchemaVersionError, match=f"version {SCHEMA_VERSION + 1}.*<= {SCHEMA_VERSION}"):
        store.read("curves")
    assert store.read("copies").num_rows > 0                    # other tables unaffected


# ------------------------------------------------------------------------------------------------ filters
def test_filters_push_down_and_match_pandas(tmp_path):
    store = Store(tmp_path / "st")
    _fill(store)
    _fill(store, n_trials=2, sweep="s2")
    old = store.read("curves", trials=["s1-t1"], filter=pc.field("step") == 40)["copy_frac"][0].as_py()
    with store.writer("s1", "s1-t1", attempt_ns=9000, resumed_from_step=20) as w:
        w.append("trials", _trial_row(P=32, lr=0.1, width=64))
        w.append("curves", {"step": [40], "copy_frac": [0.99]})
    cu = store.read_pandas("curves")
    tr = store.read_pandas("trials")
    both = cu.merge(tr[["sweep", "trial_id", "P", "cfg.train.lr", "cfg.model.width"]], on=["sweep", "trial_id"])
    cases = [
        (pc.field("P") > 32, both["P"] > 32),
        (pc.field("cfg.train.lr") < 0.5, both["cfg.train.lr"] < 0.5),
        (pc.field("step") >= 40, both["step"] >= 40),
        (pc.field("copy_frac") > 0.5, both["copy_frac"] > 0.5),
        ((pc.field("copy_frac") > 0.3) & (pc.field("cfg.model.width") == 64),
         (both["copy_frac"] > 0.3) & (both["cfg.model.width"] == 64)),
    ]
    for expr, mask in cases:
        got = store.read_pandas("curves", filter=expr)
        exp = cu[mask.values].reset_index(drop=True)
        pd.testing.assert_frame_equal(got, exp, check_like=False)
    # a value filter applies to deduplicated rows: the superseded value never sneaks back in
    assert store.read("curves", sweep="s1", filter=pc.field("copy_frac") == old).num_rows == 0   # s2 repeats s1 values
    assert store.read("curves", filter=pc.field("copy_frac") == 0.99)["trial_id"].to_pylist() == ["s1-t1"]
    got = store.read_pandas("trials", filter=pc.field("cfg.model.width") == 64)
    pd.testing.assert_frame_equal(got, tr[tr["cfg.model.width"] == 64].reset_index(drop=True))
    # sweep and trial pushdown: fragments of other sweeps/trials are never opened (a damaged one is not noticed)
    bad = next((tmp_path / "st" / "curves" / "s1").glob("*_s1-t2.parquet"))
    bad.write_bytes(b"garbage")
    sub = store.read_pandas("curves", sweep="s1", trials=["s1-t0", "s1-t3"], columns=["trial_id", "step"])
    assert list(sub.columns) == ["trial_id", "step"] and sorted(set(sub.trial_id)) == ["s1-t0", "s1-t3"]
    assert len(store.read("curves", sweep="s2")) == 8 and not store.problems
    with pytest.raises(ValueError, match="does not apply"):
        store.read("curves", filter=pc.field("nonexistent") > 1)


# ------------------------------------------------------------------------------------------------ object stores
def test_object_store_path_single_put():
    fs = pafs._MockFileSystem()                    # pyarrow's in-memory filesystem: no atomic rename, single put
    store = Store("bucket/store", filesystem=fs)
    assert not store.atomic_rename and Store("/tmp/x").atomic_rename
    _fill(store, n_trials=2)
    before = _read_all(store)
    infos = fs.get_file_info(pafs.FileSelector("bucket/store", recursive=True))
    assert not any(i.base_name.startswith(".") for i in infos)
    store.compact()
    _equal(before, _read_all(store))
    assert store.read("curves").num_rows == 8
