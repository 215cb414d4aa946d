"""The store as other tools see it and when parts of it are damaged: standard readers, stores of the previous
layout, SQL views, damage that stays local, clock-free attempt order, compaction that loses the race."""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from analysis.query import sql
from analysis.store.sql import QueryError
from analysis.schema import SCHEMA_VERSION, VERSION_KEY
from analysis.store import Store, print_summary
from raw_store import assert_raw_reads_are_the_store_reads, raw_reads, raw_rows
from sweeps.spec import load_spec
from sweeps.trial import train_trial

MEMSWEEP = [sys.executable, "-m", "sweeps.cli"]


@pytest.fixture(scope="module")
def trial_store(tmp_path_factory) -> Path:
    """A store written by the trial code (two tiny trials of the tiny preset)."""
    root = tmp_path_factory.mktemp("layout") / "store"
    spec = load_spec("tiny").with_store(str(root))
    for t in spec.trials()[:2]:
        train_trial(t)
    return root


def _retried(store: Store) -> None:
    """Trial t of sweep r: attempt 1 writes steps 10..50; attempt 2 resumed from 20 rewrites 30, 40; plus trial u."""
    with store.writer("r", "t", attempt_ns=100, attempt=1) as w:
        w.append("trials", {"status": "running"})
        w.append("curves", {"step": [10, 20, 30, 40, 50], "copy_frac": [0.1, 0.2, 0.3, 0.4, 0.5]})
    with store.writer("r", "t", attempt_ns=200, attempt=2, resumed_from_step=20) as w:
        w.append("trials", {"status": "done", "final_step": 40})
        w.append("curves", {"step": [30, 40], "copy_frac": [0.33, 0.44]})
    with store.writer("r", "u", attempt_ns=300, attempt=1) as w:
        w.append("trials", {"status": "done", "final_step": 20})
        w.append("curves", {"step": [10, 20], "copy_frac": [0.7, 0.8]})


# ------------------------------------------------------------------------------------------- standard readers
def test_standard_readers_open_the_store(trial_store):
    import duckdb
    import pandas as pd
    import polars as pl

    want = Store(trial_store).read("curves")
    n_raw = len(raw_rows(trial_store, "curves", ["step"]))
    folder = str(trial_store / "curves")
    assert len(pd.read_parquet(folder)) == n_raw
    assert pq.read_table(folder).num_rows == n_raw
    assert pl.read_parquet(f"{folder}/*/*.parquet").height == n_raw
    got = duckdb.sql(f"select sweep, trial_id, step from read_parquet('{folder}/*/*.parquet') order by 2, 3")
    assert [tuple(r) for r in got.fetchall()] == list(zip(*(want[c].to_pylist() for c in ("sweep", "trial_id",
                                                                                          "step"))))
    df = pd.read_parquet(folder)
    assert df["sweep"].astype(str).unique().tolist() == ["tiny"]        # one sweep column, a plain string


def test_after_compaction_raw_readers_see_what_the_store_reads(tmp_path):
    """A retried trial: before compaction a raw read holds the superseded attempt's trials row and steps; after it
    (the runner compacts when a sweep ends) pandas, pyarrow, polars and duckdb read exactly `Store.read`'s rows."""
    store = Store(tmp_path)
    _retried(store)
    with store.writer("r", "t", attempt_ns=200, attempt=2, resumed_from_step=20) as w:   # a same-attempt rewrite
        w.append("curves", {"step": [40], "copy_frac": [0.444]})
    before = raw_reads(tmp_path, "trials")["duckdb"]
    assert [r for r in before if r[1] == "t" and r[-1] == "running"]          # attempt 1's row, as the issue saw
    assert len(raw_reads(tmp_path, "curves")["pandas"]) == 10 > store.read("curves").num_rows == 6
    store.compact()
    assert_raw_reads_are_the_store_reads(tmp_path, ("trials", "curves"))
    tr = Store(tmp_path).read("trials")
    assert tr["attempts"].to_pylist() == [2, 1] and tr["status"].to_pylist() == ["done", "done"]
    assert pd.read_parquet(tmp_path / "trials")["attempts"].tolist() == [2, 1]      # the count survives, raw too
    assert Store(tmp_path).read("curves")["copy_frac"].to_pylist() == [0.1, 0.2, 0.33, 0.444, 0.7, 0.8]


