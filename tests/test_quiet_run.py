"""A normal `memsweep run` prints memsweep's own lines only: no Ray, Tune or Optuna INFO line, no deprecation line,
no Optuna Study.stop warning, no Tune banner (optuna-grid: the mode whose sampler calls Study.stop); `--verbose`
lets them through. Run again on the finished sweep, it decides from the store in one line, before Ray starts."""
from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

MEMSWEEP = Path(sys.executable).parent / "memsweep"
NOISE = re.compile(r"\bINFO\b|[Dd]eprecat|Study\.stop|Configuration for experiment|View detailed results|"
                   r"Started a local Ray|optuna_search\.py|A new study created")


@pytest.mark.slow
@pytest.mark.ray
def test_a_normal_run_prints_only_memsweeps_lines(tmp_path):
    args = ["run", "tiny", "mode=optuna-grid", "train.steps=20", "axes.P=[4]", "axes.tail=[uniform]",
            "axes.seed=0,1", "--store", str(tmp_path / "store"), "--workers", "2"]
    t0 = time.monotonic()
    r = subprocess.run([str(MEMSWEEP), *args], capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    noise = [ln for ln in (r.stdout + r.stderr).splitlines() if NOISE.search(ln)]
    assert not noise, noise
    assert r.stderr.strip() == "", r.stderr
    assert "optuna study 'tiny:optuna-grid:" in r.stdout and "optuna journal " in r.stdout
    assert "tiny: 2 trials finished, 0 failed, 0 already in the store" in r.stdout
    first = time.monotonic() - t0
    t0 = time.monotonic()
    again = subprocess.run([str(MEMSWEEP), *args], capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert again.returncode == 0 and again.stderr == ""
    assert again.stdout.strip() == f"tiny: all 2 trials are already finished in {tmp_path / 'store'}; nothing to run"
    assert time.monotonic() - t0 < first / 2      # no Ray start, no trial


@pytest.mark.slow
@pytest.mark.ray
def test_verbose_lets_the_libraries_speak(tmp_path):
    args = ["run", "tiny", "train.steps=10", "axes.P=[4]", "axes.tail=[uniform]", "--store", str(tmp_path / "s"),
            "--workers", "1", "--verbose"]
    r = subprocess.run([str(MEMSWEEP), *args], capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    assert re.search(r"\bINFO\b", r.stdout + r.stderr), r.stdout + r.stderr


def test_verbose_after_a_quiet_run_in_the_same_process_unsilences_ray(monkeypatch):
    """A quiet `run` earlier in a process (a test, a notebook) leaves RAY_LOGGER_LEVEL set; a --verbose run after it
    must clear it, or the Ray processes it starts inherit the quiet level (seen in the full suite)."""
    from sweeps import quiet

    monkeypatch.delenv("RAY_LOGGER_LEVEL", raising=False)
    quiet.apply(verbose=False)
    assert {k: v for k, v in quiet.QUIET_ENV.items() if os.environ.get(k) == v} == quiet.QUIET_ENV
    quiet.apply(verbose=True)
    assert not any(k in os.environ for k in quiet.QUIET_ENV)
