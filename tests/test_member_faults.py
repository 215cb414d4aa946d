"""Members that fail alone (Ray-free, through sweeps.pack_trial.train_pack and sweeps.trial.train_trial): a pack
member whose evaluation raises is stored `failed` with the error and dropped, one whose weights go non-finite is
stored `diverged` with the step its loss first went non-finite; the other members write, row for row, what a pack
without those two writes, and onsets, fits and reports leave the two out and say so. A lone trial that diverges is
stored the same way.

Faults are planted with test hooks: FAIL_MEMBER raises in one member at its evaluation at step 18; POISON_MEMBER
sets one member's weights to NaN right after its evaluation at step 18, so its loss is first non-finite at step 19
(the planted step, which the store must report) and it is caught at the evaluation of step 32.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from analysis.store import Store
from models import eval_schedule
from sweeps.member import FAIL_MEMBER, POISON_MEMBER
from sweeps.pack_trial import train_pack
from sweeps.packing import group_packs
from sweeps.spec import SweepSpec, load_spec
from sweeps.trial import train_trial

STEPS = 32
SCHEDULE = eval_schedule(STEPS, 4, 10)      # [10, 18, 32]
DROP = {"sweep", "attempt_ns", "attempt", "resumed_from_step", "write_order", "wall_time", "written_at"}   # bookkeeping


def _spec(store: Path, P: list[int]) -> SweepSpec:
    raw = dict(load_spec("tiny").raw)
    raw.update(name="mf", store=str(store))
    raw["axes"] = {"tail": [{"family": "uniform"}, {"family": "power", "a": 1.0}], "P": P, "seed": [0]}
    raw["train"] = {**raw["train"], "steps": STEPS}
    raw.pop("stop", None)
    raw["pack"] = {"size": 4}
    return SweepSpec.from_dict(raw)


def _rows(store: Store, table: str, tid: str, keys: list[str]) -> list[dict]:
    t = store.read(table, sweep="mf", trials=[tid]).sort_by([(k, "ascending") for k in keys])
    return [{k: v for k, v in r.items() if k not in DROP} for r in t.to_pylist()]


def _same(a: list[dict], b: list[dict]) -> None:
    assert len(a) == len(b)
    for ra, rb in zip(a, b):
        assert ra.keys() == rb.keys()
        for k in ra:
            if isinstance(ra[k], float):   # losses: float tolerance (pack size changes reductions); metrics: seeds
                tol = 1e-5 if k.endswith("_loss") else 1e-12
                assert np.isclose(ra[k], rb[k], rtol=tol, atol=tol, equal_nan=True), (k, ra, rb)
            else:
                assert ra[k] == rb[k], (k, ra, rb)


def test_a_member_that_raises_or_diverges_fails_alone(tmp_path, capsys):
    spec = _spec(tmp_path / "faulty", [4, 8])
    (pack,) = group_packs(spec.trials(), 4)
    failing, diverging, *healthy = pack.member_ids
    hooks = {FAIL_MEMBER: {failing: 18}, POISON_MEMBER: {diverging: 18}}
    out = {o.trial_id: o for o in train_pack(pack, hooks=hooks)}
    assert {m: (o.status, o.final_step) for m, o in out.items()} == {
        failing: ("failed", 18), diverging: ("diverged", 19), **{m: ("done", STEPS) for m in healthy}}

    store = Store(spec.store)
    trials = {r["trial_id"]: r for r in store.read("trials", sweep="mf").to_pylist()}
    assert (trials[failing]["status"], trials[failing]["final_step"]) == ("failed", 18)
    assert "RuntimeError: injected fault" in trials[failing]["error"]
    assert (trials[diverging]["status"], trials[diverging]["final_step"]) == ("diverged", 19)
    assert "step 19" in trials[diverging]["error"]
    steps = lambda m: _rows(store, "curves", m, ["step"])    # noqa: E731
    assert [r["step"] for r in steps(failing)] == [10]        # nothing of the evaluation that raised
    assert [r["step"] for r in steps(diverging)] == [10, 18]  # nothing evaluated on non-finite weights
    assert all(np.isfinite(r["train_loss"]) for r in steps(diverging))

    # onsets, fits and reports leave the failed and diverged members out, and say so
    from analysis.onset import analysed, onsets
    from sweeps.cli import main

    assert set(onsets(store).column("trial_id").to_pylist()) == set(healthy)
    notes = analysed(store.read("trials"))[1]
    assert any(n.startswith(f"left out 1 diverged trial(s): {diverging} (") and "step 19" in n for n in notes), notes
    assert any(n.startswith(f"left out 1 failed trial(s): {failing} (RuntimeError: injected") for n in notes), notes
    assert main(["fit", spec.store]) == 0
    printed = " ".join(capsys.readouterr().out.split())
    assert f"left out 1 diverged trial(s): {diverging}" in printed and f"left out 1 failed trial(s): {failing}" in printed

    # the healthy members: row for row what a pack of just them writes (same trial ids, in another store)
    ref = _spec(tmp_path / "ref", [4, 8])
    (ref_pack,) = group_packs([t for t in ref.trials() if t.trial_id in healthy], 4)
    assert ref_pack.member_ids == healthy
    alone = {o.trial_id: o for o in train_pack(ref_pack)}
    assert {m: (o.status, o.final_step) for m, o in alone.items()} == {m: ("done", STEPS) for m in healthy}
    ref_store = Store(ref.store)
    for m in healthy:
        assert trials[m]["status"] == "done" and trials[m]["error"] is None
        for table, keys in (("curves", ["step"]), ("level_curves", ["step", "level"]),
                            ("copies", ["step", "train_index"]), ("parts", ["step", "level", "production"]),
                            ("samples", ["train_index"]), ("slop_nulls", ["reference", "level"])):
            _same(_rows(store, table, m, keys), _rows(ref_store, table, m, keys))


def test_a_lone_trial_that_diverges_is_stored_diverged_with_its_step(tmp_path):
    spec = _spec(tmp_path / "lone", [8])
    cfg = spec.trials()[0]
    out = train_trial(cfg, hooks={POISON_MEMBER: {cfg.trial_id: 10}})
    assert (out.status, out.final_step) == ("diverged", 11)
    row = Store(spec.store).read("trials", sweep="mf").to_pylist()[0]
    assert (row["status"], row["final_step"]) == ("diverged", 11) and "step 11" in row["error"]
    assert Store(spec.store).read("curves", sweep="mf", columns=["step"]).column("step").to_pylist() == [10]
