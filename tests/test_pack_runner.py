"""Packs in the runner: a grid run in packs of 4 writes, per trial, the rows a run one trial at a time writes; a
pack killed mid-run is retried from its checkpoint with one row per (trial, step) for every member; bad pack
sizes, Optuna with packs and packs that do not fit memory are refused before work starts; status and the live
view count trials (members), not packs.

Both sweeps run once per module (tiny grammar, 60 steps) into one store: `lone` with pack.size 1, `packed` with
pack.size 4 and a fault that kills the pack's process right after the rows of step 56 are flushed. The stop rule
(copy_frac >= 0.07 once) ends members at different evaluations (with today's data draw: two at the crash itself,
step 56, one at the last evaluation, 60); one trains to the budget, `done`.
"""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from analysis.store import Store
from models import eval_schedule
from raw_store import raw_step_counts
from sweeps.packing import MEMBERS_KEY, group_packs, pack_key
from sweeps.runner import run_sweep
from sweeps.spec import SpecError, SweepSpec, load_spec

STEPS = 60
SCHEDULE = eval_schedule(STEPS, 4, 10)      # [10, 18, 32, 56, 60]


def spec_raw(store: Path, name: str, size: int) -> dict:
    """The tiny preset: 2 tails x 2 P = 4 trials of 60 steps, a stop rule that ends members at different steps."""
    raw = dict(load_spec("tiny").raw)
    raw.update(name=name, store=str(store))
    raw["axes"] = {"tail": [{"family": "uniform"}, {"family": "power", "a": 1.0}], "P": [4, 8], "seed": [0]}
    raw["train"] = {**raw["train"], "steps": STEPS}
    raw["stop"] = {"theta": 0.07, "patience": 1, "metric": "copy_frac"}
    raw["data"] = {**raw["data"], "draw": "data"}     # the draw the stop steps below were tuned on
    raw["pack"] = {"size": size}
    return raw


@pytest.fixture(scope="module")
def runs(ray_cluster, tmp_path_factory) -> dict:
    tmp = tmp_path_factory.mktemp("packs")
    lone = SweepSpec.from_dict(spec_raw(tmp / "store", "lone", 1))
    packed = SweepSpec.from_dict(spec_raw(tmp / "store", "packed", 4))
    marker = tmp / "crashed"
    res_lone = run_sweep(lone, workers=2, progress=False, compact=False)
    res_packed = run_sweep(packed, workers=2, progress=False, compact=False, retry_backoff_s=1.0,
                           extra_config={"_crash_at_step": 50, "_crash_marker": str(marker)})
    return {"lone": lone, "packed": packed, "res_lone": res_lone, "res_packed": res_packed, "marker": marker,
            "store": Store(lone.store)}


def by_hash(spec: SweepSpec) -> dict[str, str]:
    """{content hash: trial id}: the same trial in two sweeps has the same hash (ids differ by the sweep prefix)."""
    return {t.content_hash(): t.trial_id for t in spec.trials()}


def rows(store: Store, table: str, sweep: str, trial_id: str, keys: list[str]) -> list[dict]:
    drop = {"sweep", "trial_id", "attempt_ns", "attempt", "resumed_from_step", "write_order", "wall_time",
            "written_at"}   # bookkeeping: write_order is the writer's flush clock
    t = store.read(table, sweep=sweep, trials=[trial_id]).sort_by([(k, "ascending") for k in keys])
    return [{k: v for k, v in r.items() if k not in drop} for r in t.to_pylist()]


