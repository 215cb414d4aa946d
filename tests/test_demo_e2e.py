"""A reduced `make demo`, end to end through the CLI: sweep on an embedded Ray, store, fitted laws, report."""
from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml

from analysis.store import Store
from models import eval_schedule
from analysis.report import FIGURES, OVEREST_FIGURES
from test_report import _Figs  # the report test's HTML figure parser (tests/ is on sys.path under pytest)

MEMSWEEP = str(Path(sys.executable).with_name("memsweep"))

# Six short trials on a small grammar (d = 8, P_max = 256), one tail, P in {4, 8, 16} x 2 seeds: enough
# points at three sizes for a censoring-aware law with a bootstrap interval.
SPEC = {
    "name": "e2e",
    "grammar": {"v": 8, "n_c": 2, "m": 2, "s": 2, "L": 3},
    "data": {"unique": True, "heldout": 16},
    "model": {"process": "masked", "backbone": "transformer", "width": 32, "depth": 1, "heads": 4},
    "train": {"steps": 1500, "batch_size": 16, "lr": 3.0e-3, "evals_per_decade": 6, "first_eval": 10},
    "eval": {"n_gen": 64},
    "stop": {"theta": 0.9, "patience": 2},
    "axes": {"P": [16, 8, 4], "seed": [0, 1]},
    "resources": {"cpu": 1, "gpu": 0},
}


@pytest.mark.ray
@pytest.mark.slow
def test_reduced_demo_through_cli(tmp_path):
    spec_file = tmp_path / "e2e.yaml"
    spec_file.write_text(yaml.safe_dump({**SPEC, "store": str(tmp_path / "unused")}))  # demo uses --out/store
    out = tmp_path / "demo"
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0"}
    proc = subprocess.run([MEMSWEEP, "demo", "--out", str(out), "--workers", "2", "--spec", str(spec_file)],
                          capture_output=True, text=True, timeout=600, env=env)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "index.html" in proc.stdout
    # the demo prints the law on the null-controlled metric and the memorization order beside its nulls (the volume-matched one first)
    assert "mem_twin" in proc.stdout and "vs volume-matched" in proc.stdout and "excess" in proc.stdout

    # Every trial finished, and each has exactly one row per scheduled evaluation up to where it stopped.
    store = Store(out / "store")
    trials = store.read("trials", sweep="e2e").to_pylist()
    assert len(trials) == 6 and {t["status"] for t in trials} <= {"done", "stopped"}
    assert sorted((t["P"], t["seed"]) for t in trials) == sorted((p, s) for p in (4, 8, 16) for s in (0, 1))
    curves = store.read("curves", sweep="e2e", columns=["trial_id", "step"]).to_pylist()
    assert not store.problems
    schedule = eval_schedule(SPEC["train"]["steps"], SPEC["train"]["evals_per_decade"], SPEC["train"]["first_eval"])
    for t in trials:
        steps = [r["step"] for r in curves if r["trial_id"] == t["trial_id"]]
        assert sorted(steps) == [s for s in schedule if s <= t["final_step"]], t["trial_id"]

    # The law fitted at theta = 0.5 for the one (tail, L) group has a finite slope inside a finite (Wald) interval.
    # Its 6 trials are 2 clusters (a seed draws the training sets of every P from one stream): too few for a
    # bootstrap interval, which the headline says instead of printing one.
    laws = pq.read_table(out / "report" / "laws.parquet").to_pylist()
    group = [r for r in laws if r["scope"] == "group" and r["onset"] == "mem" and r["theta"] == 0.5]
    assert len(group) == 1, laws
    j = group[0]
    assert j["status"] == "ok", j
    assert all(math.isfinite(j[k]) for k in ("beta", "beta_wald_lo", "beta_wald_hi")), j
    assert j["beta_wald_lo"] <= j["beta"] <= j["beta_wald_hi"] and j["beta_wald_lo"] < j["beta_wald_hi"]
    assert j["n_clusters"] == 2 and math.isnan(j["beta_lo"]), j
    assert "in 2 cluster(s) of shared grammar and data draw" in " ".join(proc.stdout.split())
    assert j["n_obs"] + j["n_cens"] + j.get("n_left", 0) == 6

    # The report embeds every figure as a non-empty PNG.
    html = (out / "report" / "index.html").read_text()
    figs = _Figs()
    figs.feed(html)
    assert set(figs.images) == set(FIGURES) - set(OVEREST_FIGURES)      # the demo does not probe overestimation
    assert all(len(png) > 1000 and png.startswith(b"\x89PNG") for png in figs.images.values())
