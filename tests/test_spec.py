"""Sweep specs: presets, grid expansion, trial ids, round trips, validation messages, stop metric, tail conventions."""
from __future__ import annotations

import dataclasses
import functools
import json
import math
from pathlib import Path

import numpy as np
import pytest
import yaml

from analysis.registry import DEFAULT_MEM_METRIC
from models import ModelConfig, TrainConfig
from rhm import GrammarSpec, RuleDist
from sweeps.spec import (SpecError, SweepSpec, TailSpec, TrialConfig, load_spec, preset_descriptions, preset_names,
                         preset_path)

PRESETS = ("demo", "depth", "paper", "regime", "study", "tails", "tiny")


@functools.lru_cache(maxsize=None)
def _preset(name: str) -> SweepSpec:
    """A preset loaded once per session (the paper grid has 800 points)."""
    return load_spec(name)


def _raw(name: str) -> dict:
    return yaml.safe_load(preset_path(name).read_text())


def _good(tmp_path: Path, **over) -> dict:
    """A small valid spec dict writing under tmp_path."""
    d = {
        "name": "t", "store": str(tmp_path / "store"),
        "grammar": {"v": 8, "n_c": 2, "m": 2, "s": 2, "L": 2},
        "data": {"heldout": 4},
        "model": {"width": 32, "depth": 1, "heads": 4},
        "train": {"steps": 50},
        "axes": {"tail": [{"family": "uniform"}, {"family": "power", "a": 1.0}], "P": [4, 8], "seed": [0, 1]},
    }
    d.update(over)
    return d


# ------------------------------------------------------------------------------------------------- presets
def test_presets_listed_with_descriptions():
    assert set(PRESETS) <= set(preset_names())
    desc = preset_descriptions()
    assert all(desc[name] for name in PRESETS)


@pytest.mark.parametrize("name", PRESETS)
def test_preset_validates_and_expands_to_axes_product(name):
    raw = _raw(name)
    expected = math.prod(len(values) for values in raw["axes"].values())
    spec = load_spec(name)
    trials = spec.trials()
    assert spec.name == name and spec.n_trials == expected and len(trials) == expected
    assert len({t.trial_id for t in trials}) == expected
    assert all(t.trial_id.startswith(f"{name}-") for t in trials)
    assert load_spec(str(preset_path(name))).n_trials == expected  # by path too


def test_demo_preset_supports_an_onset_law():
    """Several P values, >= 2 seeds and >= 2 tails, CPU only, early stop on."""
    spec = load_spec("demo")
    axes = dict(spec.axes)
    assert len(axes["data.P"]) >= 4 and len(axes["seed"]) >= 2 and len(axes["tail"]) >= 2
    assert spec.resources["gpu"] == 0
    t = spec.trials()[0]
    assert t.theta_stop is not None and t.train.device == "cpu"
    # budget sanity: <= ~8 min at 50 steps/s on 2 workers even if no trial stops early (plus early stop slack)
    assert sum(x.train.steps for x in spec.trials()) / 50 / 2 < 1.5 * 8 * 60


def test_paper_preset_is_a_full_grid_for_one_gpu():
    """The study's tails (incl. both placements) x sizes over 1.5 decades x 2 grammars x 3 seeds, several trials per
    GPU, with P << P_max everywhere so copy_baseline stays negligible."""
    spec = _preset("paper")
    axes = dict(spec.axes)
    assert len(axes["seed"]) >= 3 and len(axes["grammar.seed"]) >= 2
    assert {t.label for t in axes["tail"]} == {t.label for t in dict(_preset("study").axes)["tail"]}
    assert max(axes["data.P"]) / min(axes["data.P"]) >= 30
    labels = {t.label for t in axes["tail"]}
    assert "uniform" in labels and any("@" in lab for lab in labels) and len(labels) >= 4
    assert 0 < spec.resources["gpu"] <= 0.25
    assert all(t.P <= 1e-3 * t.grammar.P_max for t in spec.trials())
    assert all(t.train.device == "cuda" for t in spec.trials())


