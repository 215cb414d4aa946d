"""benchmarks/gpu_check.py without a GPU: it says so in one line and exits 0 after its checks, and those checks
can fail: a module that needs a blocked package, a renamed CUDA test, a paper slice read wrongly (against PyYAML)."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from benchmarks import gpu_check  # noqa: E402


def test_without_a_gpu_it_says_so_in_one_line_and_exits_0() -> None:
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}
    out = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gpu_check.py")], capture_output=True,
                         text=True, env=env, cwd=ROOT, timeout=300)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("gpu_check: no CUDA GPU here")


def test_the_import_check_refuses_a_module_that_needs_pydantic(monkeypatch) -> None:
    monkeypatch.setattr(gpu_check, "MODULES", ("models", "sweeps.spec"))      # sweeps.spec is built on pydantic
    with pytest.raises(SystemExit, match="pydantic"):
        gpu_check.check_imports()


def test_a_renamed_cuda_test_is_caught(monkeypatch) -> None:
    monkeypatch.setattr(gpu_check, "CUDA_TESTS", ("tests/test_pack.py::test_no_such_cuda_test",))
    with pytest.raises(SystemExit, match="test_no_such_cuda_test"):
        gpu_check.check_tests_exist()


@pytest.mark.parametrize("section", ["grammar", "model", "train"])
def test_the_paper_slice_reads_as_yaml_does(section: str) -> None:
    text = gpu_check.PAPER.read_text()
    assert gpu_check.flow_section(text, section) == yaml.safe_load(text)[section]


def test_the_paper_slice_validates_with_the_presets_values() -> None:
    sl = gpu_check.paper_slice()
    raw = yaml.safe_load(gpu_check.PAPER.read_text())
    assert sl.model.width == raw["model"]["width"] and sl.train.batch_size == raw["train"]["batch_size"]
    assert sl.grammar.d == raw["grammar"]["s"] ** raw["grammar"]["L"] and sl.train.device == "cuda"
