"""Hydra-style overrides: applied to the YAML mapping, validated like it, round-tripping through the effective spec."""
from __future__ import annotations

import pytest
import yaml

from sweeps.spec import SpecError, SweepSpec, load_spec
from sweeps.spec.overrides import apply_overrides, parse_override


def _tiny(tmp_path, *overrides: str) -> SweepSpec:
    return load_spec("tiny", [f"store={tmp_path / 'store'}", *overrides])


def test_values_are_parsed_as_yaml():
    assert parse_override("train.steps=2000") == (("train", "steps"), 2000)
    assert parse_override("train.lr=1e-3") == (("train", "lr"), "1e-3")           # YAML 1.1: a float check takes it
    assert parse_override("axes.P=[8, 16]") == (("axes", "P"), [8, 16])
    assert parse_override("axes.model.width=[64,128]") == (("axes", "model.width"), [64, 128])
    assert parse_override("tail={family: power, zipf_a: 1}") == (("tail",), {"family": "power", "zipf_a": 1})
    assert parse_override("eval.sample_steps=") == (("eval", "sample_steps"), None)
    assert parse_override("~stop")[0] == ("stop",)


def test_overrides_set_keys_axes_and_remove_sections(tmp_path):
    spec = _tiny(tmp_path, "train.steps=300", "axes.P=[4,6]", "model.width=64", "~stop", "train.lr=1e-3")
    assert spec.train.steps == 300 and spec.model.width == 64 and spec.train.lr == pytest.approx(1e-3)
    assert dict(spec.axes)["data.P"] == (4, 6) and spec.stop.theta is None
    t = spec.trials()[0]
    assert (t.train.steps, t.model.width, t.P, t.theta_stop) == (300, 64, 4, None)
    base = _tiny(tmp_path)
    assert {t.trial_id for t in spec.trials()}.isdisjoint(t.trial_id for t in base.trials())


def test_a_fixed_override_replaces_an_axis_and_an_axis_replaces_a_fixed_value(tmp_path):
    spec = _tiny(tmp_path, "data.P=8", "seed=3")
    assert "data.P" not in spec.axis_names and "seed" not in spec.axis_names
    assert {(t.P, t.seed) for t in spec.trials()} == {(8, 3)} and spec.n_trials == 2
    spec = _tiny(tmp_path, "data.P=8", "axes.P=[4,8]")          # the later override wins
    assert dict(spec.axes)["data.P"] == (4, 8) and "P" not in spec.raw.get("data", {})
    spec = _tiny(tmp_path, "axes.data.P=[6]")                   # another spelling of the same axis
    assert list(spec.raw["axes"]) == ["tail", "seed", "data.P"] and dict(spec.axes)["data.P"] == (6,)


@pytest.mark.parametrize("overrides", [
    ("train.steps=300", "axes.P=[4,6]", "model.width=64"),
    ("tail={family: power, zipf_a: 0.5}", "~axes.seed", "seed=2"),
    ("axes.tail=[{family: power, a: 2, levels: [-1]}, uniform]", "eval.n_gen=32", "stop.metric=copy_frac"),
])
def test_overrides_round_trip(tmp_path, overrides):
    """The effective spec, re-serialized (dict and YAML) and loaded again, gives the same trials."""
    spec = _tiny(tmp_path, *overrides)
    for again in (SweepSpec.from_dict(spec.to_dict()), SweepSpec.from_dict(yaml.safe_load(spec.to_yaml())),
                  SweepSpec.from_dict(spec.raw)):
        assert again.trials() == spec.trials()
    assert spec.with_overrides(()).trials() == spec.trials()


@pytest.mark.parametrize("override, needle", [
    ("model.widht=128", "model: unknown key 'widht'; did you mean 'width'?"),
    ("trian.steps=10", "(top level): unknown key 'trian'; did you mean 'train'?"),
    ("axes.widht=[1]", "axes: unknown axis 'widht'; did you mean 'model.width'?"),
    ("axes.model.widht=[16]", "did you mean 'model.width'?"),
    ("stop.metrc=copy_frac", "stop: unknown key 'metrc'; did you mean 'metric'?"),
    ("train.steps=many", "train.steps: 'many' is not an integer"),
    ("model.process=maskd", "process='maskd' is unknown"),
    ("mode=grdi", "did you mean 'grid'?"),
])
def test_wrong_overrides_are_rejected_like_the_yaml(tmp_path, override, needle):
    with pytest.raises(SpecError) as e:
        _tiny(tmp_path, override)
    assert any(needle in p for p in e.value.problems), e.value.problems
    assert override in str(e.value)  # the source names the overrides


@pytest.mark.parametrize("override, needle", [
    ("train.steps", "expected KEY=VALUE or ~KEY"),
    ("name.x=1", "'name' is 'tiny', not a section"),
    ("~train.nope", "no such key to remove"),
    ("train..steps=1", "is not a key path"),
    ("axes.P=[1,", "not valid YAML"),
])
def test_malformed_overrides(tmp_path, override, needle):
    with pytest.raises(SpecError, match=None) as e:
        _tiny(tmp_path, override)
    assert any(needle in p for p in e.value.problems), e.value.problems


def test_apply_overrides_leaves_the_input_alone():
    raw = {"train": {"steps": 1}, "axes": {"P": [1]}}
    out, problems = apply_overrides(raw, ["train.steps=2", "axes.P=[3]"])
    assert not problems and out == {"train": {"steps": 2}, "axes": {"P": [3]}}
    assert raw == {"train": {"steps": 1}, "axes": {"P": [1]}}
