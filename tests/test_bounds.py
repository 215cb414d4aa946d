"""Bounds: absurd sizes are refused at validation with the estimate, the limit and the value that drives it."""
from __future__ import annotations

import contextlib
import signal
from pathlib import Path

import pytest
import yaml

from models import ModelConfig, build_model
from sweeps.spec import SpecError, SweepSpec, bounds, load_spec

BASE = {
    "name": "b", "grammar": {"v": 8, "n_c": 2, "m": 2, "s": 2, "L": 2}, "data": {"heldout": 4},
    "model": {"width": 32, "depth": 1, "heads": 4}, "train": {"steps": 50}, "axes": {"P": [4, 8]},
}
BIG_GRAMMAR = {"v": 32, "n_c": 8, "m": 8, "s": 2, "L": 4}   # P_max = 8 * 8**15 ~ 2.8e14


def _spec(tmp_path: Path, **over) -> SweepSpec:
    d = {**BASE, "store": str(tmp_path / "store")}
    for key, value in over.items():
        d[key] = {**d[key], **value} if isinstance(d.get(key), dict) and key != "axes" else value
    return SweepSpec.from_dict(d)


@pytest.mark.parametrize("cfg, v, s, L", [
    (ModelConfig(width=64, depth=2, heads=4), 16, 2, 3),
    (ModelConfig(process="uniform", width=48, depth=3, heads=6, time_cond=False), 7, 3, 2),
    (ModelConfig(backbone="tree_conv", width=32, depth=3), 16, 2, 4),
    (ModelConfig(process="uniform", backbone="tree_conv", width=40, depth=1, time_cond=False), 5, 3, 2),
])
def test_parameter_count_is_exact(cfg, v, s, L):
    model = build_model(cfg, v, s**L, s, L)
    assert bounds.n_params(cfg, v, s**L, s, L) == sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("over, kind, driver", [
    ({"model": {"width": 10**9}}, "RAM", "model.width=1,000,000,000"),
    ({"train": {"batch_size": 10**12}}, "RAM", "train.batch_size=1,000,000,000,000"),
    ({"eval": {"n_gen": 10**12}}, "RAM", "eval.n_gen=1,000,000,000,000"),
    ({"grammar": BIG_GRAMMAR, "axes": {"P": [10**12]}}, "RAM", "data.P=1,000,000,000,000"),
    ({"train": {"steps": 10**12}}, "30 days", "train.steps=1,000,000,000,000"),
    ({"model": {"width": 2**17, "depth": 8}, "resources": {"gpu": 1}}, "GPU memory", "model.width=131,072"),
])
def test_absurd_values_are_refused_with_the_limit(tmp_path, over, kind, driver):
    with pytest.raises(SpecError) as e:
        _spec(tmp_path, **over)
    hits = [p for p in e.value.problems if driver in p and "over the limit of" in p]
    assert hits, e.value.problems
    assert any(kind in p and "sweeps/spec/bounds.py" in p for p in hits)


def test_large_but_possible_values_pass(tmp_path):
    """A billion steps of a small model (~1 day at the step floor) and a 1e8-string set fit the limits."""
    _spec(tmp_path, train={"steps": 10**9})
    _spec(tmp_path, grammar=BIG_GRAMMAR, axes={"P": [10**8]})


def test_every_preset_is_within_bounds():
    for name in ("demo", "depth", "paper", "study", "tiny"):
        spec = load_spec(name)
        for t in spec.trials():
            assert bounds.problems(t, spec.resources.gpu) == []


def test_a_machine_smaller_than_the_limits_is_checked_for_a_local_run(tmp_path, monkeypatch):
    """`memsweep run` on this machine compares each trial with this machine's memory, not only the absolute
    limits (here a pretend machine of 64 MiB, which the 1e6-string training set overflows)."""
    from sweeps import launch

    spec = _spec(tmp_path, grammar=BIG_GRAMMAR, axes={"P": [10**6]})
    launch.preflight(spec, local=False)
    monkeypatch.setattr(bounds, "local_limits", lambda gpu: (64 * 2**20, 64 * 2**20))
    with pytest.raises(SpecError, match=r"on this machine, trial b-\w+ needs ~.* of RAM .*over the limit of 64 MiB"):
        launch.preflight(spec, local=True)