def test_study_preset_has_tails_and_placements_at_matched_entropy():
    """Tails that are tails (m >= 8): uniform, power laws at two exponents and an exponential reference; the two
    placements (fat near the root, fat at the leaves) have the same exact string entropy within 5%, computed from
    each trial's grammar, and opposite entropy tilts; two grammar seeds and two data seeds per point."""
    spec = _preset("study")
    axes = dict(spec.axes)
    trials = spec.trials()
    assert all(t.grammar.m >= 8 for t in trials) and spec.resources["gpu"] == 0
    assert len(axes["data.P"]) >= 4 and len(axes["seed"]) >= 2 and len(axes["grammar.seed"]) >= 2
    everywhere = [t for t in axes["tail"] if t.levels is None]
    assert {t.family for t in everywhere} == {"uniform", "power", "exp"}
    assert len({t.a for t in everywhere if t.family == "power"}) >= 2
    placed = [t for t in trials if t.tail.levels is not None]
    by_tilt = {t.grammar.entropy_tilt > 0: t.grammar for t in placed}
    assert set(by_tilt) == {True, False}                                   # one fat near the root, one at the leaves
    high, low = by_tilt[True], by_tilt[False]
    assert abs(high.entropy / low.entropy - 1) < 0.05, (high.entropy, low.entropy)
    assert max(high.levels[0].entropy(8), high.levels[1].entropy(8)) > high.levels[2].entropy(8)
    assert low.levels[2].entropy(8) > max(low.levels[0].entropy(8), low.levels[1].entropy(8))
    assert all(t.P <= 1e-3 * t.grammar.P_max for t in trials)


def test_regime_preset_sweeps_P_across_the_generalization_boundary():
    """Sizes on both sides of the boundary (probes: memorize-only at P <= 256, the window from 512), two grammar and
    two data seeds, a validity check far above chance, T at most a quarter of the language (uniform rules: p(T) =
    P / P_max; the report flags p(T) > 0.5), and trials that stop at memorization (theta 0.5, 2 evaluations)."""
    spec = _preset("regime")
    axes = dict(spec.axes)
    trials = spec.trials()
    assert {t.model.backbone for t in trials} == {"tree_conv"}
    assert max(axes["data.P"]) / min(axes["data.P"]) >= 8 and len(axes["grammar.seed"]) >= 2
    assert len(axes["seed"]) >= 2 and sum(P >= 512 for P in axes["data.P"]) >= 3
    assert all(t.P <= 0.25 * t.grammar.P_max and t.grammar.chance_valid < 1e-3 for t in trials)
    assert all(t.theta_stop == 0.5 and t.stop_metric == "mem_twin" for t in trials)


def test_regime_preset_ids_are_the_committed_runs():
    """The preset names the trials behind docs/findings/regime (every string probed, as they were): a user's run
    reproduces and `--resume` continues them instead of starting 24 new trials."""
    import pandas as pd
    committed = set(pd.read_csv(Path(__file__).parents[1] / "docs/findings/regime/overest_trials.csv").trial_id)
    assert {t.trial_id for t in _preset("regime").trials()} == committed


def test_probe_subset_names_a_trial_only_where_it_probes():
    """eval.overest_strings is part of a trial's id when the probe runs (64 strings and all of them are different
    measurements) and not otherwise, so trials that never probe keep the ids they had before the field."""
    base = _preset("regime").trials()[0]
    ids = {(every, k): dataclasses.replace(base, trial_id="", overest_every=every, overest_strings=k).trial_id
           for every in (0, 2) for k in (None, 64, 128)}
    assert ids[0, None] == ids[0, 64] == ids[0, 128]
    assert len({ids[2, k] for k in (None, 64, 128)}) == 3
    assert ids[2, None] == base.trial_id


def test_tails_preset_has_a_fat_and_a_thin_tail_and_a_placement_pair_at_matched_entropy():
    """In the regime preset's grammar shape: uniform, a fat (power a = 1) and a thin (exponential) tail within 1% of
    each other's H(x), and the placement pair (fat at the root production vs fat at the 3 below it) with H(x) equal
    within 1% and opposite entropy tilts, from each trial's own grammar."""
    spec, regime = _preset("tails"), _preset("regime")
    trials = spec.trials()
    assert {(t.grammar.v, t.grammar.n_c, t.grammar.m, t.grammar.s, t.grammar.L) for t in trials} == \
        {(g.v, g.n_c, g.m, g.s, g.L) for g in (t.grammar for t in regime.trials())}
    by_label = {t.tail.label: t.grammar for t in trials}
    fat, thin = by_label["power(a=1)"], by_label["exp(xi=3)"]
    assert abs(fat.entropy / thin.entropy - 1) < 0.01 and thin.levels[0].family == "exp"
    placed = [g for lab, g in by_label.items() if "@" in lab]
    by_tilt = {g.entropy_tilt > 0: g for g in placed}
    assert set(by_tilt) == {True, False}
    assert abs(by_tilt[True].entropy / by_tilt[False].entropy - 1) < 0.01
    assert all(t.grammar.m >= 6 for t in trials)