@pytest.mark.ray
def test_pack_of_4_writes_per_trial_the_rows_of_pack_size_1(runs):
    store, lone, packed = runs["store"], by_hash(runs["lone"]), by_hash(runs["packed"])
    assert (runs["res_lone"].n_done, runs["res_packed"].n_done, runs["res_packed"].n_failed) == (4, 4, 0)
    assert len(group_packs(runs["packed"].trials(), 4)) == 1          # the four trials really shared one pack
    finals = {}
    for h in lone:
        a, b = lone[h], packed[h]
        ca, cb = rows(store, "curves", "lone", a, ["step"]), rows(store, "curves", "packed", b, ["step"])
        assert [r["step"] for r in ca] == [r["step"] for r in cb]
        for ra, rb in zip(ca, cb):
            for k in ra:
                tol = 1e-5 if k.endswith("_loss") else 1e-12   # losses: float tolerance; metrics: exact by seeds
                same = ra[k] == rb[k] if not isinstance(ra[k], float) else \
                    np.isclose(ra[k], rb[k], rtol=tol, atol=tol, equal_nan=True)
                assert same, (h, ra["step"], k, ra[k], rb[k])
        for table, keys in (("level_curves", ["step", "level"]), ("copies", ["step", "train_index"]),
                            ("parts", ["step", "level", "production"]), ("samples", ["train_index"]),
                            ("slop_nulls", ["reference", "level"])):
            assert rows(store, table, "lone", a, keys) == rows(store, table, "packed", b, keys), (h, table)
        ta = store.read("trials", sweep="lone", trials=[a]).to_pylist()[0]
        tb = store.read("trials", sweep="packed", trials=[b]).to_pylist()[0]
        assert (ta["status"], ta["final_step"], ta["P"], ta["tail"]) == (tb["status"], tb["final_step"], tb["P"],
                                                                         tb["tail"])
        finals[h] = (tb["status"], tb["final_step"])
    # the stop rule ended members at different evaluations, one before the budget: the pack shrank mid-run (which
    # steps depends on the data each trial draws: sweeps.spec's grammar+data seeds)
    assert len(set(finals.values())) > 1 and min(step for _, step in finals.values()) < 60, finals


@pytest.mark.ray
def test_killed_pack_is_retried_with_one_row_per_trial_and_step(runs):
    store, spec = runs["store"], runs["packed"]
    assert runs["marker"].read_text() == "56"     # killed right after flushing step 56, before its checkpoint
    trials = {r["trial_id"]: r for r in store.read("trials", sweep="packed").to_pylist()}
    for t in spec.trials():
        row = trials[t.trial_id]
        want = [s for s in SCHEDULE if s <= row["final_step"]]
        got = sorted(store.read("curves", sweep="packed", trials=[t.trial_id], columns=["step"])
                     .column("step").to_pylist())
        assert got == want, (t.trial_id, got)                                   # no gap, no double
        levels = store.read("level_curves", sweep="packed", trials=[t.trial_id], columns=["step", "level"])
        assert levels.num_rows == len({(s, lv) for s, lv in zip(*levels.to_pydict().values())}) == 2 * len(want)
        raw = raw_step_counts(spec.store, t.trial_id)
        if row["final_step"] == 32:       # left the pack (and was finished in the store) before the crash
            assert row["attempts"] == 1 and raw == {s: 1 for s in want}
        else:                             # in the pack when it died: resumed from the checkpoint at 32
            assert (row["attempts"], row["resumed_from_step"]) == (2, 32)
            assert raw == {s: 1 + (s == 56) for s in want}   # the dead attempt's 56 is superseded, not lost


@pytest.mark.ray
def test_status_counts_members_not_packs(runs, capsys):
    from sweeps.cli import main

    summary = runs["store"].summary()["packed"]["trials"]
    assert summary == {"stopped": 3, "done": 1}
    assert main(["status", runs["lone"].store]) == 0
    out = capsys.readouterr().out
    assert "stopped: 3" in out and "done: 1" in out


class _TuneTrial:
    """What LiveProgress reads of a Tune trial."""

    def __init__(self, config: dict, trial_id: str = "t0"):
        self.config, self.trial_id, self.status, self.last_result = config, trial_id, "RUNNING", {}


def test_live_view_counts_members_not_packs(tmp_path):
    from sweeps.progress import LiveProgress

    spec = SweepSpec.from_dict(spec_raw(tmp_path / "store", "view", 4))
    (pack,) = group_packs(spec.trials(), 4)
    view = LiveProgress(total=4, live=False)
    trial = _TuneTrial({"pack": pack.to_dict()})
    view.on_trial_start(0, [trial], trial)
    assert (view.counts()["running"], view.counts()["queued"]) == (4, 0)
    ids = pack.member_ids
    members = {m: {"step": 32, "copy_frac": 0.1, "finished": m == ids[0]} for m in ids}
    view.on_trial_result(0, [trial], trial, {"step": 32, MEMBERS_KEY: members})
    assert (view.counts()["done"], view.counts()["running"]) == (1, 3)
    view.on_trial_complete(0, [trial], trial)
    assert view.counts()["done"] == 4 and "4 done" in view.summary()