def test_sql_views_are_what_the_store_reads(tmp_path):
    store = Store(tmp_path / "a")
    _retried(store)
    got = store.sql("select trial_id, step, copy_frac from curves order by trial_id, step")
    want = store.read("curves", columns=["trial_id", "step", "copy_frac"])
    assert got.to_pylist() == want.to_pylist()
    assert got.num_rows == 6 < len(raw_rows(tmp_path / "a", "curves", ["step"]))      # the retried rows resolved
    other = Store(tmp_path / "b")
    _retried(other)
    both = sql("select store, count(*) as n from curves group by store order by store", [store, other])
    assert both["n"].to_pylist() == [6, 6] and set(both["store"].to_pylist()) == {store.uri, other.uri}
    assert sql("select status from trials where trial_id = 't'", [store])["status"].to_pylist() == ["done"]


@pytest.mark.parametrize("query", ["select * from read_csv('/etc/passwd', header=false)",
                                   "select * from read_text('/etc/passwd')",
                                   "select * from glob('/root/*')",
                                   "select 1; COPY (select * from curves) TO '{target}'",
                                   "COPY (select * from curves) TO '{target}'",
                                   "select * from curves; SET enable_external_access = true",
                                   "SET enable_external_access = true"])
def test_sql_sees_the_store_and_nothing_else(tmp_path, query):
    store = Store(tmp_path / "s")
    _retried(store)
    target = tmp_path / "out.csv"
    with pytest.raises(QueryError) as e:
        store.sql(query.format(target=target))
    assert not target.exists()
    assert "root:" not in str(e.value)                            # nothing of /etc/passwd leaks into the error
    assert store.sql("select count(*) as n from curves")["n"].to_pylist() == [6]   # the store itself still reads


def test_sql_command(tmp_path):
    store = Store(tmp_path / "s")
    _retried(store)
    out = subprocess.run(MEMSWEEP + ["sql", str(tmp_path / "s"), "select count(*) as n from curves"],
                         capture_output=True, text=True)
    assert out.returncode == 0 and " 6 " in out.stdout, out.stdout + out.stderr
    bad = subprocess.run(MEMSWEEP + ["sql", str(tmp_path / "s"), "select nope from curves"],
                         capture_output=True, text=True)
    assert bad.returncode == 2 and "query failed" in bad.stderr and "Traceback" not in bad.stderr
    typo = subprocess.run(MEMSWEEP + ["sql", str(tmp_path / "s"), "select * from curve"], capture_output=True,
                          text=True)
    assert typo.returncode == 2 and "did you mean 'curves'" in typo.stderr and "duckdb_views" not in typo.stderr, \
        typo.stderr
    assert "trials, curves, level_curves" in " ".join(typo.stderr.split())
    passwd = subprocess.run(MEMSWEEP + ["sql", str(tmp_path / "s"), "select * from read_text('/etc/passwd')"],
                            capture_output=True, text=True)
    assert passwd.returncode == 2 and "root:" not in passwd.stdout + passwd.stderr, passwd.stdout
    # a result wider than the terminal (every trials column) is shown one row at a time, every name and value legible
    wide = subprocess.run(MEMSWEEP + ["sql", str(tmp_path / "s"), "select * from trials"],
                          capture_output=True, text=True)
    n_cols = len(store.sql("select * from trials").column_names)
    assert wide.returncode == 0 and n_cols * 11 > 200, (n_cols, wide.stderr)   # 200: the console width off a tty
    assert "row 1" in wide.stdout and "trial_id" in wide.stdout and "status" in wide.stdout, wide.stdout
    assert " done " in wide.stdout and " t " in wide.stdout, wide.stdout


# ------------------------------------------------------------------------------------------- the older layout
def _as_version_1(root: Path) -> None:
    """Rewrite a store as version 1 wrote it: `sweep=<name>` folders, no attempt counter, no resumed_from_step
    outside the trials table, version 1 in the metadata."""
    for table_dir in [p for p in root.iterdir() if p.is_dir() and not p.name.startswith("_")]:
        for sweep_dir in [p for p in table_dir.iterdir() if p.is_dir()]:
            old = table_dir / f"sweep={sweep_dir.name}"
            sweep_dir.rename(old)
            for f in old.glob("*.parquet"):
                t = pq.read_table(f)
                drop = ["attempt"] + (["resumed_from_step"] if table_dir.name != "trials" else [])
                t = t.drop_columns([c for c in drop if c in t.column_names])
                pq.write_table(t.replace_schema_metadata({VERSION_KEY: b"1"}), f)


