"""Prediction of memorization from early overestimation: the AUC against a pairwise count, the per-cell table on
planted scores and copies (a score that orders the copied strings first has AUC 1, its negation 0), and the CLI on
a real tiny trial."""
from __future__ import annotations

import itertools
import math

import numpy as np
import pandas as pd
import pytest

from analysis.overest_predict import auc, by_lead, prediction_table


def _pairwise(score, label):
    pos, neg = score[label], score[~label]
    wins = sum((p > q) + 0.5 * (p == q) for p, q in itertools.product(pos, neg))
    return wins / (len(pos) * len(neg))


def test_auc_is_the_pairwise_probability_with_ties():
    rng = np.random.default_rng(0)
    for _ in range(20):
        s = rng.integers(0, 5, 30).astype(float)                     # many ties
        y = rng.random(30) < 0.3
        assert auc(s, y) == pytest.approx(_pairwise(s, y), abs=1e-12)
    assert math.isnan(auc(np.arange(4.0), np.zeros(4, bool)))
    assert math.isnan(auc(np.array([1.0, np.nan]), np.array([True, False])))


def test_prediction_table_on_planted_scores():
    n, rng = 12, np.random.default_rng(1)
    o = rng.normal(size=n)
    copied = np.argsort(-o)[:4]                                    # the four most overestimated get copied at 40
    ov = pd.DataFrame({"trial_id": "a", "step": 10, "t": np.repeat([0.9, 0.5], n), "split": "train",
                       "string_index": np.tile(np.arange(n), 2), "o": np.concatenate([o, -o]),
                       "model_logp": np.concatenate([-o, o])})
    ov = pd.concat([ov, ov.assign(split="heldout", o=100.0)])      # held-out rows are not candidates
    cp = pd.DataFrame({"trial_id": "a", "step": 40, "train_index": copied, "count": 3})
    sm = pd.DataFrame({"trial_id": "a", "train_index": np.arange(n), "proto": rng.normal(size=n)})
    st = pd.DataFrame({"trial_id": "a", "step": [10, 20, 40]})
    table = prediction_table(ov, cp, sm, st)
    assert table[["step_early", "step_late"]].values.tolist() == [[10, 20], [10, 40]]
    first, second = table.iloc[0], table.iloc[1]
    assert first.n_copied == 0 and math.isnan(first.auc_o)         # no copies at step 20: undefined
    assert second.lead == 4 and second.n == n and second.n_copied == 4
    assert second.auc_o == 1.0 and second.auc_model_logp == 0.0     # only the highest t's rows are used
    label = np.isin(np.arange(n), copied)
    assert second.auc_proto == pytest.approx(_pairwise(sm.proto.to_numpy(), label))
    lead = by_lead(table)
    assert lead.cells.tolist() == [1] and lead.auc_o.tolist() == [1.0]
