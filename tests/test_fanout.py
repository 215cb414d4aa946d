"""Packs reach Tune's loggers as their members (sweeps.fanout): a sweep of 2 packs of 8 gives 16 TensorBoard runs,
16 CSV logs and 16 runs in a user's callback, each equal, metric by metric and step by step, to the same trial run
alone (`pack.size=1`); TensorBoard plots against the training step, for lone trials and members alike.

Both sweeps run once per module into one store (tiny grammar, 30 steps, 16 trials). The stop rule (copy_frac >= 0.03
once) ends some trials before their budget, so members leave their pack at different evaluations.
"""
from __future__ import annotations

import csv
import math
from pathlib import Path

import pytest
from ray import tune

from analysis.registry import CURVE_METRICS
from analysis.store import Store
from models import eval_schedule
from sweeps.runner import run_sweep
from sweeps.spec import SweepSpec, load_spec
from tb_events import scalars

STEPS = 30
SCHEDULE = eval_schedule(STEPS, 4, 10)
COMPARED = ("step", *CURVE_METRICS)


def spec(store: Path, name: str, size: int) -> SweepSpec:
    raw = dict(load_spec("tiny").raw)
    raw.update(name=name, store=str(store))
    raw["axes"] = {"tail": [{"family": "uniform"}, {"family": "power", "a": 1.0}], "P": [4, 8], "seed": [0, 1, 2, 3]}
    raw["train"] = {**raw["train"], "steps": STEPS}
    raw["stop"] = {"theta": 0.03, "patience": 1, "metric": "copy_frac"}
    raw["pack"] = {"size": size}
    return SweepSpec.from_dict(raw)


class Recorder(tune.Callback):
    """A user's own callback: every result and the end of every run it is shown, by run name."""

    def __init__(self) -> None:
        self.runs: dict[str, dict] = {}

    def _run(self, trial) -> dict:
        return self.runs.setdefault(str(trial), {"results": [], "end": None, "config": trial.config})

    def on_trial_start(self, iteration, trials, trial, **info):
        self._run(trial)

    def on_trial_result(self, iteration, trials, trial, result, **info):
        self._run(trial)["results"].append({k: v for k, v in result.items() if k != "config"})

    def on_trial_complete(self, iteration, trials, trial, **info):
        self._run(trial)["end"] = "complete"

    def on_trial_error(self, iteration, trials, trial, **info):
        self._run(trial)["end"] = "error"


@pytest.fixture(scope="module")
def runs(ray_cluster, tmp_path_factory) -> dict:
    tmp = tmp_path_factory.mktemp("fanout")
    out = {}
    for name, size in (("lone", 1), ("packed", 8)):
        s, rec = spec(tmp / "store", name, size), Recorder()
        res = run_sweep(s, workers=2, progress=False, compact=False, callbacks=[rec])
        out[name] = {"spec": s, "result": res, "rec": rec, "exp": Path(res.experiment_path)}
    out["store"] = Store(str(tmp / "store"))
    return out


def pairs(runs) -> list[tuple[str, str]]:
    """(lone trial id, packed trial id) of the same trial (same content hash) in the two sweeps."""
    lone = {t.content_hash(): t.trial_id for t in runs["lone"]["spec"].trials()}
    return [(lone[t.content_hash()], t.trial_id) for t in runs["packed"]["spec"].trials()]


def lone_dir(runs, tid: str) -> Path:
    (d,) = runs["lone"]["exp"].glob(f"{tid}_*")
    return d


def same(a: float, b: float, metric: str) -> bool:
    tol = 1e-5 if metric.endswith("_loss") else 1e-9     # losses: float tolerance; metrics: exact by seeds
    return (math.isnan(a) and math.isnan(b)) or math.isclose(a, b, rel_tol=tol, abs_tol=tol)


def curve_rows(path: Path) -> dict[int, dict[str, float]]:
    with open(path) as f:
        return {int(r["step"]): {k: float(r[k]) for k in COMPARED} for r in csv.DictReader(f)}


