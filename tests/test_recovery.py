"""What a new driver takes over from earlier ones (sweeps.recovery), on hand-made Tune directories and stores:
which checkpoint an unfinished trial continues from, and `failed` rows for trials left `running`."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from analysis.schema import CURVE_METRICS
from analysis.store import Store
from models import eval_schedule
from sweeps.recovery import checkpoint_candidates, mark_failed, resume_checkpoints, retry_delay
from sweeps.spec import SweepSpec, load_spec


def _trial(tmp_path: Path):
    raw = dict(load_spec("tiny").raw)
    raw.update(name="rc", store=str(tmp_path / "store"))
    raw["axes"] = {"tail": [{"family": "uniform"}], "P": [8], "seed": [0]}
    raw.pop("stop", None)
    return SweepSpec.from_dict(raw).trials()[0]  # 200 steps: evaluations at 10, 18, 32, 56, 100, 178, 200


def _ckpt(tune: Path, exp: str, trial_dir: str, n: int, step: int, owner: str | None, files=("trainer.pt",)) -> Path:
    d = tune / exp / trial_dir / f"checkpoint_{n:06d}"
    d.mkdir(parents=True)
    (d / "trial_state.json").write_text(json.dumps({"step": step, "streak": 0, "curve": [], "wall": 1.0}))
    for f in files:
        (d / f).write_bytes(b"weights")
    if owner is not None:
        (d / "owner.json").write_text(json.dumps({"sweep": "rc", "trial_id": owner}))
    return d


def _curves(store: Store, tid: str, steps: list[int], attempt_ns: int = 1, rfs: int = 0) -> None:
    with store.writer("rc", tid, attempt_ns=attempt_ns, resumed_from_step=rfs) as w:
        w.append("trials", {"status": "running"})
        for s in steps:
            w.append("curves", {"step": s, "wall_time": 0.0, **{m: 0.0 for m in CURVE_METRICS}})


def test_newest_owned_complete_checkpoint_wins(tmp_path):
    cfg = _trial(tmp_path)
    tid, tune = cfg.trial_id, tmp_path / "tune"
    _ckpt(tune, "rc", f"{tid}_aaaaa_00000", 2, 56, tid)
    newer = _ckpt(tune, "rc-20250102-000000", f"{tid}_bbbbb_00000", 1, 32, tid)
    _ckpt(tune, "rc-20250102-000000", f"{tid}_bbbbb_00000", 0, 18, tid)
    _ckpt(tune, "rc-20250103-000000", f"{tid}_ccccc_00000", 4, 100, "rc-someoneelse")  # not this trial's
    _ckpt(tune, "rc-20250104-000000", f"{tid}_ddddd_00000", 3, 178, tid, files=())      # torn: no trainer.pt
    _ckpt(tune, "rc-big-20250105-000000", f"{tid}_eeeee_00000", 5, 200, tid)            # another sweep's name
    found = checkpoint_candidates(str(tune), "rc", [tid])
    assert found == {tid: [(32, str(newer)), (18, str(newer.parent / "checkpoint_000000")),
                           (56, str(tune / "rc" / f"{tid}_aaaaa_00000" / "checkpoint_000002"))]}
    _curves(Store(cfg.store), tid, eval_schedule(200, 4, 10)[:4])  # the store holds 10..56
    assert resume_checkpoints(cfg.store, str(tune), "rc", [cfg]) == {tid: (32, str(newer))}


def test_a_checkpoint_past_the_stores_rows_is_not_used(tmp_path):
    """A later attempt restarted from 0 and superseded the rows up to 56: resuming from 56 would leave a gap."""
    cfg = _trial(tmp_path)
    tid, tune = cfg.trial_id, tmp_path / "tune"
    _ckpt(tune, "rc", f"{tid}_aaaaa_00000", 3, 56, tid)
    early = _ckpt(tune, "rc", f"{tid}_aaaaa_00000", 0, 10, tid)
    store = Store(cfg.store)
    _curves(store, tid, [10, 18, 32, 56], attempt_ns=1)
    _curves(store, tid, [10, 18], attempt_ns=2, rfs=0)  # from scratch: rows 32 and 56 of attempt 1 are gone
    assert resume_checkpoints(cfg.store, str(tune), "rc", [cfg]) == {tid: (10, str(early))}


def test_legacy_checkpoint_is_matched_by_params_json(tmp_path):
    cfg = _trial(tmp_path)
    tid, tune = cfg.trial_id, tmp_path / "tune"
    d = _ckpt(tune, "rc", f"{tid}_aaaaa_00000", 0, 10, owner=None)
    (d.parent / "params.json").write_text(json.dumps({"trial": {"trial_id": "rc-other"}}))
    assert checkpoint_candidates(str(tune), "rc", [tid]) == {}
    (d.parent / "params.json").write_text(json.dumps({"trial": {"trial_id": tid}}))
    assert checkpoint_candidates(str(tune), "rc", [tid]) == {tid: [(10, str(d))]}


def test_mark_failed_ends_the_latest_attempt_only_of_running_trials(tmp_path):
    store = Store(tmp_path / "store")
    _curves(store, "rc-a", [10, 18], attempt_ns=1)
    _curves(store, "rc-a", [18, 32], attempt_ns=2, rfs=10)
    with store.writer("rc", "rc-b", attempt_ns=3) as w:
        w.append("trials", {"status": "done"})
    assert mark_failed(str(tmp_path / "store"), "rc") == ["rc-a"]
    rows = {r["trial_id"]: r for r in Store(tmp_path / "store").read("trials").to_pylist()}
    assert (rows["rc-a"]["status"], rows["rc-a"]["attempt_ns"], rows["rc-a"]["resumed_from_step"]) == \
        ("failed", 2, 10)
    assert rows["rc-a"]["attempts"] == 2 and rows["rc-b"]["status"] == "done"
    steps = Store(tmp_path / "store").read("curves", trials=["rc-a"], columns=["step"])["step"].to_pylist()
    assert steps == [10, 18, 32]  # the retry rule is unchanged by the update


@pytest.mark.parametrize("attempt, delay", [(1, 0.0), (2, 10.0), (3, 20.0), (4, 40.0), (9, 120.0)])
def test_retry_delay_doubles_and_is_capped(attempt, delay):
    assert retry_delay(attempt, base=10.0, cap=120.0) == delay


@pytest.mark.filterwarnings("ignore:`get_checkpoint` is meant:UserWarning")
def test_trial_refuses_a_checkpoint_owned_by_another_trial(tmp_path):
    """The trial's own check of the driver's RESUME_FROM path (outside a Tune session: no Tune checkpoint)."""
    from sweeps.recovery import resume_checkpoint

    cfg = _trial(tmp_path)
    mine = _ckpt(tmp_path / "tune", "rc", f"{cfg.trial_id}_aaaaa_00000", 0, 10, cfg.trial_id)
    other = _ckpt(tmp_path / "tune", "rc", f"{cfg.trial_id}_bbbbb_00000", 0, 10, "rc-other")
    assert resume_checkpoint(cfg, None) is None
    assert resume_checkpoint(cfg, str(mine)).path == str(mine)
    with pytest.warns(RuntimeWarning, match="belongs to"):
        assert resume_checkpoint(cfg, str(other)) is None


def test_optuna_points_carry_their_resume_checkpoint(tmp_path):
    """Optuna modes build each trial's config in optuna_space: the trial of a point with a checkpoint gets it."""
    import optuna

    from sweeps.optuna_mode import axis_labels, optuna_space
    from sweeps.trial import RESUME_FROM

    raw = dict(load_spec("tiny").raw)
    raw.update(name="rc", mode="optuna-grid", store=str(tmp_path / "store"),
               optuna={"journal": str(tmp_path / "j.journal")})
    raw["axes"] = {"tail": [{"family": "uniform"}], "P": [4, 8], "seed": [0]}
    spec = SweepSpec.from_dict(raw)
    labels = axis_labels(spec)
    ids = {t.P: t.trial_id for t in spec.trials()}
    out = {P: optuna_space(optuna.trial.FixedTrial({n: (P if n == "data.P" else v[0]) for n, v in labels.items()}),
                           spec, True, {}, {ids[8]: "/ckpt/of/8"}) for P in (4, 8)}
    assert out[8]["trial"]["trial_id"] == ids[8] and out[8][RESUME_FROM] == "/ckpt/of/8"
    assert RESUME_FROM not in out[4]


