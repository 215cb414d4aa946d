"""What a researcher coming from Hydra, Tune and Optuna expects: Hydra's `+KEY=`, `KEY=a,b` and `-m`; the Optuna
study and journal printed; a finished sweep decided from the store (and journal) before Ray starts; `report --out`
refuses a file name; the plan recomputed under overrides, idle workers named; quiet Ray-side hooks; dependencies
declared."""
from __future__ import annotations

import logging
import re
import tomllib
from argparse import Namespace
from functools import partial
from pathlib import Path

import pytest

from sweeps.spec import SweepSpec, load_spec

ROOT = Path(__file__).resolve().parents[1]


# ------------------------------------------------------------------------------------------- Hydra habits
@pytest.mark.parametrize("hydra, memsweep", [
    (["model.width=32,64"], ["axes.model.width=[32,64]"]),
    (["P=4,8,12"], ["axes.P=[4,8,12]"]),
    (["axes.seed=0,1"], ["axes.seed=[0,1]"]),
    (["tail={family: power, a: 1},{family: uniform}"], ["axes.tail=[{family: power, a: 1}, {family: uniform}]"]),
    (["+train.ema=0.5"], ["train.ema=0.5"]),
    (["++train.lr=0.01"], ["train.lr=0.01"]),
])
def test_hydra_spellings_mean_the_memsweep_ones(hydra, memsweep):
    a, b = load_spec("tiny", hydra), load_spec("tiny", memsweep)
    assert [t.trial_id for t in a.trials()] == [t.trial_id for t in b.trials()]
    assert a.to_dict() == b.to_dict()


def test_a_comma_splits_only_per_trial_settings_outside_quotes_and_brackets():
    from sweeps.spec.overrides import parse_override

    assert parse_override("name=a,b") == (("name",), "a,b")
    assert parse_override('description="x, y"') == (("description",), "x, y")
    assert parse_override("tail.levels=[0,1]") == (("tail", "levels"), [0, 1])
    from sweeps.spec import SpecError

    with pytest.raises(SpecError, match=r"train: unknown key 'foo'"):     # +KEY adds, then validation checks it
        load_spec("tiny", ["+train.foo=1"])


def test_multirun_flag_is_accepted(capsys):
    from sweeps.cli import main

    assert main(["validate", "tiny", "-m", "model.width=32,64"]) == 0
    out = capsys.readouterr().out
    assert "8 trials = 2 tail x 2 P x 1 seed x 2 model.width" in out and "model.width: 32, 64" in out


# ------------------------------------------------------------------------------------------- printing the plan
def test_plan_is_recomputed_under_overrides_and_idle_workers_are_named():
    from sweeps.plan import plan_line
    from sweeps.packing import group_packs

    base = load_spec("demo")
    spec = load_spec("demo", ["pack.size=8", "train.steps=1000"])
    n_packs = len(group_packs(spec.trials(), 8))
    line = plan_line(spec, 4, base)
    assert line.startswith(f"{spec.n_trials} trials in {n_packs} packs of up to 8, 1000 steps each")
    # packs run one per worker: 2 packs of 1000 steps on 4 workers is 1000 steps per used worker
    assert f"1,000 training steps per worker on {n_packs} worker(s)" in line
    base_steps = sum(max(t.train.steps for t in p.members) for p in group_packs(base.trials(), base.pack.size)) \
        / min(4, len(group_packs(base.trials(), base.pack.size)))
    assert f"{1000 / base_steps:.2g}x those of demo" in line
    assert f"only {n_packs} packs for 4 workers: {4 - n_packs} stay idle (pack.size={spec.n_trials // 4}" in line
    assert "idle" not in plan_line(load_spec("demo", ["pack.size=8"]), 2, base)