@pytest.mark.parametrize("size", [0, -1, 1.5, "x"])
def test_bad_pack_sizes_are_refused_before_work(tmp_path, size):
    with pytest.raises(SpecError, match=re.escape(f"pack.size: {size!r} is ")):
        SweepSpec.from_dict(spec_raw(tmp_path / "store", "bad", size))
    with pytest.raises(SpecError, match=r"pack\.size"):
        load_spec("tiny", [f"pack.size={size}"])
    assert not (tmp_path / "store").exists()


@pytest.mark.parametrize("mode", ["optuna-grid", "optuna-boundary"])
def test_optuna_with_packs_is_refused(tmp_path, mode):
    raw = {**spec_raw(tmp_path / "store", "opt", 4), "mode": mode,
           "optuna": {"trials": 2, "target_step": 30, "journal": str(tmp_path / "j")}}
    with pytest.raises(SpecError, match=rf"pack\.size: 4 .*mode {mode}"):
        SweepSpec.from_dict(raw)
    raw["pack"] = {"size": 1}
    assert SweepSpec.from_dict(raw).pack.size == 1


def test_a_pack_that_does_not_fit_memory_is_refused_with_the_size_that_fits(tmp_path, monkeypatch):
    import sweeps.spec.bounds as bounds

    spec = SweepSpec.from_dict(spec_raw(tmp_path / "store", "mem", 4))
    (pack,) = group_packs(spec.trials(), 4)
    from models import build_model, estimate_memory

    t = pack.members[0]
    per = estimate_memory(build_model(t.model, t.grammar.v, t.grammar.d, t.grammar.s, t.grammar.L, seed=[0] * 4),
                          t.train.batch_size, 8).per_member
    monkeypatch.setattr(bounds, "local_limits", lambda gpu: (2.5 * per / 0.75, None))   # room for 2 members
    with pytest.raises(SpecError, match="at most 2 members fits"):
        run_sweep(spec, workers=1, progress=False)
    assert not (tmp_path / "store").exists()          # refused before the store, the lease or Ray


def test_packs_group_only_compatible_trials_deterministically(tmp_path):
    raw = spec_raw(tmp_path / "store", "grp", 3)
    raw["axes"] = {**raw["axes"], "seed": [0, 1], "model.width": [32, 16]}
    raw["model"] = {k: v for k, v in raw["model"].items() if k != "width"}
    trials = SweepSpec.from_dict(raw).trials()
    packs = group_packs(trials, 3)
    assert [p.member_ids for p in packs] == [p.member_ids for p in group_packs(list(trials), 3)]
    assert sorted(m for p in packs for m in p.member_ids) == sorted(t.trial_id for t in trials)
    for p in packs:
        assert 1 <= len(p.members) <= 3 and len({pack_key(t) for t in p.members}) == 1
        assert len({t.model.width for t in p.members}) == 1
    assert len(packs) == 6                # 8 trials per width -> packs of 3, 3, 2 per width


@pytest.mark.ray
def test_resume_finds_the_pack_checkpoint_that_holds_the_members_left(runs):
    """--resume (sweeps.recovery.resume_pack_checkpoints): a pack continues from its newest checkpoint only when
    that checkpoint holds every member still to train and the store covers their steps up to it."""
    from sweeps.recovery import resume_pack_checkpoints
    from sweeps.runner import default_storage_path

    spec = runs["packed"]
    (pack,) = group_packs(spec.trials(), 4)
    status = {r["trial_id"]: r["status"] for r in runs["store"].read("trials", sweep="packed").to_pylist()}
    last = pack.without(m for m in pack.member_ids if status[m] != "done")   # the member that trained to the end
    found = resume_pack_checkpoints(spec.store, default_storage_path(spec.store), "packed", [last])
    assert list(found) == [pack.pack_id] and found[pack.pack_id][0] == STEPS
    stopped = pack.without(last.member_ids)          # members the newest checkpoints no longer hold
    assert resume_pack_checkpoints(spec.store, default_storage_path(spec.store), "packed", [stopped]) == {}
