"""The README's examples are valid (docs that drift from the code mislead newcomers first)."""
from __future__ import annotations

import re
import shlex
from pathlib import Path

import yaml

from sweeps.spec import SweepSpec, load_spec

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def _example() -> dict:
    blocks = re.findall(r"```yaml\n(.*?)```", README, re.S)
    assert blocks, "README.md has no yaml example"
    return yaml.safe_load(blocks[0])


def test_readme_example_sweep_validates(tmp_path):
    raw = _example()
    raw["store"] = str(tmp_path / "store")
    spec = SweepSpec.from_dict(raw)
    axes = dict(spec.axes)
    assert spec.n_trials == len(axes["tail"]) * len(axes["grammar.L"]) * len(axes["data.P"]) * len(axes["seed"])


def test_readme_example_does_not_collide_with_the_demo():
    """Running the README's example next to `make demo` must not write into the demo's store or reuse its ids."""
    example, demo = SweepSpec.from_dict(_example()), load_spec("demo")
    assert example.name != demo.name and example.store != demo.store
    assert {t.trial_id for t in example.trials()}.isdisjoint(t.trial_id for t in demo.trials())


def test_readme_override_examples_validate(tmp_path):
    commands = re.findall(r"memsweep (?:run|validate) (demo(?: [^\s#`]+)*)", README)
    assert len(commands) >= 3
    for command in commands:
        name, *overrides = shlex.split(command)
        spec = load_spec(name, [*overrides, f"store={tmp_path / 'store'}"])
        assert spec.n_trials >= 1, command