def test_tiny_preset_is_tiny():
    for t in load_spec("tiny").trials():
        assert t.train.steps <= 200 and t.grammar.d <= 4 and t.model.width <= 32 and t.n_gen <= 64


def test_load_spec_unknown_lists_presets():
    with pytest.raises(SpecError) as e:
        load_spec("no-such-spec")
    assert all(name in str(e.value) for name in PRESETS)


# ------------------------------------------------------------------------------------------ trial configs
def test_trial_config_round_trip_through_json():
    for trial in _preset("paper").trials()[:50] + load_spec("tiny").trials():
        d = json.loads(json.dumps(trial.to_dict()))
        back = TrialConfig.from_dict(d)
        assert back == trial
        assert back.to_dict() == trial.to_dict()
        assert isinstance(back.grammar, GrammarSpec) and isinstance(back.model, ModelConfig)
        assert isinstance(back.train, TrainConfig) and isinstance(back.tail, TailSpec)


def test_trial_ids_stable_and_ignore_sweep_store():
    a = [t.trial_id for t in load_spec("demo").trials()]
    b = [t.trial_id for t in load_spec("demo").trials()]
    assert a == b
    moved = load_spec("demo").with_store("s3://bucket/elsewhere")
    assert [t.trial_id for t in moved.trials()] == a
    t = load_spec("demo").trials()[0]
    d = t.to_dict()
    d["trial_id"] = ""
    d["store"] = "/x"
    assert TrialConfig.from_dict(d).trial_id == t.trial_id


def test_trial_wiring(tmp_path):
    spec = SweepSpec.from_dict(_good(tmp_path, axes={"tail": [{"family": "power", "a": 2, "levels": [-1]}],
                                                     "P": [8], "seed": [3]}))
    (t,) = spec.trials()
    assert t.seed == t.data_seed == t.train.seed == 3
    assert t.grammar.seed == 0  # the grammar does not follow the seed axis
    assert t.grammar.levels == (RuleDist(), RuleDist("power", a=2.0))
    assert t.tail.label == "power(a=2)@-1"
    assert t.store == str(tmp_path / "store")


def test_grammar_fixed_across_seeds_unless_axis(tmp_path):
    spec = SweepSpec.from_dict(_good(tmp_path))
    assert {t.grammar.seed for t in spec.trials()} == {0}
    spec = SweepSpec.from_dict(_good(tmp_path, axes={"P": [4], "grammar.seed": [0, 1]}))
    assert [t.grammar.seed for t in spec.trials()] == [0, 1]


def test_flat_has_dotted_scalars():
    t = _preset("paper").trials()[-1]
    flat = t.flat()
    assert flat["grammar.v"] == t.grammar.v and flat["model.width"] == t.model.width
    assert flat["train.lr"] == pytest.approx(t.train.lr) and flat["P"] == t.P
    assert flat["tail.levels"] == ",".join(str(l) for l in t.tail.levels)
    assert "trial_id" not in flat and "store" not in flat and "sweep" not in flat
    assert all(v is None or isinstance(v, (str, int, float, bool)) for v in flat.values())


def test_tail_labels_and_levels():
    assert TailSpec().label == "uniform"
    assert TailSpec("power", a=1).label == "power(a=1)"
    assert TailSpec("power", a=1, levels=(0,)).label == "power(a=1)@0"
    assert TailSpec("exp", xi=2).level_dists(2) == (RuleDist("exp", xi=2.0),) * 2
    assert TailSpec("power", a=1, levels=(0, 1)).resolved_levels(4) == (0, 1)
    assert TailSpec("power", a=1, levels=(-2, -1)).resolved_levels(4) == (2, 3)
    with pytest.raises(ValueError):
        TailSpec("power", a=1, levels=(3,)).level_dists(3)
    with pytest.raises(ValueError):
        TailSpec("uniform", levels=(0,))