def test_a_store_of_the_previous_layout_reads_the_same(trial_store, tmp_path):
    assert SCHEMA_VERSION == 2
    old_root = tmp_path / "old"
    shutil.copytree(trial_store, old_root)
    _as_version_1(old_root)
    assert not list(old_root.glob("curves/tiny")) and list(old_root.glob("curves/sweep=tiny"))
    new, old = Store(trial_store), Store(old_root)
    for table in ("trials", "curves", "copies", "samples", "level_curves", "parts"):
        a, b = new.read(table), old.read(table)
        skip = {"attempt"} | ({"resumed_from_step"} if table != "trials" else set())
        cols = [c for c in a.column_names if c not in skip]
        assert a.select(cols).equals(b.select(cols)), table
    assert not old.problems
    old.compact()                                         # compaction moves an old store to the new layout
    assert list(old_root.glob("curves/tiny/*.parquet")) and Store(old_root).read("curves").num_rows == \
        new.read("curves").num_rows
    assert not list(old_root.glob("*/sweep=*"))           # every version-1 folder migrated and removed,
    assert len(pd.read_parquet(old_root / "curves")) == new.read("curves").num_rows   # so pandas reads it again


# ------------------------------------------------------------------------------------------- damage stays local
def test_a_damaged_trials_file_loses_no_curve_rows(tmp_path):
    store = Store(tmp_path)
    _retried(store)
    want = store.read("curves")
    for f in (tmp_path / "trials").glob("*/*.parquet"):
        f.write_bytes(f.read_bytes()[:40])                # every trials fragment truncated
    damaged = Store(tmp_path)
    got = damaged.read("curves")
    assert got.select(["trial_id", "step", "copy_frac"]).equals(want.select(["trial_id", "step", "copy_frac"]))
    assert len(damaged.problems) == 3 and all("trials" in p for p in damaged.problems)


def _foreign(root: Path, name: str, table: pa.Table) -> Path:
    path = root / "curves" / "r" / name
    pq.write_table(table, path)
    return path


@pytest.mark.parametrize("kind", ["step as text", "step as numeric text", "no key columns"])
def test_wrong_typed_and_keyless_fragments_are_skipped_and_reported(tmp_path, kind, capsys):
    store = Store(tmp_path)
    _retried(store)
    want = store.read("curves")
    base = dict(sweep=["r"], trial_id=["t"], attempt_ns=[999], attempt=[9], copy_frac=[1.0])
    bad = {"step as text": pa.table({**base, "step": ["ten"]}),
           "step as numeric text": pa.table({**base, "step": ["10"]}),
           "no key columns": pa.table({"copy_frac": [1.0, 2.0]})}[kind]
    path = _foreign(tmp_path, "99999999999999999999_1_00000_beef_t.parquet", bad)
    fresh = Store(tmp_path)
    assert fresh.read("curves").equals(want)              # no crash, no phantom row, the foreign file left out
    assert len(fresh.problems) == 1 and str(path) in fresh.problems[0]
    print_summary(Store(tmp_path))
    out = capsys.readouterr().out
    assert "1 fragment(s) skipped" in out and path.name in out
    fit = subprocess.run(MEMSWEEP + ["fit", str(tmp_path)], capture_output=True, text=True)
    assert path.name in fit.stdout + fit.stderr


def test_attempt_order_does_not_follow_the_clock(tmp_path):
    """A retry on a node whose clock is behind: its attempt_ns is smaller, its attempt counter larger; the store
    reads the retry as the latest attempt (before the counter, the trial read as running with 4 of 7 rows)."""
    store = Store(tmp_path)
    first = store.next_attempt("c", "t")
    with store.writer("c", "t", attempt_ns=5_000, attempt=first) as w:
        w.append("trials", {"status": "running"})
        w.append("curves", {"step": [10, 20, 30, 40], "copy_frac": [0.1, 0.2, 0.3, 0.4]})
    second = store.next_attempt("c", "t")
    assert (first, second) == (1, 2)
    with store.writer("c", "t", attempt_ns=4_000, attempt=second, resumed_from_step=20) as w:   # clock behind
        w.append("trials", {"status": "running"})
        w.append("curves", {"step": [30, 40, 50, 60, 70], "copy_frac": [0.33, 0.44, 0.5, 0.6, 0.7]})
        w.append("trials", {"status": "done", "final_step": 70})
    tr = store.read("trials").to_pylist()[0]
    assert (tr["status"], tr["attempt"], tr["attempts"]) == ("done", 2, 2)
    cu = store.read("curves")
    assert cu["step"].to_pylist() == [10, 20, 30, 40, 50, 60, 70]
    assert cu["copy_frac"].to_pylist() == [0.1, 0.2, 0.33, 0.44, 0.5, 0.6, 0.7]
    store.compact()
    assert Store(tmp_path).read("curves")["copy_frac"].to_pylist() == [0.1, 0.2, 0.33, 0.44, 0.5, 0.6, 0.7]


