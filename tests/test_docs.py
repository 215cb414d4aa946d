"""The README's example sweep is a valid spec (docs that drift from the code mislead newcomers first)."""
from __future__ import annotations

import re
from pathlib import Path

import yaml

from sweeps.spec import SweepSpec

ROOT = Path(__file__).resolve().parents[1]


def test_readme_example_sweep_validates(tmp_path):
    text = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```yaml\n(.*?)```", text, re.S)
    assert blocks, "README.md has no yaml example"
    raw = yaml.safe_load(blocks[0])
    raw["store"] = str(tmp_path / "store")
    spec = SweepSpec.from_dict(raw)
    axes = dict(spec.axes)
    assert spec.n_trials == len(axes["tail"]) * len(axes["grammar.L"]) * len(axes["data.P"]) * len(axes["seed"])