def test_yaml_string_floats_and_shorthand_tail(tmp_path):
    spec = SweepSpec.from_dict(_good(tmp_path, train={"steps": 50, "lr": "1e-3"}, tail="uniform",
                                     axes={"P": [4]}))
    assert spec.trials()[0].train.lr == pytest.approx(1e-3)


def test_relative_store_resolves_against_cwd(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    spec = SweepSpec.from_dict(_good(tmp_path, store="runs/x"))
    assert spec.store == str(tmp_path / "runs" / "x")
    assert SweepSpec.from_dict(_good(tmp_path, store="s3://b/p")).store == "s3://b/p"


# ------------------------------------------------------------------------------------------- validation
def test_many_mistakes_one_error(tmp_path):
    blocker = tmp_path / "afile"
    blocker.write_text("")
    d = _good(tmp_path)
    d["store"] = str(blocker / "store")                           # parent is a file
    d["grammar"] = {"v": 4, "n_c": 2, "m": 8, "s": 2, "L": 2}      # v*m > v**s
    d["modle"] = {}                                                # typo of `mode`/`model`
    d["model"]["widht"] = 64                                       # typo of width
    d["resources"] = {"cpu": -1, "gpu": 1.5}
    d["stop"] = {"theta": 1.5}
    d["axes"] = {"P": [8, 8], "seed": [], "tail": [{"family": "uniform"}]}
    with pytest.raises(SpecError) as e:
        SweepSpec.from_dict(d, source="bad.yaml")
    msg = str(e.value)
    problems = e.value.problems
    assert "bad.yaml" in msg and len(problems) >= 8
    assert any("modle" in p and "did you mean" in p for p in problems)
    assert any("widht" in p and "'width'" in p for p in problems)
    assert any("impossible grammar" in p for p in problems)
    assert any(p.startswith("store:") and "file, not a directory" in p for p in problems)
    assert any(p.startswith("resources.cpu") for p in problems)
    assert any(p.startswith("resources: gpu=1.5") for p in problems)
    assert any(p.startswith("stop.theta") for p in problems)
    assert any(p.startswith("axes.P[1]") and "repeats" in p for p in problems)
    assert any(p.startswith("axes.seed") for p in problems)


def test_p_over_p_max_and_bad_tail_level(tmp_path):
    d = _good(tmp_path, axes={"P": [8, 17], "tail": [{"family": "power", "a": 1.0, "levels": [2]}]})
    with pytest.raises(SpecError) as e:
        SweepSpec.from_dict(d)
    problems = e.value.problems
    assert any("P=17" in p and "P_max=16" in p for p in problems)
    assert any("tail level 2 does not exist at L=2" in p for p in problems)
    # i.i.d. sets may exceed P_max (with held-out disabled)
    d = _good(tmp_path, data={"unique": False, "heldout": 0}, axes={"P": [64]})
    assert SweepSpec.from_dict(d).n_trials == 1


@pytest.mark.parametrize("store, needle", [("", "missing or empty"), (None, "missing or empty"),
                                           ("ftp://host/x", "unsupported scheme"), ("s3://", "names no bucket")])
def test_bad_stores(tmp_path, store, needle):
    d = _good(tmp_path)
    if store is None:
        del d["store"]
    else:
        d["store"] = store
    with pytest.raises(SpecError) as e:
        SweepSpec.from_dict(d)
    assert any(p.startswith("store:") and needle in p for p in e.value.problems)


@pytest.mark.parametrize("resources, ok", [({"cpu": 1, "gpu": 0.25}, True), ({"cpu": 0.5}, True),
                                           ({"cpu": 0, "gpu": 1}, True), ({"cpu": 0, "gpu": 0}, False),
                                           ({"gpu": 2}, True), ({"gpu": 2.5}, False), ({"cpu": "1"}, False),
                                           ({"cpus": 1}, False)])
def test_resources(tmp_path, resources, ok):
    d = _good(tmp_path, resources=resources)
    if ok:
        assert SweepSpec.from_dict(d).resources["gpu"] == float(resources.get("gpu", 0))
    else:
        with pytest.raises(SpecError, match="resources"):
            SweepSpec.from_dict(d)


@pytest.mark.parametrize("mutate, needle", [
    (lambda d: d.pop("axes"), "axes: missing or empty"),
    (lambda d: d.update(axes={}), "axes: missing or empty"),
    (lambda d: d["axes"].update({"model.widht": [1]}), "did you mean 'model.width'"),
    (lambda d: d["axes"].update({"L": [2], "grammar.L": [3]}), "give each axis once"),
    (lambda d: d["axes"].update({"L": [2]}), "also set as a fixed value"),
    (lambda d: d.update(mode="grdi"), "did you mean 'grid'"),
    (lambda d: d["train"].update(seed=1), "train.seed"),
    (lambda d: d["train"].update(steps=2.5), "train.steps"),
    (lambda d: d["data"].update(unique="yes"), "data.unique"),
    (lambda d: d["grammar"].pop("v"), "grammar.v: missing"),
    (lambda d: d["model"].update(heads=3), "divisible"),
    (lambda d: d.update(name="bad name"), "name:"),
    (lambda d: d.update(stop={"theta": 0}), "stop.theta"),
    (lambda d: d.update(mode="optuna-boundary"), "optuna.target_step: missing"),
    (lambda d: d.update(mode="optuna-boundary", optuna={"trials": 4, "target_step": 99}), "exceeds the step"),
    (lambda d: d["axes"].update(tail=[{"family": "power", "a": 1}, {"family": "power", "a": 1.0}]), "repeats"),
    (lambda d: d["axes"].update(tail=[{"family": "powr"}]), "family"),
])
def test_single_mistakes_are_named(tmp_path, mutate, needle):
    d = _good(tmp_path)
    mutate(d)
    with pytest.raises(SpecError) as e:
        SweepSpec.from_dict(d)
    assert needle in str(e.value)


def test_optuna_settings(tmp_path):
    d = _good(tmp_path, mode="optuna-boundary",
              optuna={"trials": 3, "target_step": 40, "journal": "j.journal", "metric": "copy_frac"})
    spec = SweepSpec.from_dict(d)
    assert spec.mode == "optuna-boundary" and spec.optuna.trials == 3 and spec.optuna.target_step == 40
    assert Path(spec.optuna.journal).is_absolute()
    assert SweepSpec.from_dict(_good(tmp_path, mode="optuna-grid")).optuna.trials is None


def test_from_yaml_reports_file_and_yaml_errors(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: [unclosed\n")
    with pytest.raises(SpecError, match="not valid YAML"):
        SweepSpec.from_yaml(bad)
    with pytest.raises(SpecError, match="cannot read"):
        SweepSpec.from_yaml(tmp_path / "missing.yaml")
    good = tmp_path / "good.yaml"
    good.write_text(yaml.safe_dump(_good(tmp_path)))
    assert SweepSpec.from_yaml(good).n_trials == 8
    assert load_spec(str(good)).n_trials == 8


def test_points_and_trial_for(tmp_path):
    spec = SweepSpec.from_dict(_good(tmp_path))
    points = spec.points()
    assert len(points) == spec.n_trials and points[0].keys() == {"tail", "data.P", "seed"}
    assert spec.trial_for(points[-1]) == spec.trials()[-1]
    assert [name for name, _ in spec.grid_summary()] == ["tail", "P", "seed"]




# ------------------------------------------------------------------------------------------ the tree
def test_sections_read_like_the_yaml(tmp_path):
    """A section is its dataclass's fields: the YAML's value, else the dataclass default, else MISSING (axis)."""
    from sweeps.spec import MISSING
    spec = SweepSpec.from_dict(_good(tmp_path))
    assert spec.model.width == 32 and spec.model.dropout == 0.0           # set / ModelConfig default
    assert spec.data.heldout == 4 and spec.data.unique is True
    assert spec.data.P is MISSING and "data.P" in spec.axis_names          # supplied per point by the axis
    assert spec.stop.metric == DEFAULT_MEM_METRIC and spec.resources.cpu == 1.0
    with pytest.raises(AttributeError, match="keys: process, backbone, width"):
        spec.model.widht


@pytest.mark.parametrize("name", PRESETS)
def test_effective_spec_round_trips(name):
    """to_dict() / to_yaml() give the spec back: the same trials, ids included."""
    spec = _preset(name)
    again = SweepSpec.from_dict(spec.to_dict())
    via_yaml = SweepSpec.from_dict(yaml.safe_load(spec.to_yaml()))
    ids = [t.trial_id for t in spec.trials()]
    assert [t.trial_id for t in again.trials()] == ids == [t.trial_id for t in via_yaml.trials()]
    assert again.trials() == spec.trials()
    assert len(spec.to_yaml().splitlines()) <= 20  # compact: one line per section and per axis


def test_trial_ids_unchanged_for_specs_that_keep_the_old_behaviour(tmp_path):
    """Ids published before stop.metric existed: a trial without early stop, or stopping on copy_frac (the old
    rule), keeps its id; stopping on another metric is another trial. Likewise the data draw of those ids (the
    data seed alone, `data.draw: data`); the default draw (both seeds) draws other data, so it is another trial."""
    d = _good(tmp_path, axes={"P": [4]})
    assert SweepSpec.from_dict(d).trials()[0].trial_id != "t-7fe2d2e9e3"
    d["data"] = {**d.get("data", {}), "draw": "data"}
    assert SweepSpec.from_dict(d).trials()[0].trial_id == "t-7fe2d2e9e3"  # computed by the code before the split
    d["stop"] = {"theta": 0.9, "patience": 2, "metric": "copy_frac"}
    assert SweepSpec.from_dict(d).trials()[0].trial_id == "t-b8ae126694"
    d["stop"]["metric"] = "mem_excess"
    assert SweepSpec.from_dict(d).trials()[0].trial_id != "t-b8ae126694"


# ------------------------------------------------------------------------------------------ stop metric
def test_stop_metric_is_validated_and_carried(tmp_path):
    from analysis.registry import OBJECTIVE_METRICS
    for metric in OBJECTIVE_METRICS:
        t = SweepSpec.from_dict(_good(tmp_path, stop={"theta": 0.5, "metric": metric})).trials()[0]
        assert t.stop_metric == metric and TrialConfig.from_dict(t.to_dict()).stop_metric == metric
    with pytest.raises(SpecError, match="stop.metric: 'copy_fract' is not one of .*did you mean 'copy_frac'"):
        SweepSpec.from_dict(_good(tmp_path, stop={"theta": 0.5, "metric": "copy_fract"}))


@pytest.mark.parametrize("metric", ["copy_frac", "mem_excess"])
def test_early_stop_follows_the_stop_metric(tmp_path, metric):
    """The trial stops at the first evaluation where `metric` has been >= theta at `patience` consecutive
    evaluations, read off the metric's own reported series (on P=8 of a P_max=16 grammar, where copy_baseline is
    0.5, copy_frac and mem_excess cross 0.5 at different evaluations: reading the wrong metric stops elsewhere)."""
    import torch
    from sweeps.trial import train_trial
    torch.set_num_threads(1)
    raw = dict(_raw("tiny"), store=str(tmp_path / "store"))
    raw["axes"] = {"P": [8]}
    raw["train"] = {**raw["train"], "steps": 1000}
    raw["stop"] = {"theta": 0.5, "patience": 2, "metric": metric}
    raw["data"] = {**raw["data"], "draw": "data"}   # the training set on which the two metrics stop apart
    (cfg,) = SweepSpec.from_dict(raw).trials()
    seen: list[dict] = []
    out = train_trial(cfg, report=lambda m, d: seen.append(dict(m)), write_store=False)

    def stop_step(name: str) -> int | None:
        streak = 0
        for m in seen:
            streak = streak + 1 if m[name] >= 0.5 else 0
            if streak >= 2:
                return m["step"]
        return None

    other = "mem_excess" if metric == "copy_frac" else "copy_frac"
    expected = stop_step(metric)
    assert expected is not None and expected != stop_step(other)
    assert out.status == "stopped" and out.final_step == expected == seen[-1]["step"]


# ------------------------------------------------------------------------------------------ tail conventions
@pytest.mark.parametrize("zipf_a, a", [(1.0, 2.0), (0.0, 1.0), (-0.5, 0.5), (1.5, 2.5)])
def test_zipf_convention_round_trips(tmp_path, zipf_a, a):
    """{family: power, zipf_a: z} (f_k ~ k**-(1+z), Cagnetta, Kang & Wyart 2025) is the tail a = 1 + z: the same
    trial id and store label as writing `a`; the trial's tail reads back in both conventions."""
    ours = SweepSpec.from_dict(_good(tmp_path, axes={"P": [4], "tail": [{"family": "power", "a": a}]}))
    zipf = SweepSpec.from_dict(_good(tmp_path, axes={"P": [4], "tail": [{"family": "power", "zipf_a": zipf_a}]}))
    (t1,), (t2,) = ours.trials(), zipf.trials()
    assert t1.trial_id == t2.trial_id and t1.tail.label == t2.tail.label == f"power(a={a:g})"
    assert t2.tail.a == pytest.approx(a) and t2.tail.zipf_a == pytest.approx(zipf_a)
    assert TailSpec.zipf(zipf_a) == t2.tail == TailSpec.from_dict({"family": "power", "zipf_a": zipf_a})
    probs = t2.tail.rule_dist().probs(8)
    k = np.arange(1, 9)
    assert probs == pytest.approx(k ** -(1 + zipf_a) / (k ** -(1 + zipf_a)).sum())   # f_k ~ k^-(1+zipf_a)
    assert SweepSpec.from_dict(yaml.safe_load(zipf.to_yaml())).trials()[0].trial_id == t1.trial_id


@pytest.mark.parametrize("tail, needle", [
    ({"family": "power", "a": 2, "zipf_a": 1}, "give either a"),
    ({"family": "power", "zipf_a": -1.5}, "a = 1 + zipf_a = -0.5 < 0"),
    ({"family": "exp", "zipf_a": 1}, "needs family: power"),
    ({"family": "power", "zipf_a": "x"}, "zipf_a must be a finite number"),
])
def test_zipf_convention_mistakes(tmp_path, tail, needle):
    with pytest.raises(SpecError) as e:
        SweepSpec.from_dict(_good(tmp_path, axes={"P": [4], "tail": [tail]}))
    assert any(p.startswith("axes.tail[0]") and needle in p for p in e.value.problems), e.value.problems
    with pytest.raises(SpecError, match="grammar.root"):  # the root weights share the parser
        SweepSpec.from_dict(_good(tmp_path, grammar={**_good(tmp_path)["grammar"], "root": tail}))


def test_tail_parameters_a_family_does_not_use_are_ignored():
    """A power law's xi and an exponential's a do not change the distribution, so they do not make another trial."""
    assert TailSpec("power", a=1, xi=3) == TailSpec("power", a=1)
    assert TailSpec("exp", a=2, xi=3) == TailSpec("exp", xi=3)


# ------------------------------------------------------------------------------------------ a law elsewhere
def test_tail_rest_puts_a_second_law_on_the_other_levels(tmp_path):
    from rhm import RuleDist
    from sweeps.spec.tail import TailSpec

    axes = {"P": [4], "seed": [0]}
    raw = {"family": "power", "a": 1, "levels": [0], "rest": {"family": "power", "zipf_a": 1.5}}
    (t,) = SweepSpec.from_dict(_good(tmp_path, tail=raw, axes=axes)).trials()
    assert t.tail.label == "power(a=1)@0/power(a=2.5)"
    assert t.grammar.levels == (RuleDist("power", a=1.0), RuleDist("power", a=2.5))
    assert TrialConfig.from_dict(t.to_dict()) == t
    # uniform elsewhere, written out or not, is one trial
    plain = SweepSpec.from_dict(_good(tmp_path, tail={"family": "power", "a": 1, "levels": [0]},
                                      axes=axes)).trials()[0]
    same = SweepSpec.from_dict(_good(tmp_path, tail={"family": "power", "a": 1, "levels": [0], "rest": "uniform"},
                                     axes=axes)).trials()[0]
    assert plain.trial_id == same.trial_id and "rest" not in plain.tail.to_dict()
    assert plain.trial_id != t.trial_id
    with pytest.raises(SpecError, match="rest is the law of the levels the tail does not list"):
        SweepSpec.from_dict(_good(tmp_path, tail={"family": "power", "a": 1, "rest": {"family": "exp"}}, axes=axes))
    with pytest.raises(SpecError, match="unknown key 'b'"):
        SweepSpec.from_dict(_good(tmp_path, tail={"family": "power", "a": 1, "levels": [0], "rest": {"b": 1}},
                                  axes=axes))
    assert TailSpec(family="uniform", levels=(0,), rest=RuleDist("exp", xi=1.0)).label == "uniform@0/exp(xi=1)"