@pytest.mark.ray
def test_two_packs_of_8_reach_loggers_as_16_runs_equal_to_lone_trials(runs):
    res = runs["packed"]["result"]
    assert (res.n_done, res.n_failed) == (16, 0) and (runs["lone"]["result"].n_done == 16)
    exp = runs["packed"]["exp"]
    member_dirs = {p.parent.name for p in exp.glob("*/events.out.tfevents.*")} - {p.name for p in exp.glob("*-pack-*")}
    assert member_dirs == {b for _, b in pairs(runs)}                            # 16 TensorBoard runs, by store id
    assert len(list(exp.glob("*-pack-*"))) == 2                                   # ... trained as 2 packs
    assert {p.parent.name for p in exp.glob("*/progress.csv")} == member_dirs     # 16 CSV logs, no pack's log
    finals = {r["trial_id"]: (r["status"], r["final_step"]) for r in runs["store"].read("trials").to_pylist()}
    assert len({f for _, f in finals.items()}) > 1                               # members left at different steps
    for a, b in pairs(runs):
        tb_a, tb_b = scalars(lone_dir(runs, a)), scalars(exp / b)
        steps = [s for s in SCHEDULE if s <= finals[b][1]]
        assert sorted(tb_b["ray/tune/step"]) == sorted(tb_b["ray/tune/mem_twin"]) == steps, b
        for m in COMPARED:     # TensorBoard leaves out NaN points (a metric undefined at a step)
            ca, cb = tb_a.get(f"ray/tune/{m}", {}), tb_b.get(f"ray/tune/{m}", {})
            assert sorted(ca) == sorted(cb) and set(ca) <= set(steps), (b, m)
            assert all(same(ca[s], cb[s], m) for s in ca), (b, m, ca, cb)
        csv_a, csv_b = curve_rows(lone_dir(runs, a) / "progress.csv"), curve_rows(exp / b / "progress.csv")
        assert sorted(csv_a) == sorted(csv_b)
        assert all(same(csv_a[s][m], csv_b[s][m], m) for s in csv_a for m in COMPARED), b
        ra, rb = runs["lone"]["rec"].runs[a], runs["packed"]["rec"].runs[b]
        assert [r["step"] for r in ra["results"]] == [r["step"] for r in rb["results"]]
        for x, y in zip(ra["results"], rb["results"]):
            assert set(x) - {"pid", "hostname", "node_ip"} <= set(y), set(x) - set(y)   # every key a lone trial has
            assert all(same(x[m], y[m], m) for m in COMPARED), (b, x["step"])
            assert (y["memsweep_trial_id"], y["trial_id"], y["stopped"]) == (b, b, x["stopped"])
        assert rb["end"] == ra["end"] == "complete"
        assert rb["config"]["trial"]["trial_id"] == b and rb["results"][-1]["step"] == finals[b][1]
    assert len(runs["packed"]["rec"].runs) == 16                                  # no run for a pack itself
    # what run_sweep hands a Tune user: Tune's ResultGrid (one Result per pack) and each trial's log folder
    assert sorted(r.metrics["memsweep_trial_id"] for r in res.grid) == \
        sorted(p.name.rsplit("_", 2)[0] for p in exp.glob("*-pack-*"))
    for name, ids in (("packed", [b for _, b in pairs(runs)]), ("lone", [a for a, _ in pairs(runs)])):
        found = runs[name]["result"].runs
        assert sorted(found) == sorted(ids) and all(Path(found[t], "progress.csv").is_file() for t in ids)


@pytest.mark.ray
def test_tensorboard_plots_against_the_training_step(runs):
    """The x-axis of every curve is the training step (Tune's `timesteps_total`), not the evaluation number."""
    for (a, b) in pairs(runs)[:4]:
        for run_dir in (lone_dir(runs, a), runs["packed"]["exp"] / b):
            curves = scalars(run_dir)
            steps = curves["ray/tune/step"]
            assert steps and all(x == v for x, v in steps.items()), (run_dir, steps)
            assert sorted(curves["ray/tune/mem_twin"]) == sorted(steps) and max(steps) > len(steps)


