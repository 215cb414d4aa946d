"""A sweep's trials of different effective specs (a resume after editing a fixed setting) are kept apart by `fit`
and `report` unless pooled (`--pool-specs`); a resume that only adds axis values does not split a sweep; stores
written before trials recorded their spec still load (issue 24, item 11). Ray-free: planted stores."""
from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc
import pytest

from analysis.fits import fit_store
from analysis.onset import analysed
from analysis.synthetic import synthetic_tables, write_synthetic_store
from sweeps.spec import load_spec

SWEEP = "s"
PS = (64, 128, 256, 512, 1024)


def _planted(name: str, logC: float, lr: float | None, key: str | None) -> dict[str, pa.Table]:
    """A planted-law half sweep (uniform tail, L=2, beta=1) whose trials carry spec key `key` (no column when
    None: a store from before it) and the fixed setting cfg.train.lr."""
    tb = synthetic_tables(sweep=name, tails=("uniform",), Ls=(2,), Ps=PS, n_seeds=3, logC=logC, sigma=0.1,
                          budget=200_000, n_evals=30, detail_trials=0, seed=len(name))
    trials = tb["trials"]
    n = trials.num_rows
    if lr is not None:
        trials = trials.append_column("cfg.train.lr", pa.array([lr] * n, pa.float64()))
        trials = trials.append_column("cfg.data.P", trials.column("P"))       # an axis: varies within a spec
    if key is not None:
        trials = trials.append_column("spec", pa.array([key] * n, pa.string()))
        trials = trials.append_column("spec_copy", pa.array([f"c{key[1:]}"] * n, pa.string()))
    return {**tb, "trials": trials}


def _store(tmp_path, *halves: dict[str, pa.Table]):
    """One sweep SWEEP written from the halves (their trial ids differ: each half names its own)."""
    st = None
    for tb in halves:
        st = write_synthetic_store(st or tmp_path / "store", tb, sweep=SWEEP)
    return st


def _groups(laws: pa.Table) -> dict[str, int]:
    """{tail label: trials} of the tau_mem group laws at theta 0.5."""
    g = laws.filter(pc.and_(pc.equal(laws.column("scope"), "group"), pc.equal(laws.column("onset"), "mem")))
    g = g.filter(pc.equal(g.column("theta"), 0.5))
    return dict(zip(g.column("tail").to_pylist(), g.column("n_trials").to_pylist()))


def test_specs_differing_in_lr_are_kept_apart_and_pooled_on_request(tmp_path):
    # spec A (lr 1e-3) and spec B (lr 1e-2, onsets e^1.5 = 4.5x earlier) of one sweep: 15 trials each
    st = _store(tmp_path, _planted("a", 3.0, 1e-3, "aaaa0001"), _planted("b", 1.5, 1e-2, "bbbb0002"))
    laws = fit_store(st, sweep=SWEEP, thetas=(0.5,), n_boot=20)
    assert _groups(laws) == {f"uniform ({SWEEP}@aaaa0001)": 15, f"uniform ({SWEEP}@bbbb0002)": 15}
    g = laws.filter(pc.and_(pc.equal(laws.column("scope"), "group"), pc.equal(laws.column("onset"), "mem")))
    logC = dict(zip(g.column("tail").to_pylist(), g.column("logC").to_pylist()))
    assert logC[f"uniform ({SWEEP}@aaaa0001)"] - logC[f"uniform ({SWEEP}@bbbb0002)"] == pytest.approx(1.5, abs=0.2)
    kept, notes = analysed(st.read("trials", sweep=SWEEP))
    assert set(kept.column("sweep").to_pylist()) == {f"{SWEEP}@aaaa0001", f"{SWEEP}@bbbb0002"}
    (note,) = notes
    assert f"sweep {SWEEP!r} holds trials of 2 effective specs, kept apart" in note
    assert f"{SWEEP}@aaaa0001 (15 trial(s))" in note and f"{SWEEP}@bbbb0002 (15 trial(s))" in note
    assert "train.lr: 0.001 / 0.01" in note and "data.P" not in note          # the fixed setting, not the axis
    assert f"_specs/{SWEEP}-caaa0001.yaml" in note and "--pool-specs" in note
    pooled = fit_store(st, sweep=SWEEP, thetas=(0.5,), n_boot=20, pool_specs=True)
    assert _groups(pooled) == {"uniform": 30}
    assert "pooled as asked" in analysed(st.read("trials"), pool_specs=True)[1][0]


def test_an_axis_extension_does_not_split_a_sweep(tmp_path):
    # the runner's key: adding axis values keeps it, a changed fixed setting changes it
    spec = load_spec("tiny")
    extended = spec.with_overrides(["axes.P=[4,8,12]", "axes.seed=[0,1]"])
    assert extended.digests[0] == spec.digests[0] and extended.digests[1] != spec.digests[1]
    assert {t.spec for t in extended.trials()} == {spec.digests[0]}
    assert spec.with_overrides(["description=other", "resources.cpu=2", "pack.size=2"]).digests[0] == spec.digests[0]
    assert spec.with_overrides(["train.weight_decay=0.0"]).digests[0] == spec.digests[0]  # the default, written
    for edit in ("train.lr=0.01", "train.steps=300", "model.width=16", "eval.n_gen=32", "stop.theta=0.5",
                 "axes.train.lr=[0.003]"):
        assert spec.with_overrides([edit]).digests[0] != spec.digests[0], edit
    # a store of the first run and its resume with more P: one spec, one group, no note
    key = spec.digests[0]
    st = _store(tmp_path, _planted("a", 3.0, 1e-3, key), _planted("b", 3.0, 1e-3, key))
    assert _groups(fit_store(st, sweep=SWEEP, thetas=(0.5,), n_boot=20)) == {"uniform": 30}
    assert analysed(st.read("trials"))[1] == []


