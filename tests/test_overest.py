"""Overestimation o(x, t) against planted denoisers: the grammar's own posterior (o = 0 exactly), the uniform
denoiser (o from the brute-force posterior), the memorizer (from counting consistent training rows), and a small
model trained to memorize (surer of its training strings than the grammar at high noise, not of held-out ones)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from analysis.overest import draw_masks, make_probe, masked_true_logp, overestimation
from models import ModelConfig, TrainConfig, Trainer, build_model
from rhm import Grammar, GrammarSpec, RuleDist, sample_heldout, sample_unique
from rhm.posterior import GrammarPosterior, masked_evidence, memorizer_posterior
from test_posterior import brute_posterior

torch.set_num_threads(1)

SPEC = GrammarSpec(v=8, n_c=3, m=2, s=2, L=3, seed=2, levels=RuleDist("power", a=1.0), root=RuleDist("power", a=1))


def test_masks_are_fixed_and_sized():
    m = draw_masks(50, 8, (0.9, 0.5, 0.01), 3, seed=7)
    assert m.shape == (3, 50, 3, 8)
    np.testing.assert_array_equal(m.sum(-1), np.broadcast_to(np.array([7, 4, 1])[:, None, None], (3, 50, 3)))
    np.testing.assert_array_equal(m, draw_masks(50, 8, (0.9, 0.5, 0.01), 3, seed=7))
    assert m[0].mean(axis=(0, 1)).min() > 0.6                       # positions uniformly placed
    with pytest.raises(ValueError, match="fractions masked in"):
        draw_masks(5, 8, (0.0,), 1, 0)


def test_oracle_denoiser_has_zero_overestimation():
    g = Grammar.from_spec(SPEC)
    bp = GrammarPosterior(g)
    x = g.sample(40, np.random.default_rng(0))
    probe = make_probe(g, x, seed=3)
    with np.errstate(divide="ignore"):
        o = overestimation(lambda z, t: np.log(bp.masked(z).marginals), probe, g.spec.v)
    assert o.shape == (3, 40)
    np.testing.assert_array_equal(o, 0.0)


def test_uniform_and_memorizer_denoisers_match_their_formulas():
    g = Grammar.from_spec(SPEC)
    v, d = g.spec.v, g.spec.d
    rng = np.random.default_rng(1)
    train = sample_unique(g, 6, seed=4)
    held = sample_heldout(g, 10, train, seed=5)
    probe = make_probe(g, np.concatenate([train, held]), ts=(0.9, 0.5), draws=2, seed=6)
    z, _, x = probe.inputs(v)
    post, _ = brute_posterior(g, masked_evidence(z, v))
    truth = np.log(np.take_along_axis(post, x[..., None], -1)[..., 0])       # brute-force log p_grammar(x_i|z)
    mask = probe.masks.reshape(-1, d)
    want = np.where(mask, -np.log(v) - truth, 0).sum(-1) / mask.sum(-1)
    o = overestimation(lambda z, t: np.full((*z.shape, v), -np.log(v)), probe, v)
    np.testing.assert_allclose(o, want.reshape(2, 16, 2).mean(-1), rtol=1e-9)
    # the memorizer: log(#training rows consistent with z and with x_i / #consistent rows); a held-out string is
    # impossible (-inf), or z is (NaN: no training row is consistent with it)
    with np.errstate(divide="ignore"):
        o = overestimation(lambda z, t: np.log(memorizer_posterior(train, masked_evidence(z, v)).marginals), probe, v)
    assert not np.isfinite(o[:, 6:]).any() and np.isneginf(o[:, 6:]).any()
    rows = []
    for zi, xi, mi in zip(z[:12], x, mask):          # t = 0.9, the six training strings
        ok = ((zi == v) | (train == zi)).all(1)
        rows.append(np.mean([np.log(np.mean(train[ok, i] == xi[i])) for i in np.flatnonzero(mi)]))
    tr_want = np.array(rows) - np.where(mask[:12], truth[:12], 0).sum(-1) / mask[:12].sum(-1)
    np.testing.assert_allclose(o[0, :6], tr_want.reshape(6, 2).mean(-1), rtol=1e-9)
    assert (o[0, :6] > 0).all()


def test_memorizing_model_overestimates_its_training_strings():
    """A transformer trained a few hundred steps on 8 strings is surer of them than the grammar at high noise; the
    held-out strings (its null: strings it has not seen) are not overestimated."""
    torch.manual_seed(0)
    g = Grammar.from_spec(GrammarSpec(v=16, n_c=4, m=4, s=2, L=3, seed=1))
    train = sample_unique(g, 8, seed=2)
    held = sample_heldout(g, 32, train, seed=3, unique=True)
    model = build_model(ModelConfig(process="masked", width=64, depth=2, heads=4), 16, 8, 2, 3, seed=0)
    tr = Trainer(model, torch.as_tensor(train), TrainConfig(steps=400, batch_size=8, lr=3e-3, evals_per_decade=1))
    tr.run()
    m = tr.eval_model.eval()
    probe = make_probe(g, np.concatenate([train, held]), ts=(0.9, 0.5), draws=4, seed=0)
    z, t, x = probe.inputs(16)
    o = probe.scores(masked_true_logp(m, z[None], t[None], x[None])[0])
    o_train, o_held = o[:, :8].mean(1), o[:, 8:].mean(1)
    assert o_train[0] > 0.5, o                          # high noise: the training strings are overestimated
    assert o_held[0] < 0.0, o                           # held-out strings are not
    assert o_train[0] - o_held[0] > 2.0