def test_compaction_tolerates_fragments_that_vanish(tmp_path, monkeypatch):
    store = Store(tmp_path)
    _retried(store)
    want = store.read("curves")
    real = Store._read_frags

    def racing(self, frags, columns, filt):
        for f in frags:                                   # another compactor got there first
            if f.table == "curves":
                Path(f.path).unlink(missing_ok=True)
                break
        return real(self, frags, columns, filt)

    monkeypatch.setattr(Store, "_read_frags", racing)
    report = store.compact(tables=["curves"])
    monkeypatch.undo()
    assert "skipped" in report["curves"]["r"]
    # the compaction merged nothing and deleted nothing: only the fragment the other process removed is gone
    # (attempt 1 of t, steps 10..50); attempt 2 of t and trial u are intact
    left = Store(tmp_path).read("curves")
    assert list(zip(left["trial_id"].to_pylist(), left["step"].to_pylist())) == [("t", 30), ("t", 40), ("u", 10),
                                                                                ("u", 20)]
    assert np.all(np.isin(left["copy_frac"].to_numpy(), want["copy_frac"].to_numpy()))


# ------------------------------------------------------------------------------------------- symlinks, disk full
def test_a_symlinked_sweep_folder_gets_no_write_and_no_delete(tmp_path):
    """A symlink planted at <store>/curves/<sweep> (a shared store): a write through it is refused naming the path,
    and compaction merges and deletes nothing there; the fragments it leads to stay as they were."""
    from analysis.store import OutsideStoreError

    root, outside = tmp_path / "store", tmp_path / "elsewhere"
    store = Store(root)
    _retried(store)                                       # sweep r, a real folder
    other = Store(tmp_path / "victim")
    _retried(other)
    victim = tmp_path / "victim" / "curves" / "r"
    before = sorted(p.name for p in victim.iterdir())
    (root / "curves" / "x").symlink_to(victim, target_is_directory=True)
    with pytest.raises(OutsideStoreError, match=str(root / "curves" / "x")):
        with store.writer("x", "t", attempt=1) as w:
            w.append("curves", {"step": [10], "copy_frac": [0.5]})
    assert sorted(p.name for p in victim.iterdir()) == before
    report = Store(root).compact()
    assert "outside the store" in report["curves"]["x"]["skipped"] and str(root / "curves" / "x") in \
        report["curves"]["x"]["skipped"]
    assert sorted(p.name for p in victim.iterdir()) == before            # nothing deleted through the link
    assert report["curves"]["r"]["fragments_in"] == 3                      # the store's own folders compacted
    assert not outside.exists()


def test_a_symlinked_spec_copy_is_refused(tmp_path):
    """A symlink planted at <store>/_specs/<name>-<hash>.yaml (dangling, so the write would create its target):
    recording the effective spec refuses, naming the path, and writes nothing outside the store."""
    from analysis.store import OutsideStoreError
    from sweeps.spec.storage import local_path, record_spec, spec_copy_uri

    spec = load_spec("tiny").with_store(str(tmp_path / "store"))
    link = local_path(spec_copy_uri(spec))
    link.parent.mkdir(parents=True)
    target = tmp_path / "outside.yaml"
    link.symlink_to(target)
    with pytest.raises(OutsideStoreError, match=str(link)):
        record_spec(spec)
    assert not target.exists()
    link.unlink()                                         # a symlinked _specs folder is refused the same way
    link.parent.rmdir()
    (tmp_path / "specs_elsewhere").mkdir()
    link.parent.symlink_to(tmp_path / "specs_elsewhere", target_is_directory=True)
    with pytest.raises(OutsideStoreError):
        record_spec(spec)
    assert not list((tmp_path / "specs_elsewhere").iterdir())


def test_a_full_disk_names_the_store_and_the_file(tmp_path, monkeypatch):
    """ENOSPC while a fragment is written (simulated): the error keeps its errno and names the store and the file,
    as the README says, and leaves no partial or temporary file behind."""
    import errno
    import os

    store = Store(tmp_path / "store")
    _retried(store)
    files = sorted(p for p in (tmp_path / "store").rglob("*") if p.is_file())

    def full(table, where, **kwargs):
        where.write(b"PAR1 partial")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(pq, "write_table", full)
    with pytest.raises(OSError) as e:
        with store.writer("r", "v", attempt=1) as w:
            w.append("curves", {"step": [10], "copy_frac": [0.5]})
    monkeypatch.undo()
    assert e.value.errno == errno.ENOSPC and "No space left on device" in str(e.value)
    assert str(tmp_path / "store") in str(e.value) and "/curves/r/" in str(e.value), str(e.value)
    assert sorted(p for p in (tmp_path / "store").rglob("*") if p.is_file()) == files