def test_trials_rows_carry_the_spec_key_and_copy():
    from sweeps.rows import trials_row

    spec = load_spec("tiny")
    cfg = spec.trials()[0]
    row = trials_row(cfg, "done", 0.0, 10, True)
    assert row["spec"] == [spec.digests[0]] and row["spec_copy"] == [spec.digests[1]]
    assert "cfg.spec" not in row and cfg.trial_id == cfg.__class__.from_dict(
        {**cfg.to_dict(), "spec": "", "spec_copy": "", "trial_id": ""}).trial_id   # ids do not see the spec
    from sweeps.spec.storage import spec_copy_uri
    assert spec_copy_uri(spec).endswith(f"/_specs/tiny-{spec.digests[1]}.yaml")


def test_a_store_without_the_spec_column_loads_as_one_unknown_spec(tmp_path):
    old = _store(tmp_path / "old", _planted("a", 3.0, 1e-3, None), _planted("b", 3.0, 1e-3, None))
    trials = old.read("trials", sweep=SWEEP)
    assert trials.column("spec").null_count == trials.num_rows                   # read as nulls, no crash
    assert _groups(fit_store(old, sweep=SWEEP, thetas=(0.5,), n_boot=20)) == {"uniform": 30}
    assert analysed(trials)[1] == []
    # an old store resumed by this version with the same spec: no recorded setting tells the old trials from the
    # new key, so they count as it (said so); resumed after editing lr: the old trials are one unknown spec, apart
    same = _store(tmp_path / "same", _planted("a", 3.0, 1e-3, None), _planted("b", 3.0, 1e-3, "bbbb0002"))
    assert _groups(fit_store(same, sweep=SWEEP, thetas=(0.5,), n_boot=20)) == {"uniform": 30}
    assert analysed(same.read("trials"))[1] == [f"sweep {SWEEP!r}: 15 trial(s) written before trials recorded "
                                                f"their spec count as {SWEEP}@bbbb0002: no recorded setting tells "
                                                "them apart"]
    edited = _store(tmp_path / "edited", _planted("a", 3.0, 1e-3, None), _planted("b", 1.5, 1e-2, "bbbb0002"))
    assert _groups(fit_store(edited, sweep=SWEEP, thetas=(0.5,), n_boot=20)) == {
        f"uniform ({SWEEP}@unknown)": 15, f"uniform ({SWEEP}@bbbb0002)": 15}
    (note,) = analysed(edited.read("trials"))[1]
    assert f"{SWEEP}@unknown (15 trial(s), written before trials recorded their spec)" in note
    assert "train.lr: 0.001 / 0.01" in note


def test_report_and_fit_cli_keep_specs_apart_unless_pooled(tmp_path, capsys):
    import pyarrow.csv as pacsv

    from analysis.report import read_tables
    from sweeps.cli import main

    st = _store(tmp_path, _planted("a", 3.0, 1e-3, "aaaa0001"), _planted("b", 1.5, 1e-2, "bbbb0002"))
    apart = {f"uniform ({SWEEP}@aaaa0001)", f"uniform ({SWEEP}@bbbb0002)"}
    assert main(["report", st.uri, "--out", str(tmp_path / "report")]) == 0
    laws = pacsv.read_csv(tmp_path / "report" / "laws.csv")
    assert set(laws.filter(pc.equal(laws.column("scope"), "group")).column("tail").to_pylist()) == apart
    html = (tmp_path / "report" / "index.html").read_text()
    head = html.index("Trials left out or kept apart: 1 note(s)")
    assert "train.lr: 0.001 / 0.01" in html[head:] and html.index("<h2>Store</h2>") > head
    for pool, tails in ((False, apart), (True, {"uniform"})):      # what the report reads with --pool-specs
        assert set(read_tables(st, pool_specs=pool)["trials"].column("tail").to_pylist()) == tails
    assert main(["fit", st.uri, "--no-nulls"]) == 0
    printed = " ".join(capsys.readouterr().out.split())
    assert f"uniform ({SWEEP}@aaaa0001)" in printed and "kept apart in every table and law" in printed
    assert main(["fit", st.uri, "--no-nulls", "--pool-specs"]) == 0
    printed = " ".join(capsys.readouterr().out.split())
    assert f"{SWEEP}@aaaa0001)" not in printed and "pooled as asked (--pool-specs)" in printed


def test_the_joint_law_of_kept_apart_groups_still_takes_a_uniform_group_as_reference():
    from analysis.fits import fit_laws
    from analysis.onset import onsets_from_tables
    from analysis.specs import split_specs

    tb = synthetic_tables(tails=("uniform", "power(a=1)"), Ls=(2,), Ps=PS, n_seeds=2, budget=200_000, n_evals=20,
                          detail_trials=0)
    t = tb["trials"]
    keys = ["aaaa0001" if i % 2 else "bbbb0002" for i in range(t.num_rows)]
    t = t.append_column("sweep", pa.array([SWEEP] * t.num_rows)).append_column("spec", pa.array(keys))
    trials, _ = split_specs(t)
    laws = fit_laws(onsets_from_tables(trials, tb["curves"], (0.5,)), theta=0.5, n_boot=0)
    joint = laws.filter(pc.and_(pc.equal(laws.column("scope"), "joint"), pc.equal(laws.column("onset"), "mem")))
    # 4 groups; "power(a=1) (...)" sorts first, the uniform group is the reference all the same
    assert joint.column("reference").to_pylist() == [f"uniform ({SWEEP}@aaaa0001) L=2"]
