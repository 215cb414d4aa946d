"""Generalization against chance and against its ceiling (SCIENCE.md, "Nulls that match what they are compared
with"): the exact chance level of validity, gen_share of a grammar-faithful generator, and the regime count."""
from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from rhm import Grammar, GrammarSpec, RuleDist

# s = 2 and 3, L = 2 and 3, one with v*m = v**s (only the root constrains), chances from 0.3% to 67%.
CHANCE_SPECS = [
    dict(v=4, n_c=2, m=2, s=2, L=2),
    dict(v=4, n_c=3, m=3, s=2, L=3),
    dict(v=8, n_c=4, m=8, s=2, L=3),     # v*m = v**s: 0.5 (the grammar of issue 28)
    dict(v=4, n_c=2, m=8, s=3, L=2),
    dict(v=3, n_c=2, m=9, s=3, L=2),     # v*m = v**s at s = 3: 2/3
    dict(v=3, n_c=2, m=6, s=3, L=3),
    dict(v=5, n_c=3, m=4, s=2, L=1),
]


@pytest.mark.parametrize("kw", CHANCE_SPECS, ids=lambda kw: "v{v}c{n_c}m{m}s{s}L{L}".format(**kw))
def test_chance_valid_matches_uniform_random_strings(kw: dict) -> None:
    """The closed form against the valid fraction of 200,000 uniform random strings, within 3 standard errors."""
    g = Grammar.from_spec(GrammarSpec(**kw, seed=3, levels=RuleDist("power", a=1.0)))
    x = np.random.default_rng(11).integers(0, g.spec.v, size=(200_000, g.spec.d))
    frac = g.parse(x).valid.mean()
    p = g.spec.chance_valid
    se = math.sqrt(p * (1 - p) / x.shape[0])
    assert abs(frac - p) <= 3 * se + 1e-12, (kw, frac, p, se)


def test_chance_valid_by_enumeration() -> None:
    """Exact equality with the valid share of all v**d strings of a tiny grammar (brute force, no sampling)."""
    g = Grammar.from_spec(GrammarSpec(v=3, n_c=2, m=2, s=2, L=2, seed=1))
    every = np.array(list(itertools.product(range(3), repeat=g.spec.d)))
    assert g.parse(every).valid.mean() == pytest.approx(g.spec.chance_valid, abs=1e-15)


def test_chance_levels_of_the_issue() -> None:
    """The numbers SCIENCE.md quotes: 0.5 at v=8, n_c=4, m=8; the regime grammar 0.8%; the s=3 grammar 6e-5."""
    assert GrammarSpec(v=8, n_c=4, m=8, s=2, L=3).chance_valid == pytest.approx(0.5)
    assert GrammarSpec(v=8, n_c=8, m=4, s=2, L=3).chance_valid == pytest.approx(0.5**6 * 0.5)
    assert GrammarSpec(v=8, n_c=2, m=8, s=3, L=2).chance_valid == pytest.approx(0.125**3 * 16 / 512)


# The s = 3 grammar of probes.md, by tail: P values with p(T) below and above 0.4.
CEILING_CASES = [(RuleDist(), (512, 4096)), (RuleDist("power", a=1.0), (128, 1024)),
                 (RuleDist("power", a=2.0), (4, 512))]


@pytest.mark.parametrize("dist,Ps", CEILING_CASES, ids=["uniform", "power1", "power2"])
def test_grammar_faithful_generator_reaches_the_ceiling(dist: RuleDist, Ps: tuple[int, int]) -> None:
    """A grammar-faithful generator's novel_valid_frac is 1 - p(T) and its gen_share 1, within 4 standard errors
    of N = 20,000 draws, at a P where p(T) is below 0.4 and one where it is above."""
    from analysis.metrics import evaluate
    from rhm import sample_unique

    g = Grammar.from_spec(GrammarSpec(v=8, n_c=2, m=8, s=3, L=2, seed=0, levels=dist))
    masses = []
    for k, P in enumerate(Ps):
        train = sample_unique(g, P, seed=k)
        gen = g.sample(20_000, np.random.default_rng(100 + k))
        ev = evaluate(g, gen, train, hamming=False).scalars
        pt = ev["copy_baseline"]
        assert pt == pytest.approx(np.exp(g.loglik(train)).sum())
        masses.append(pt)
        se = math.sqrt(pt * (1 - pt) / 20_000)
        assert abs(ev["novel_valid_frac"] - (1 - pt)) <= 4 * se
        assert abs(ev["gen_share"] - 1.0) <= 4 * se / (1 - pt)
        assert ev["novel_valid_frac"] < 1 - pt / 2            # the raw metric sits at its ceiling, not at 1
    assert masses[0] < 0.4 < masses[1], masses


