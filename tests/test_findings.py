"""The findings' path, run on a small synthetic store in seconds: the same commands as docs/findings/run.sh (report,
fit, per-trial onsets, by-P cells), then docs/findings/refit.py refits every law and pooled number from the
per-trial CSVs alone and must agree with the files made from the store; and a change to a per-trial row moves the
refit number (the refit reads the rows, it does not copy the store's result)."""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pyarrow.csv as pacsv

ROOT = Path(__file__).resolve().parents[1]


def _script(name: str):
    sys.path.insert(0, str(ROOT / "docs" / "findings"))
    spec = importlib.util.spec_from_file_location(f"findings_{name}", ROOT / "docs" / "findings" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_refit_reproduces_the_findings_files_from_per_trial_csvs(tmp_path, capsys):
    from analysis.report import write_report
    from analysis.synthetic import synthetic_tables, write_synthetic_store
    from sweeps.cli import main as cli

    import numpy as np
    import pyarrow as pa

    tb = synthetic_tables(Ls=(2,), Ps=(64, 256), n_seeds=3, budget=3000, n_evals=12, detail_trials=1)
    # one trial with per-sample rows is flagged (p(T) > 0.5): the report, fit and by-P cells leave it out, and the
    # refit must leave it out the same way (and give the other trials the same simulated nulls)
    t = tb["trials"]
    flagged = int(np.flatnonzero(np.array(t.column("seed").to_pylist()) == 0)[0])
    tb["trials"] = t.append_column("train_mass", pa.array(np.where(np.arange(t.num_rows) == flagged, 0.9, 0.1)))
    flagged = t.column("trial_id")[flagged].as_py()
    store = write_synthetic_store(tmp_path / "store", tb, sweep="regime")
    out = tmp_path / "findings" / "regime"
    write_report(store, out, sweep="regime")
    assert cli(["fit", str(tmp_path / "store"), "--theta", "0.1", "--theta", "0.5", "--theta", "0.9", "--metric",
                "copy_frac", "--out", str(out / "laws_copy_frac.csv")]) == 0
    printed = capsys.readouterr().out
    assert "volume-matched" in printed and "grammar-faithful" in printed and "empirical-grammar" in printed
    _script("trials").main(str(tmp_path / "store"), str(out / "onsets_trials.csv"))
    _script("by_p").main(str(tmp_path / "store"), str(out / "by_p.csv"))
    _script("window").main(str(tmp_path / "store"), str(out))
    refit = _script("refit")
    assert flagged not in refit.read_csv(out / "memorder_trials.csv").column("trial_id").to_pylist()
    assert flagged in refit.read_csv(out / "onsets_trials.csv").column("trial_id").to_pylist()
    assert refit.main(str(tmp_path / "findings"), str(tmp_path / "refit"), ["regime"]) == 0
    said = capsys.readouterr().out
    for name in ("laws.csv", "laws_copy_frac.csv", "memorder.csv", "slop.csv", "by_p.csv", "window_cells.csv",
                 "window_laws.csv", "window_pooled.csv"):
        assert f"regime/{name}: refit agrees" in said, said
    # the refit rests on the rows: moving one trial's excess moves the pooled excess
    rows = refit.read_csv(out / "memorder_trials.csv").to_pandas()
    rows.loc[0, "rho_proto_vol_excess"] += 1.0
    pacsv.write_csv(__import__("pyarrow").Table.from_pandas(rows, preserve_index=False), out / "memorder_trials.csv")
    assert refit.main(str(tmp_path / "findings"), str(tmp_path / "refit"), ["regime"]) == 1
    assert "regime/memorder.csv: DIFFERS in" in capsys.readouterr().out


def test_window_tables_keep_each_depth_apart(tmp_path):
    """With several L in one sweep (depth), the window's cells and pooled rows are per (tail, L): a planted factor
    e between L = 2 and L = 3 shows in the cells' medians, and each pooled row is the mean over its own trials."""
    from analysis import memorder, onset
    from analysis.synthetic import synthetic_tables, write_synthetic_store

    import numpy as np

    window = _script("window")
    tb = synthetic_tables(tails=("uniform",), Ls=(2, 3), Ps=(64, 256), n_seeds=3, budget=200_000, n_evals=40,
                          sigma=0.0, L_shift=1.0, detail_trials=2)
    st = write_synthetic_store(tmp_path / "store", tb, sweep="depth")
    ons = onset.onsets(st, thetas=(window.THETA,))
    cells = window.cells(ons).to_pylist()
    assert sorted((r["L"], r["P"], r["n"]) for r in cells) == [(2, 64, 3), (2, 256, 3), (3, 64, 3), (3, 256, 3)]
    med = {(r["L"], r["P"]): r["tau_mem_median"] for r in cells}
    for P in (64, 256):
        assert abs(np.log(med[(3, P)] / med[(2, P)]) - 1.0) < 0.15, med
    order = memorder.memorder(st)
    pooled = window.pooled(ons, order, __import__("pyarrow").table({})).to_pylist()
    assert sorted(r["L"] for r in pooled) == [2, 3]
    rows = order.to_pylist()
    for r in pooled:
        own = [o["rho_proto"] for o in rows if o["L"] == r["L"] and np.isfinite(o["rho_proto"])]
        assert r["n_rho_proto"] == len(own) == 4
        assert abs(r["rho_proto_mean"] - np.mean(own)) < 1e-12
