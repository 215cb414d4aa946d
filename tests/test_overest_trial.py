"""Overestimation along training: a lone trial and a pack write the `overest` table at every k-th evaluation, its
curves agree with the table, and a pack member's values equal the same trial trained alone (one code path)."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch

from analysis.overest import overest_curves
from analysis.store import Store
from sweeps.packing import group_packs
from sweeps.pack_trial import train_pack
from sweeps.spec import SweepSpec, load_spec
from sweeps.trial import train_trial

torch.set_num_threads(1)


def _spec(tmp_path, every: int, process: str = "masked", P=(4,), strings: int = 64) -> SweepSpec:
    raw = dict(load_spec("tiny").raw)
    raw.update(store=str(tmp_path / "store"), stop={"theta": None})
    raw["train"] = {**raw["train"], "steps": 40, "evals_per_decade": 2, "first_eval": 4}
    raw["eval"] = {**raw["eval"], "n_gen": 16, "overest_every": every, "overest_strings": strings}
    raw["model"] = {**raw["model"], "process": process}
    raw["axes"] = {"tail": [{"family": "uniform"}], "P": list(P), "seed": [0]}
    return SweepSpec.from_dict(raw)


def test_lone_trial_writes_overest_every_kth_evaluation(tmp_path):
    spec = _spec(tmp_path, every=2)
    cfg = spec.trials()[0]
    train_trial(cfg)
    store = Store(cfg.store)
    curves = store.read_pandas("curves").sort_values("step")
    rows = store.read_pandas("overest")
    steps = curves.step.tolist()                                   # schedule 4, 13, 40
    probed = steps[::2]
    assert sorted(rows.step.unique()) == probed
    for step, row in zip(steps, curves.itertuples()):
        assert math.isfinite(row.overest_train) == (step in probed)
    per = rows[rows.step == probed[0]]
    n_train, n_held = cfg.P, cfg.heldout
    assert len(per) == 3 * (n_train + n_held)                      # 3 noise levels x every string
    assert set(per.split) == {"train", "heldout"} and per.o.notna().all()
    cur = overest_curves(rows)
    top = cur[(cur.step == probed[0]) & (cur.t == cur.t.max())].iloc[0]
    first = curves.set_index("step").loc[probed[0]]
    assert top.overest_train == pytest.approx(first.overest_train, rel=1e-12)
    assert top.overest_heldout == pytest.approx(first.overest_heldout, rel=1e-12)
    assert first.overest_gap == pytest.approx(first.overest_train - first.overest_heldout, rel=1e-12)


def test_pack_member_overest_equals_lone_trial(tmp_path):
    spec = _spec(tmp_path, every=1, P=(4, 6))
    trials = spec.trials()
    train_pack(group_packs(trials, 2)[0])
    packed = Store(spec.store).read_pandas("overest").sort_values(["trial_id", "step", "t", "split", "string_index"])
    assert set(packed.trial_id) == {t.trial_id for t in trials}
    lone_spec = _spec(tmp_path / "lone", every=1, P=(4, 6))
    for t in lone_spec.trials():
        train_trial(t)
    lone = Store(lone_spec.store).read_pandas("overest").sort_values(["trial_id", "step", "t", "split",
                                                                       "string_index"])
    np.testing.assert_allclose(packed.o.to_numpy(), lone.o.to_numpy(), rtol=1e-4, atol=1e-5)


def test_overest_needs_masked_diffusion(tmp_path):
    with pytest.raises(ValueError, match="overest_every=1 needs model.process: masked"):
        _spec(tmp_path, every=1, process="uniform").trials()


def test_overest_rows_carry_the_model_score(tmp_path):
    """model_logp - o is the grammar's mean log-posterior of the masked tokens: the same at every step."""
    spec = _spec(tmp_path, every=1)
    train_trial(spec.trials()[0])
    rows = Store(spec.store).read_pandas("overest")
    ref = (rows.model_logp - rows.o).groupby([rows.t, rows.split, rows.string_index])
    assert rows.step.nunique() >= 3 and (ref.max() - ref.min()).max() < 1e-9
    assert (rows.model_logp < 0).all()


def test_overest_cli_prints_auc_by_lead(tmp_path, capsys):
    from sweeps.cli import main

    spec = _spec(tmp_path, every=1, P=(6,))
    train_trial(spec.trials()[0])
    out = tmp_path / "auc.csv"
    assert main(["overest", spec.store, "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "AUC of early overestimation" in printed and "lead_bin" in printed
    table = pd.read_csv(out)
    assert {"step_early", "step_late", "lead", "auc_o", "auc_model_logp", "auc_proto"} <= set(table.columns)
    assert (table.lead > 1).all() and len(table) == 3              # probed at 4, 13 (40 has no later evaluation)
    empty = _spec(tmp_path / "off", every=0)
    train_trial(empty.trials()[0])
    assert main(["overest", empty.store]) == 0
    assert "no overestimation rows" in capsys.readouterr().out


def test_collapse_curves_along_training(tmp_path):
    """At probed evaluations the collapse curves are filled (fractions in [0, 1], steps in (0, 1]); elsewhere NaN."""
    spec = _spec(tmp_path, every=2)
    train_trial(spec.trials()[0])
    curves = Store(spec.store).read_pandas("curves").sort_values("step")
    probed = curves.iloc[::2]
    for name in ("collapse_model_frac", "collapse_grammar_frac"):
        assert probed[name].between(0, 1).all() and curves.iloc[1:2][name].isna().all()
    for name in ("collapse_model", "collapse_grammar"):
        vals = probed[name].dropna()
        assert ((vals > 0) & (vals <= 1)).all()
    assert np.isfinite(probed.entropy_excess).all()


def test_probe_of_a_large_training_set_is_a_fixed_subset(tmp_path):
    """P above eval.overest_strings: the table holds that many training and held-out strings per (step, t), the
    same rows at every evaluation, each a row of its own set; the curves are their means."""
    spec = _spec(tmp_path, every=1, P=(12,), strings=5)
    cfg = spec.trials()[0]
    train_trial(cfg)
    rows = Store(cfg.store).read_pandas("overest")
    per = rows.groupby(["step", "t", "split"]).string_index.apply(lambda s: tuple(sorted(s)))
    sizes = per.map(len).groupby(level="split").unique()
    assert list(sizes["train"]) == [5] and list(sizes["heldout"]) == [cfg.heldout]   # tiny: 4 held-out, all of them
    assert per.groupby(level="split").nunique().eq(1).all()
    train_idx = per.xs("train", level="split").iloc[0]
    assert len(set(train_idx)) == 5 and set(train_idx) <= set(range(12)) and train_idx != tuple(range(5))
    curves = Store(cfg.store).read_pandas("curves").set_index("step")
    cur = overest_curves(rows)
    top = cur[cur.t == cur.t.max()].set_index("step")
    np.testing.assert_allclose(top.overest_train, curves.loc[top.index, "overest_train"], rtol=1e-12)