@pytest.mark.parametrize("mode", ["optuna-grid", "optuna-boundary"])
@pytest.mark.parametrize("held", [0, 1])
def test_a_forged_journal_does_not_stand_for_trials_the_store_never_saw(tmp_path, mode, held):
    """COMPLETE trials added to the Optuna journal for both points, while the store holds `held` of them finished:
    the driver says so (naming the journal) and plans the points the store lacks, instead of planning nothing."""
    import optuna

    from sweeps.optuna_mode import axis_labels, searcher, study_name

    raw = dict(load_spec("tiny").raw)
    journal = str(tmp_path / "j.journal")
    raw.update(name="forged", mode=mode, store=str(tmp_path / "store"),
               optuna={"journal": journal, "trials": 2, "target_step": 100})
    raw["axes"] = {"tail": [{"family": "uniform"}], "P": [4, 8], "seed": [0]}
    spec = SweepSpec.from_dict(raw)
    labels = axis_labels(spec)
    storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(journal))
    study = optuna.create_study(storage=storage, study_name=study_name(spec),
                                direction="maximize" if mode == "optuna-grid" else "minimize")
    for point in spec.points():                           # the forgery: every point COMPLETE
        study.add_trial(optuna.trial.create_trial(
            params=spec.labels_of(point), value=0.0,
            distributions={n: optuna.distributions.CategoricalDistribution(v) for n, v in labels.items()}))
    done = {t.trial_id for t in spec.trials()[:held]}
    with pytest.warns(RuntimeWarning, match=rf"journal {journal} lists {2 - held} COMPLETE trial\(s\) whose points "
                                            r"the store .* does not hold finished"):
        _, n = searcher(spec, journal, done, {}, {})
    assert n == 2 - held


def test_rerunning_a_sweep_with_an_edited_spec_says_what_changed(tmp_path):
    """The driver's check before a run (sweeps.runner._check_paths, Ray-free): a sweep that ran before in the store
    with another effective spec is named with each changed setting, old -> new; the same spec again says nothing."""
    from sweeps.runner import _check_paths

    raw = dict(load_spec("tiny").raw)
    raw.update(name="ed", store=str(tmp_path / "store"))
    first = SweepSpec.from_dict(raw)
    assert _check_paths(first, str(tmp_path / "tune"), None) == []
    assert _check_paths(first, str(tmp_path / "tune"), None) == []
    raw["train"] = {**raw["train"], "lr": first.train.lr * 10}
    edited = SweepSpec.from_dict(raw)
    (msg,) = _check_paths(edited, str(tmp_path / "tune"), None)
    assert f"train.lr: {first.train.lr} -> {first.train.lr * 10}" in msg and "sweep 'ed' ran before" in msg, msg
    assert msg.count(" -> ") == 1, msg                  # nothing else changed
