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