def test_gen_share_is_nan_when_T_is_the_whole_language() -> None:
    """p(T) = 1 leaves no novel string: gen_share is undefined (NaN), not a division by ~0."""
    from analysis.metrics import evaluate, gen_share

    g = Grammar.from_spec(GrammarSpec(v=3, n_c=2, m=2, s=2, L=1, seed=0))
    every = g.enumerate()
    ev = evaluate(g, every, every, hamming=False).scalars
    assert ev["copy_baseline"] == pytest.approx(1.0) and math.isnan(ev["gen_share"])
    np.testing.assert_allclose(gen_share(np.array([0.3, 0.3]), np.array([0.4, 1.0])), [0.5, np.nan])


def _onset_rows(rows: list[tuple]) -> "pa.Table":
    import pyarrow as pa
    cols = ["trial_id", "onset", "theta", "tau", "censored", "last_step"]
    return pa.table({c: [r[i] for r in rows] for i, c in enumerate(cols)})


def test_regime_counts_only_what_was_seen() -> None:
    """Hand-built onsets: a trial with tau_mem censored is not 'generalized, then memorized', it is counted apart
    as 'generalized, memorization censored' with its last step; memorize-first and never-generalized trials in
    neither."""
    from analysis.headline import regime_counts, regime_line

    t = _onset_rows([
        ("a", "gen", 0.5, 100.0, False, 9000.0), ("a", "mem", 0.5, 5000.0, False, 9000.0),   # the window
        ("b", "gen", 0.5, 200.0, False, 7000.0), ("b", "mem", 0.5, 7000.0, True, 7000.0),    # mem censored
        ("c", "gen", 0.5, 3000.0, False, 9000.0), ("c", "mem", 0.5, 1000.0, False, 9000.0),  # memorized first
        ("d", "gen", 0.5, 9000.0, True, 9000.0), ("d", "mem", 0.5, 800.0, False, 9000.0),    # never generalized
        ("a", "gen", 0.1, 50.0, False, 9000.0), ("b", "mem", 0.1, 900.0, False, 7000.0),     # other theta: ignored
    ])
    c = regime_counts(t, 0.5)
    assert (c["n"], c["window"], c["gen_censored_mem"], c["gen_seen"]) == (4, 1, 1, 3)
    assert c["censored_last_steps"] == [7000.0]
    line = regime_line(t, 0.5)
    assert line.startswith("Regime: 1 of 4 trials generalized, then memorized")
    assert "1 generalized, memorization censored" in line and "7000" in line


