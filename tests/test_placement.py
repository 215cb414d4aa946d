"""docs/findings/placement.py leaves out the trials analysis.flags flags, as `fit` and the report do, and keeps them
with --keep-flagged: its laws equal the placement laws fitted on the onsets without (with) the flagged trial."""
from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from tests.test_findings import _script


def test_placement_leaves_flagged_trials_out_unless_kept(tmp_path, capsys):
    from analysis import onset
    from analysis.synthetic import synthetic_tables, write_synthetic_store

    placement = _script("placement")
    tb = synthetic_tables(tails=(placement.HIGH, placement.LOW), Ls=(2,), Ps=(64, 128, 256, 512), n_seeds=3,
                          tail_shift={placement.HIGH: 0.0, placement.LOW: -0.5}, sigma=0.2, budget=20_000,
                          n_evals=24, detail_trials=0)
    t = tb["trials"]
    bad = 5                                                # p(T) = 0.9 > 0.5: flagged
    tb["trials"] = t.append_column("train_mass", pa.array(np.where(np.arange(t.num_rows) == bad, 0.9, 0.01)))
    flagged = t.column("trial_id")[bad].as_py()
    store = write_synthetic_store(tmp_path / "store", tb, sweep="study")
    ons = pa.concat_tables([onset.onsets(store, thetas=placement.THETAS, metric=m, gen_metric=None)
                            for m in ("mem_twin", "copy_frac")], promote_options="permissive")
    without = ons.filter(pc.not_equal(ons.column("trial_id"), flagged))
    assert without.num_rows < ons.num_rows
    for keep, expect in ((False, placement.placement_laws(without)), (True, placement.placement_laws(ons))):
        out = tmp_path / f"placement_{keep}.csv"
        placement.main(str(tmp_path / "store"), str(out), keep_flagged=keep)
        got = pacsv.read_csv(out)
        for col in ("scope", "metric", "theta", "tail", "n_obs", "n_cens", "shift", "beta"):
            a, b = got.column(col).to_pylist(), expect.column(col).to_pylist()
            assert a == b or np.allclose(np.array(a, float), np.array(b, float), equal_nan=True), (keep, col)
    printed = capsys.readouterr().out
    assert f"Flagged trials: 1 of {t.num_rows}" in printed and flagged in printed
    # the two answers differ, so the comparison above tells them apart
    assert placement.placement_laws(without).column("n_obs").to_pylist() != \
        placement.placement_laws(ons).column("n_obs").to_pylist()
