"""Independent grammar seeds and intervals over clusters of trials that share a grammar and data draw
(SCIENCE.md, "Nulls that match what they are compared with": Independence)."""
from __future__ import annotations

import numpy as np
import pytest

from rhm import draw_seed, rank_trees


def _two_grammar_seeds(draw: str) -> list:
    from sweeps.spec import SweepSpec, load_spec
    from sweeps.trial import build_data

    spec = load_spec("tiny", overrides=["axes.grammar.seed=[0,1]", "axes.P=[8]", "axes.seed=[0]",
                                        "axes.tail=[{family: power, a: 1.0}]", f"data.draw={draw}"])
    trials = spec.trials()
    assert sorted(t.grammar.seed for t in trials) == [0, 1] and {t.data_seed for t in trials} == {0}
    return trials, [build_data(t) for t in trials]


def test_two_grammar_seeds_draw_different_rank_trees() -> None:
    """The default draw seeds T by grammar seed and data seed: the two grammars' training rank trees differ (with
    the legacy draw they are identical: one sample counted twice) and the trial ids say which draw was used."""
    trials, data = _two_grammar_seeds("grammar+data")
    ranks = [rank_trees(d.grammar, d.train).flat() for d in data]
    assert not np.array_equal(ranks[0], ranks[1])
    assert data[0].index.copy_baseline != pytest.approx(data[1].index.copy_baseline)
    old_trials, old = _two_grammar_seeds("data")
    old_ranks = [rank_trees(d.grammar, d.train).flat() for d in old]
    np.testing.assert_array_equal(old_ranks[0], old_ranks[1])
    assert {t.data_draw for t in trials} == {"grammar+data"} and {t.data_draw for t in old_trials} == {"data"}
    assert not {t.trial_id for t in trials} & {t.trial_id for t in old_trials}


def test_draw_seed() -> None:
    """Legacy draw: the data seed itself; the default: a function of both seeds, different per grammar seed."""
    assert draw_seed(5, 3, "data") == 3
    assert draw_seed(0, 3) != draw_seed(1, 3) and draw_seed(0, 3) == draw_seed(0, 3)
    assert 0 <= draw_seed(7, 2**40) < 2**62
    with pytest.raises(ValueError, match="draw must be one of"):
        draw_seed(0, 0, "both")
