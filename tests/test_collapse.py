"""Trajectory collapse against plain-Python references: collapse steps by scanning each trajectory and counting
consistent training strings, grammar entropies from the brute-force posterior, the sampler's recorded entropies by
replaying its states through the network."""
from __future__ import annotations

import numpy as np
import torch

from analysis.collapse import (Trajectories, collapse_curves, collapse_steps, grammar_trajectories,
                               model_trajectories, posterior_entropies)
from models import ModelConfig, build_model
from rhm import Grammar, GrammarSpec, RuleDist, sample_unique
from rhm.posterior import masked_evidence
from test_posterior import brute_posterior

torch.set_num_threads(1)
SPEC = GrammarSpec(v=6, n_c=2, m=2, s=2, L=3, seed=4, levels=RuleDist("power", a=1.0))


def _reference_collapse(x: np.ndarray, order: np.ndarray, train: np.ndarray) -> float:
    distinct = {tuple(r) for r in train.tolist()}
    for j in range(len(order)):
        shown = order[: j + 1]
        n = sum(all(t[p] == x[p] for p in shown) for t in distinct)
        if n == 1:
            return float(j + 1)
    return float("nan")


def test_collapse_steps_match_a_scan():
    g = Grammar.from_spec(SPEC)
    train = sample_unique(g, 20, seed=1)
    train = np.concatenate([train, train[:3]])                      # duplicates count once
    traj = grammar_trajectories(g, 200, seed=2)
    mixed = Trajectories(np.concatenate([traj.strings[:150], train[:20]]), traj.order[:170], traj.entropy[:170])
    got = collapse_steps(mixed, train, g.spec.v)
    want = [_reference_collapse(x, o, train) for x, o in zip(mixed.strings, mixed.order)]
    np.testing.assert_array_equal(got, want)
    assert np.isfinite(got[150:]).all()                             # a training string always collapses onto itself
    assert np.isnan(got[:150]).any()


def test_states_and_grammar_entropies():
    g = Grammar.from_spec(SPEC)
    traj = grammar_trajectories(g, 15, seed=3)
    st = traj.states(g.spec.v)
    d = g.spec.d
    assert (st[:, 0] == g.spec.v).all()
    np.testing.assert_array_equal((st != g.spec.v).sum(-1), np.broadcast_to(np.arange(d), (15, d)))
    got = posterior_entropies(g, traj)
    post, _ = brute_posterior(g, masked_evidence(st.reshape(-1, d), g.spec.v))
    at = np.take_along_axis(post.reshape(15, d, d, -1), traj.order[:, :, None, None], axis=2)[:, :, 0]
    with np.errstate(divide="ignore", invalid="ignore"):
        want = -np.nansum(at * np.log(at), -1)
    np.testing.assert_allclose(got, want, atol=1e-9)


def test_model_trajectories_record_the_sampler():
    g = Grammar.from_spec(SPEC)
    model = build_model(ModelConfig(process="masked", width=32, depth=1, heads=2), 6, 8, 2, 3, seed=0).eval()
    traj, = model_trajectories(model, 12, seed=5)
    assert (np.sort(traj.order, 1) == np.arange(8)).all()
    st = torch.as_tensor(traj.states(6))                            # replay: the network on each recorded state
    with torch.no_grad():
        for j in range(8):
            logits = model.net(st[None, :, j], torch.as_tensor(traj.times[None, :, j]))[0]
            logp = torch.log_softmax(logits[torch.arange(12), torch.as_tensor(traj.order[:, j])].double(), -1)
            np.testing.assert_allclose(traj.entropy[:, j], -(logp.exp() * logp).sum(-1).numpy(), rtol=1e-5)
    assert np.all((traj.entropy >= 0) & (traj.entropy <= np.log(6) + 1e-6))
    cur = collapse_curves(g, traj, sample_unique(g, 10, seed=6))
    assert cur["entropy_model"].shape == (8,) and cur["entropy_grammar"].shape == (8,)
    few = collapse_curves(g, traj, sample_unique(g, 10, seed=6), n_entropy=5)     # entropies of the first 5 only
    np.testing.assert_allclose(few["entropy_model"], traj.entropy[:5].mean(0), rtol=1e-12)
    np.testing.assert_allclose(few["entropy_grammar"],
                               posterior_entropies(g, Trajectories(traj.strings[:5], traj.order[:5],
                                                                   traj.entropy[:5])).mean(0), rtol=1e-12)
    assert few["collapse_model_frac"] == cur["collapse_model_frac"]                 # the collapse reads all 12
    assert 0 <= cur["collapse_grammar_frac"] <= 1


def test_pack_trajectories_equal_lone_members():
    pack = build_model(ModelConfig(process="masked", width=32, depth=1, heads=2), 6, 8, 2, 3, seed=[0, 1]).eval()
    lone = build_model(ModelConfig(process="masked", width=32, depth=1, heads=2), 6, 8, 2, 3, seed=1).eval()
    both = model_trajectories(pack, 10, seed=[3, 4])
    one, = model_trajectories(lone, 10, seed=4)
    np.testing.assert_array_equal(both[1].strings, one.strings)
    np.testing.assert_allclose(both[1].entropy, one.entropy, rtol=1e-5)


def test_recorded_trajectories_are_the_samplers_own_draws():
    """Recording the trajectory changes nothing: the same strings as `sample(n, None, rng)` from the same seeds,
    bit for bit (a pack of 2), so the collapse can read the evaluation's own generations."""
    from models.rng import MemberRNG

    pack = build_model(ModelConfig(process="masked", width=32, depth=1, heads=2), 6, 8, 2, 3, seed=[0, 1]).eval()
    plain = pack.sample(20, None, MemberRNG([11, 12]))
    strings, order, times, ent = pack.sample_trajectory(20, MemberRNG([11, 12]))
    torch.testing.assert_close(strings, plain, rtol=0, atol=0)
    assert (times[..., :-1] >= times[..., 1:]).all() and ent.dtype == torch.float64
    traj = model_trajectories(pack, 20, seed=[11, 12])
    np.testing.assert_array_equal(traj[1].strings, plain[1].numpy())
    np.testing.assert_array_equal(traj[1].order, order[1].numpy())


def test_distinct_rows_by_code_and_by_row():
    """Both ways of finding a training set's distinct rows (one integer per row; row-wise when v**d is too big) give
    np.unique's rows."""
    from analysis.collapse import _distinct

    rng = np.random.default_rng(0)
    for v, d in ((6, 8), (1000, 8)):                               # 8 * log2(1000) = 80 bits: row-wise
        t = rng.integers(0, v if v < 10 else 3, (50, d))
        np.testing.assert_array_equal(np.unique(_distinct(t, v), axis=0), np.unique(t, axis=0))
        assert len(_distinct(t, v)) == len(np.unique(t, axis=0))