def test_validate_prints_the_recomputed_plan_under_the_description(capsys):
    from sweeps.cli import main

    assert main(["validate", "tiny", "train.steps=400"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("tiny: 4 seconds-long trials (d=4 strings, 200 steps)")
    assert lines[1].startswith("  with train.steps=400: 4 trials, 400 steps each") and "2x those of tiny" in lines[1]


# ------------------------------------------------------------------------------------------- Optuna
def _optuna_spec(tmp_path, mode: str, trials: int = 2) -> SweepSpec:
    raw = dict(load_spec("tiny").raw)
    raw.update(name="ob", store=str(tmp_path / "store"), mode=mode)
    raw["optuna"] = {"trials": trials, "target_step": 40, "metric": "copy_frac", "theta": 0.5}
    return SweepSpec.from_dict(raw)


@pytest.mark.parametrize("mode", ["optuna-grid", "optuna-boundary"])
def test_run_prints_the_study_name_and_journal(tmp_path, mode):
    from rich.console import Console

    from sweeps.launch import print_spec
    from sweeps.optuna_mode import journal_path, study_name
    from sweeps.runner import default_storage_path

    spec = _optuna_spec(tmp_path, mode)
    console = Console(record=True, width=300)
    print_spec(spec, console)
    text = console.export_text()
    assert f"optuna study {study_name(spec)!r}" in text
    assert f"optuna journal {journal_path(spec, default_storage_path(spec.store))}" in text
    assert ("hashes the grid's axes" in text) == (mode == "optuna-grid")
    if mode == "optuna-boundary":   # what runs: optuna.trials of them, not the grid's size
        assert f"2 trials chosen by Optuna (TPE) among {spec.n_trials} grid points" in text


def _complete_study(spec: SweepSpec, n: int) -> list[str]:
    """A journal whose study holds `n` COMPLETE trials at the first `n` grid points; returns their trial ids."""
    import optuna

    from sweeps.optuna_mode import _journal, axis_labels, journal_path, study_name
    from sweeps.runner import default_storage_path

    study = optuna.create_study(storage=_journal(journal_path(spec, default_storage_path(spec.store))),
                                study_name=study_name(spec), direction="minimize")
    space = {name: optuna.distributions.CategoricalDistribution(labels) for name, labels in axis_labels(spec).items()}
    points = spec.points()[:n]
    for k, point in enumerate(points):
        study.add_trial(optuna.trial.create_trial(params=spec.labels_of(point), distributions=space, value=float(k)))
    return [spec.trial_for(p).trial_id for p in points]


def _store_finished(spec: SweepSpec, ids: list[str]) -> None:
    from analysis.store import Store

    for tid in ids:
        with Store(spec.store).writer(spec.name, tid, attempt_ns=1) as w:
            w.append("trials", {"status": "done"})


def _no_ray(monkeypatch):
    """Fail the test if `run` reaches run_sweep or ray.init (whether or not another test left a Ray running)."""
    import ray

    import sweeps.runner

    def refuse(*a, **k):
        raise AssertionError("run_sweep (and so Ray) was started")
    monkeypatch.setattr(sweeps.runner, "run_sweep", refuse)
    monkeypatch.setattr(ray, "init", refuse)


def _args(**kw) -> Namespace:
    return Namespace(resume=False, workers=None, address=None, no_progress=True, verbose=False, overrides=[],
                     spec="tiny", **kw)


def test_a_finished_boundary_study_is_decided_from_its_journal(tmp_path, monkeypatch):
    from rich.console import Console

    from sweeps.launch import run
    from sweeps.optuna_mode import complete_trials, journal_path
    from sweeps.runner import default_storage_path

    spec = _optuna_spec(tmp_path, "optuna-boundary", trials=3)
    journal = journal_path(spec, default_storage_path(spec.store))
    assert complete_trials(spec, journal) == 0 and not Path(journal).exists()     # reading creates nothing
    ids = _complete_study(spec, 3)
    assert complete_trials(spec, journal) == 0      # the store holds none of them: a journal alone finishes nothing
    _store_finished(spec, ids)
    assert complete_trials(spec, journal) == 3
    _no_ray(monkeypatch)
    console = Console(record=True, width=300)
    assert run(spec, _args(), console) is None
    assert f"ob: all 3 trials are already finished in {spec.store}; nothing to run" in console.export_text()


def test_a_finished_grid_is_decided_from_the_store_before_ray(tmp_path, monkeypatch):
    from rich.console import Console

    from analysis.store import Store
    from sweeps.launch import run

    raw = dict(load_spec("tiny").raw)
    raw.update(store=str(tmp_path / "store"))
    spec = SweepSpec.from_dict(raw)
    store = Store(spec.store)
    for t in spec.trials():
        with store.writer("tiny", t.trial_id, attempt_ns=1) as w:
            w.append("trials", {"status": "done" if t is not spec.trials()[-1] else "stopped"})
    _no_ray(monkeypatch)
    console = Console(record=True, width=300)
    assert run(spec, _args(), console) is None
    assert console.export_text().strip() == f"tiny: all 4 trials are already finished in {spec.store}; nothing to run"


# ------------------------------------------------------------------------------------------- report --out
@pytest.mark.parametrize("name", ["r.html", "r.HTM"])
def test_report_out_refuses_an_html_file_name(tmp_path, capsys, name):
    from sweeps.cli import main

    assert main(["report", str(tmp_path / "store"), "--out", str(tmp_path / name)]) == 2
    err = capsys.readouterr().err
    assert "the report is a folder" in err and f"--out {tmp_path / Path(name).stem}" in err
    assert not (tmp_path / name).exists()


# ------------------------------------------------------------------------------------------- quiet hooks
class _Grab(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def test_resume_hook_takes_the_config_so_tune_warns_nothing():
    """Tune calls a sample_from function with the config; one that needs Tune's older spec dict gets a KeyError,
    is called again with it and Tune logs a deprecation warning (what --resume printed). Ray's loggers do not
    propagate to the root logger, so the warning is caught on Tune's own logger."""
    from ray import tune
    from ray.tune.search.variant_generator import generate_variants

    from sweeps.runner import _resume_path

    spec = load_spec("tiny")
    ids = [t.trial_id for t in spec.trials()]
    space = {"trial": tune.grid_search([t.to_dict() for t in spec.trials()]),
             "_resume_from": tune.sample_from(partial(_resume_path, {ids[1]: "/ckpt/b"}))}
    grab, tune_logger = _Grab(), logging.getLogger("ray.tune")
    tune_logger.addHandler(grab)
    try:
        got = {v["trial"]["trial_id"]: v["_resume_from"] for _, v in generate_variants(space)}
    finally:
        tune_logger.removeHandler(grab)
    assert got == {tid: ("/ckpt/b" if tid == ids[1] else None) for tid in ids}
    assert not [m for m in grab.messages if "deprecated" in m], grab.messages


def test_quiet_mutes_library_info_and_the_study_stop_warning_unless_verbose():
    from sweeps import quiet

    logger = logging.getLogger(quiet.OPTUNA_SEARCH_LOGGER)
    record = logging.LogRecord(logger.name, logging.WARNING, __file__, 1, "`Study.stop` is supposed to be invoked "
                               "inside an objective function or a callback.", None, None)
    before = (logging.getLogger("ray").level, logging.getLogger("optuna").level, list(logger.filters))
    try:
        quiet.apply(verbose=True)
        assert logger.filter(record)
        quiet.apply(verbose=False)
        assert not logger.filter(record)
        assert logging.getLogger("ray").getEffectiveLevel() >= logging.WARNING
        assert logging.getLogger("optuna").getEffectiveLevel() >= logging.WARNING
    finally:
        logging.getLogger("ray").setLevel(before[0])
        logging.getLogger("optuna").setLevel(before[1])
        logger.filters[:] = before[2]


# ------------------------------------------------------------------------------------------- packaging
def test_every_third_party_package_imported_directly_is_declared():
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    names = {re.split(r"[<>=\[ ]", d, maxsplit=1)[0].lower() for d in declared}
    for package in ("pydantic", "yaml", "ray", "optuna", "pyarrow", "rich"):
        imported = any(re.search(rf"^\s*(import|from) {package}\b", p.read_text(), re.M)
                       for d in ("rhm", "models", "sweeps", "analysis") for p in (ROOT / d).rglob("*.py"))
        assert not imported or {"yaml": "pyyaml"}.get(package, package) in names, package


def test_an_optuna_grid_that_ran_its_trials_is_finished(tmp_path, monkeypatch):
    """optuna.trials=2 of a 4-point grid: 2 finished points in the store are the whole plan."""
    from rich.console import Console

    from analysis.store import Store
    from sweeps.launch import run

    spec = _optuna_spec(tmp_path, "optuna-grid", trials=2)
    store = Store(spec.store)
    for t in spec.trials()[:2]:
        with store.writer("ob", t.trial_id, attempt_ns=1) as w:
            w.append("trials", {"status": "done"})
    _no_ray(monkeypatch)
    console = Console(record=True, width=300)
    assert run(spec, _args(), console) is None
    assert console.export_text().strip() == f"ob: all 2 trials are already finished in {spec.store}; nothing to run"
