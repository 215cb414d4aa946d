"""benchmarks/regime_bench.py: its slice is the preset's trials in the packs it says, its ratio is the formula over
the times it measured (runs that lie inside the test's own clock, one after another, sides alternated), not a
planted figure."""
from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from benchmarks import regime_bench as rb  # noqa: E402


def test_the_slice_is_the_presets_trials_and_the_after_packs_fill_both_workers() -> None:
    from sweeps.packing import group_packs
    from sweeps.spec import load_spec

    sl = rb.Slice(P=(1024, 256), grammar_seeds=(0, 1), seeds=(0, 1), steps=2000, workers=2)
    before, after = (load_spec(rb.PRESET, sl.overrides(side)) for side in rb.SIDES)
    preset = load_spec(rb.PRESET).trials()[0]
    for spec in (before, after):
        assert spec.n_trials == sl.n_trials == 8
        for t in spec.trials():
            assert t.train.steps == 2000 and t.theta_stop is None and t.model == preset.model
            assert (t.n_gen, t.train.evals_per_decade, t.train.lr) == (preset.n_gen, preset.train.evals_per_decade,
                                                                      preset.train.lr)
    assert {t.train.compile for t in before.trials()} == {"off"} and before.pack.size == 1
    assert {t.train.compile for t in after.trials()} == {"step"}
    packs = group_packs(after.trials(), after.pack.size)
    assert [len(p.members) for p in packs] == [4, 4]            # one pack per worker
    def data(trials):
        return sorted((t.P, t.grammar.seed, t.data_seed, t.seed) for t in trials)
    assert data(before.trials()) == data(t for p in packs for t in p.members)
    assert {(P, g, s) for P, g, _, s in data(before.trials())} == {(P, g, s) for P in (1024, 256) for g in (0, 1)
                                                                for s in (0, 1)}


def test_the_ratio_is_the_median_of_the_rounds_before_over_after() -> None:
    sl = rb.Slice(P=(8,), grammar_seeds=(0,), seeds=(0, 1, 2), steps=100, workers=2)
    walls = [(30.0, 10.0), (40.0, 16.0), (36.0, 10.0)]          # ratios 3.0, 2.5, 3.6; medians 36 / 10
    rounds = [{"before": rb.Run("before", 0.0, b, 1.0, 1.0), "after": rb.Run("after", 0.0, a, 1.0, 1.0)}
              for b, a in walls]
    res = rb.summarize(sl, rounds, rb.Run("after", 0.0, 66.0, 1.0, 1.0), cold=True)
    assert res["ratio"] == 3.0 and res["ratio_per_round"] == [3.0, 2.5, 3.6]
    assert res["ratio_of_medians"] == 3.6 and res["warmup"]["ratio"] == 36.0 / 66.0
    assert res["sides"]["after"]["member_steps_per_s"] == 3 * 100 / 10.0
    assert sl.pack_size == 2                                     # 3 trials on 2 workers: packs of up to 2


def test_a_bad_count_is_refused_naming_it(capsys) -> None:
    with pytest.raises(SystemExit):
        rb.parse_args(["--rounds", "0"])
    assert "--rounds must be a positive integer, got 0" in capsys.readouterr().err


@pytest.mark.slow
@pytest.mark.ray
def test_a_tiny_run_reports_its_measured_times_and_their_ratio(tmp_path) -> None:
    """2 trials x 20 steps, 2 rounds, through `memsweep run` (the after side eager: the compile is
    tests/test_compile.py's to check, and costs a minute)."""
    out = tmp_path / "bench.json"
    t0 = time.time()
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "regime_bench.py"), "--P", "1024",
                           "--grammar-seeds", "0", "--seeds", "0", "1", "--steps", "20", "--rounds", "2",
                           "--no-warmup", "--compile", "off", "--set", "eval.n_gen=16", "--json", str(out)],
                          cwd=ROOT, capture_output=True, text=True, timeout=900)
    t1 = time.time()
    assert proc.returncode == 0, proc.stderr[-3000:]
    res = json.loads(out.read_text())
    assert res["slice"]["n_trials"] == 2 and res["slice"]["pack_size"] == 1
    runs = [r[side] for r in res["rounds"] for side in sorted(r, key=lambda s: r[s]["started"])]
    assert [r["side"] for r in runs] == ["before", "after", "after", "before"]     # alternated
    for prev, nxt in zip(runs, runs[1:]):                        # one after another, inside the test's clock
        assert prev["started"] + prev["wall_s"] <= nxt["started"]
    assert t0 <= runs[0]["started"] and runs[-1]["started"] + runs[-1]["wall_s"] <= t1
    assert all(r["wall_s"] > 1.0 for r in runs)                  # a Python process that started Ray
    for side in rb.SIDES:
        walls = [r[side]["wall_s"] for r in res["rounds"]]
        assert res["sides"][side]["wall_s"] == walls
        assert res["sides"][side]["median_s"] == pytest.approx(statistics.median(walls))
        assert res["sides"][side]["member_steps_per_s"] == pytest.approx(2 * 20 / statistics.median(walls))
    per_round = [r["before"]["wall_s"] / r["after"]["wall_s"] for r in res["rounds"]]
    assert res["ratio"] == pytest.approx(statistics.median(per_round))
    assert f"ratio before / after: {res['ratio']:.2f}x" in proc.stdout
    assert "inductor cache: the benchmark's own, empty at the start; no warm-up run" in proc.stdout