def test_fanout_ends_each_member_as_it_leaves_its_pack(tmp_path):
    """Ray-free, on a stand-in of Tune's trial: a member that stops early completes at that evaluation, one dropped
    with a failure errs, the rest complete with their pack, or err with it; each run is its own folder."""
    from sweeps.fanout import FanOut
    from sweeps.packing import MEMBERS_KEY, group_packs

    s = spec(tmp_path / "store", "unit", 4)
    packs = group_packs(s.trials()[:8], 4)
    tune_trials = [_TuneTrial(trial_id=f"t{k}", config={"pack": p.to_dict(), "_attempt": 1},
                              local_experiment_path=str(tmp_path / "exp"), remote_experiment_path="mem://exp")
                   for k, p in enumerate(packs)]
    rec = Recorder()
    fan = FanOut([rec])
    for t in tune_trials:
        fan.on_trial_start(iteration=0, trials=tune_trials, trial=t)
    a, b = (p.member_ids for p in packs)

    def entries(ids, step, finished=(), failed=()):
        return {m: {"step": step, "mem_twin": 0.1 * step, "finished": m in finished or m in failed,
                    **({"status": "failed"} if m in failed else {})} for m in ids}
    fan.on_trial_result(iteration=1, trials=tune_trials, trial=tune_trials[0],
                        result={"step": 10, "training_iteration": 1, MEMBERS_KEY: entries(a, 10, [a[0]], [a[1]])})
    fan.on_trial_result(iteration=2, trials=tune_trials, trial=tune_trials[0],
                        result={"step": 18, "training_iteration": 2, MEMBERS_KEY: entries(a[2:], 18)})
    fan.on_trial_complete(iteration=3, trials=tune_trials, trial=tune_trials[0])
    fan.on_trial_result(iteration=4, trials=tune_trials, trial=tune_trials[1],
                        result={"step": 10, "training_iteration": 1, MEMBERS_KEY: entries(b, 10)})
    fan.on_trial_error(iteration=5, trials=tune_trials, trial=tune_trials[1])
    ends = {m: (r["end"], [x["step"] for x in r["results"]]) for m, r in rec.runs.items()}
    assert ends == {a[0]: ("complete", [10]), a[1]: ("error", [10]), a[2]: ("complete", [10, 18]),
                    a[3]: ("complete", [10, 18]), **{m: ("error", [10]) for m in b}}
    member = fan.members(tune_trials[0])[a[2]]
    assert (str(member), member.trial_id, member.config["trial"]["trial_id"], member.config["_attempt"]) == \
        (a[2], a[2], a[2], 1)
    assert member.local_path == str(tmp_path / "exp" / a[2]) and (tmp_path / "exp" / a[2]).is_dir()
    assert rec.runs[a[2]]["results"][-1]["mem_twin"] == pytest.approx(1.8)
    assert "finished" not in rec.runs[a[2]]["results"][-1] and MEMBERS_KEY not in rec.runs[a[2]]["results"][-1]


class _TuneTrial:
    """What the fan-out reads of a Tune trial (hashable by identity, as Tune's are)."""

    def __init__(self, **attrs) -> None:
        self.__dict__.update(attrs)


def test_members_that_fail_or_diverge_end_their_logger_runs_in_error(tmp_path):
    """Ray-free, train_pack's own reports through the fan-out: a member that raises at step 18 (FAIL_MEMBER) and one
    whose weights go NaN after step 10 (POISON_MEMBER, caught at 18) each end their run in error at the evaluation
    that dropped them, with their status and no metric of that evaluation; their mates report every evaluation and
    complete."""
    from sweeps.fanout import FanOut
    from sweeps.member import FAIL_MEMBER, POISON_MEMBER
    from sweeps.pack_trial import train_pack
    from sweeps.packing import group_packs

    raw = dict(spec(tmp_path / "store", "faults", 4).raw)
    raw.pop("stop")                                   # members leave the pack by their faults only
    pack = group_packs(SweepSpec.from_dict(raw).trials(), 4)[0]
    failing, diverging, *healthy = pack.member_ids
    reports: list[dict] = []
    train_pack(pack, lambda metrics, _ckpt: reports.append(metrics),
               hooks={FAIL_MEMBER: {failing: 18}, POISON_MEMBER: {diverging: 10}})
    trial = _TuneTrial(trial_id="t0", config={"pack": pack.to_dict()}, local_experiment_path=str(tmp_path / "exp"),
                       remote_experiment_path="mem://exp")
    rec = Recorder()
    fan = FanOut([rec])
    fan.on_trial_start(iteration=0, trials=[trial], trial=trial)
    for i, metrics in enumerate(reports, 1):
        fan.on_trial_result(iteration=i, trials=[trial], trial=trial, result={**metrics, "training_iteration": i})
    fan.on_trial_complete(iteration=len(reports) + 1, trials=[trial], trial=trial)
    runs = rec.runs
    assert {m: (r["end"], [x["step"] for x in r["results"]]) for m, r in runs.items()} == {
        failing: ("error", [10, 18]), diverging: ("error", [10, 18]), **{m: ("complete", SCHEDULE) for m in healthy}}
    for m, status in ((failing, "failed"), (diverging, "diverged")):
        last = runs[m]["results"][-1]
        assert last["status"] == status and not set(CURVE_METRICS) & set(last), (m, last)
        assert last["timesteps_total"] == 18                         # TensorBoard's step axis, as every result's
        assert set(CURVE_METRICS) <= set(runs[m]["results"][0])
    assert all(set(CURVE_METRICS) <= set(x) and "status" not in x for m in healthy for x in runs[m]["results"])