# ---- counts that size work, and YAML that expands: refused before any of that work (issue: inputs that stall)
TOO_SLOW_S = 5.0   # measured ~0.2 s each; the limit only tells a refusal from a stall (minutes or more) on a busy box


@contextlib.contextmanager
def _deadline(seconds: float):
    """Fail (instead of hanging the suite) when the block runs past `seconds`."""
    def _raise(*_):
        raise TimeoutError(f"still running after {seconds} s: not refused before the work")
    old = signal.signal(signal.SIGALRM, _raise)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


@pytest.mark.parametrize("override, message", [
    ("train.evals_per_decade=1000000000", r"train\.evals_per_decade=1,000,000,000 is over the limit of 10,000"),
    ("grammar.L=1000", r"s\*\*L = 2\*\*1000 tokens are too long; s\*\*L must be <= 2\*\*20"),
    ("grammar.s=1000", r"v\*\*s = 8\*\*1000 is too large; it must be <= 2\*\*62$"),
    ("axes.seed=[" + ",".join(map(str, range(20001))) + "]", r"the grid has 80,004 trials, over the limit of 10,000"),
])
def test_counts_that_size_work_are_refused_before_the_work(override, message):
    with _deadline(TOO_SLOW_S), pytest.raises(SpecError, match=message):
        load_spec("tiny", [override])


def _bomb(levels: int = 9) -> str:
    """A "billion laughs": 9 nested aliases of 9 = 9**9 (387 million) values in under 1.5 KB of YAML."""
    lines = ["[" + ", ".join(["1"] * 9) + "]"]
    for k in range(1, levels):
        lines.append("[" + ", ".join([f"*a{k - 1}"] * 9) + "]")
    return "[" + ", ".join(f"&a{k} {line}" for k, line in enumerate(lines)) + "]"


def test_a_yaml_alias_bomb_in_an_axis_is_refused(tmp_path):
    bomb = _bomb()
    assert len(bomb) < 1500
    raw = yaml.safe_load((Path(load_spec("tiny").source)).read_text())   # parsing alone is cheap: shared refs
    text = yaml.safe_dump({**raw, "store": str(tmp_path / "store"), "axes": {"P": [4]}}).replace(
        "- 4", f"- 4\n  seed: {bomb}")
    path = tmp_path / "bomb.yaml"
    path.write_text(text)
    with _deadline(TOO_SLOW_S), pytest.raises(SpecError, match=r"aliases \(\*name\) expand to more than 100,000"):
        load_spec(str(path))
    with _deadline(TOO_SLOW_S), pytest.raises(SpecError, match=r"expand to more than 100,000"):
        load_spec("tiny", [f"axes.seed={bomb}"])
    assert not (tmp_path / "store").exists()


def _tree_size(x) -> int:
    """Brute force: nodes of a parsed YAML value walked as a tree (a mapping's keys and values each count)."""
    if isinstance(x, dict):
        return 1 + sum(_tree_size(k) + _tree_size(v) for k, v in x.items())
    if isinstance(x, list):
        return 1 + sum(_tree_size(v) for v in x)
    return 1


@pytest.mark.parametrize("levels", [1, 2, 3, 4])
def test_expanded_size_counts_what_the_aliases_stand_for(levels):
    """sweeps.spec.yamlsafe counts on the node graph what a walk of the parsed value meets (brute force), and
    small aliases still load as yaml.safe_load loads them."""
    from sweeps.spec.yamlsafe import expanded_size, load_yaml

    text = f"tails: {{u: &u {{family: uniform}}}}\naxes: {{tail: [*u, *u]}}\nbomb: {_bomb(levels)}"
    node = yaml.compose(text)
    assert expanded_size(node) == _tree_size(yaml.safe_load(text))
    assert load_yaml(text) == yaml.safe_load(text)
    assert expanded_size(node, limit=10) == 11 < _tree_size(yaml.safe_load(text))