def test_validate_warns_about_chance_and_says_how_to_lower_it(tmp_path, capsys) -> None:
    """`memsweep validate regime grammar.v=8 grammar.n_c=4 grammar.m=8 grammar.s=2 grammar.L=3` prints the chance
    level 0.5 and what lowers it, as a warning (it still validates); the regime preset itself (6e-5) prints none."""
    from sweeps.cli import main

    store = ["--store", str(tmp_path / "store")]
    assert main(["validate", "regime", "grammar.v=8", "grammar.n_c=4", "grammar.m=8", "grammar.s=2", "grammar.L=3",
                 *store]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "warning" in out and "valid with probability 0.5 " in out and "v=16: 0.002" in out, out
    assert main(["validate", "regime", *store]) == 0
    assert "warning" not in capsys.readouterr().out


def test_trial_flags_by_formula() -> None:
    """Flags from the three rules, the null sd from its formula, and the null-sd flag applied per theta."""
    import pyarrow as pa

    from analysis.flags import drop_flagged_onsets, trial_flags

    trials = pa.table({"trial_id": ["ok", "chance", "mass", "noisy"], "train_mass": [0.1, 0.1, 0.6, 0.2],
                       "twin_set_mass": [0.3, 0.3, 0.3, 0.01], "chance_valid": [1e-4, 0.5, 1e-4, 1e-4],
                       "n_gen": [256, 256, 256, 256]})
    f = trial_flags(trials, theta=0.5).to_pydict()
    sd = [math.sqrt(pt * (1 + pt / pp) / 256) for pt, pp in zip([0.1, 0.1, 0.6, 0.2], [0.3, 0.3, 0.3, 0.01])]
    np.testing.assert_allclose(f["null_sd"], sd)
    assert f["flagged"] == [False, True, True, True]                 # noisy: sd 0.128 > 0.125
    assert "chance 0.5" in f["reason"][1] and "p(T) 0.6" in f["reason"][2] and "null sd" in f["reason"][3]
    ons = pa.table({"trial_id": ["ok", "ok", "noisy", "noisy", "mass"], "theta": [0.1, 0.9, 0.1, 0.9, 0.9],
                    "tau": [1.0] * 5})
    kept = drop_flagged_onsets(ons, trial_flags(trials, 0.5)).to_pydict()
    # sd 0.025 of "ok" is not above 0.1/4; "noisy" (0.128) is above 0.1/4 but not above 0.9/4
    assert list(zip(kept["trial_id"], kept["theta"])) == [("ok", 0.1), ("ok", 0.9), ("noisy", 0.9)]


def test_report_flags_a_power2_trial_of_the_s3_grammar(tmp_path, capsys) -> None:
    """`memsweep report` on a store holding the s = 3 grammar (v=8, n_c=2, m=8, L=2) at P = 1024 under uniform and
    power(a=2) rules (rows written through the store API: real data sets, curves of a grammar-faithful generator
    at 6 evaluations) lists the power(a=2) trial as flagged with its p(T) and null sd, and not the uniform one."""
    import time

    from analysis.flags import twin_null_sd
    from analysis.metrics import evaluate
    from analysis.store import Store
    from sweeps.cli import main
    from sweeps.rows import data_columns, eval_rows, trials_row
    from sweeps.spec import SweepSpec
    from sweeps.trial import build_data

    spec = SweepSpec.from_dict({
        "name": "s3", "store": str(tmp_path / "store"), "grammar": {"v": 8, "n_c": 2, "m": 8, "s": 3, "L": 2},
        "data": {"P": 1024, "heldout": 64}, "model": {"process": "masked", "backbone": "transformer", "width": 8,
                                                      "depth": 1, "heads": 1},
        "train": {"steps": 1000}, "eval": {"n_gen": 256},
        "axes": {"tail": [{"family": "uniform"}, {"family": "power", "a": 2.0}]}})
    store, facts = Store(spec.store), {}
    for cfg in spec.trials():
        data = build_data(cfg)
        cols = data_columns(data)
        facts[cfg.tail.label] = (cfg.trial_id, cols["train_mass"], twin_null_sd(cols["train_mass"],
                                                                                 cols["twin_set_mass"], 256))
        rng = np.random.default_rng(0)
        with store.writer(spec.name, cfg.trial_id, attempt=1) as w:
            for step in (10, 30, 100, 300, 600, 1000):
                ev = evaluate(data.grammar, data.grammar.sample(256, rng), data.index, hamming=False)
                for table, rows in eval_rows(step, 0.0, ev, data.grammar).items():
                    w.append(table, rows)
            w.append("trials", trials_row(cfg, "done", time.time(), 1000, True, cols))
    assert main(["report", spec.store, "--out", str(tmp_path / "report")]) == 0
    text = (tmp_path / "report" / "headline.txt").read_text()
    tid, pt, sd = facts["power(a=2)"]
    assert pt > 0.5 and sd > 0.5 / 4, (pt, sd)
    flagged = [line for line in text.splitlines() if line.strip().startswith(f"{tid}:") and "p(T)" in line
               and "null sd" in line and "theta/4" in line]
    assert flagged and f"{pt:.3g}" in flagged[0] and f"{sd:.3g}" in flagged[0], text
    assert "Flagged trials: 1 of 2" in text and "left out of the onset laws" in text
    uni = facts["uniform"][0]
    assert not any(line.strip().startswith(f"{uni}:") and "theta/4" in line for line in text.splitlines())
    assert "flags.csv" in (tmp_path / "report" / "index.html").read_text()
    capsys.readouterr()
    assert main(["fit", spec.store]) == 0                               # fit names it too, and what it did
    out = " ".join(capsys.readouterr().out.split())
    assert f"{tid}: p(T) {pt:.3g} > 0.5" in out and "left out of the onset laws" in out, out
    assert main(["fit", spec.store, "--keep-flagged"]) == 0
    assert "kept in the laws and verdicts (--keep-flagged)" in " ".join(capsys.readouterr().out.split())


def test_gen_share_of_older_stores_comes_from_novel_valid_frac_and_p_T() -> None:
    """A store written before gen_share existed (the column all null) gets it from novel_valid_frac / (1 - p(T)):
    tau_gen on it is where novel_valid_frac crosses theta * (1 - p(T))."""
    import pyarrow as pa

    from analysis.onset import onsets_from_tables, with_gen_share

    steps = [10, 100, 1000, 10000]
    curves = pa.table({"trial_id": ["a"] * 4 + ["b"] * 4, "step": steps * 2, "mem_twin": [0.0] * 8,
                       "novel_valid_frac": [0.1, 0.3, 0.45, 0.5] * 2, "gen_share": pa.nulls(8, pa.float64())})
    trials = pa.table({"trial_id": ["a", "b"], "train_mass": [0.0, 0.5]})
    filled = with_gen_share(curves, trials).column("gen_share").to_pylist()
    np.testing.assert_allclose(filled, [0.1, 0.3, 0.45, 0.5, 0.2, 0.6, 0.9, 1.0])
    on = onsets_from_tables(trials, curves, thetas=(0.5,), consecutive=1).filter(
        pa.compute.equal(pa.compute.field("onset"), "gen")).to_pydict()
    tau = dict(zip(on["trial_id"], on["tau"]))
    assert tau["a"] == pytest.approx(10000.0)                          # 0.5 reached at the last step
    assert tau["b"] == pytest.approx(10 ** (1 + 0.3 / 0.4))           # 0.2 -> 0.6 between 10 and 100
