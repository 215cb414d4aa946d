"""Trajectory collapse (SCIENCE.md, "Early overestimation"): along the exact masked sampler's reverse trajectory (one
position unmasked per network call, in a uniformly random order), the step at which the unmasked tokens leave
exactly one consistent training string, against the same for the grammar-faithful generator (grammar strings,
unmasked in a uniformly random order: the null); and the model's entropy of each unmasking against the exact grammar
posterior's at the same state (`rhm.posterior`).

Pure functions on token arrays, plus `model_trajectories`, the exact sampler of `models.MaskedDiffusion` with its
order and entropies recorded (along training the evaluation's own generations are these trajectories:
sweeps.overest_eval).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from rhm import Grammar, as_strings
from rhm.posterior import GrammarPosterior

#: Trajectories whose unmaskings get the grammar posterior's entropy (d posteriors each): 2,048 of them at
#: n_gen = 256 would cost more than the overestimation probe's forward pass; 64 x d draws keep the mean entropies'
#: standard error at twice that of all 256 (benchmarks/overest_bench.py).
ENTROPY_TRAJECTORIES: int = 64


@dataclass(frozen=True)
class Trajectories:
    """n reverse trajectories: strings (n, d) the final strings; order (n, d) the position unmasked at each step
    (step j = j+1 tokens unmasked after it); entropy (n, d) the sampler's entropy (nats) of the token drawn at step j
    (NaN for the grammar-faithful generator, which has no network); times (n, d) the sampler's time at each step.
    """

    strings: np.ndarray
    order: np.ndarray
    entropy: np.ndarray
    times: np.ndarray | None = None

    def states(self, v: int) -> np.ndarray:
        """(n, d, d): the state before each step j (mask id v where still masked)."""
        n, d = self.strings.shape
        rank = np.empty_like(self.order)
        np.put_along_axis(rank, self.order, np.arange(d)[None, :].repeat(n, 0), axis=1)   # step of each position
        shown = rank[:, None, :] < np.arange(d)[None, :, None]                            # (n, step, position)
        return np.where(shown, self.strings[:, None, :], v)


def grammar_trajectories(grammar: Grammar, n: int, seed: int) -> Trajectories:
    """The grammar-faithful generator: n grammar strings, each unmasked in a uniformly random order."""
    rng = np.random.default_rng(seed)
    x = grammar.sample(n, rng)
    order = rng.random(x.shape).argsort(1)
    return Trajectories(strings=x, order=order, entropy=np.full(x.shape, np.nan))


def collapse_steps(traj: Trajectories, train: object, v: int) -> np.ndarray:
    """(n,) float: the number of unmasked tokens at which exactly one training string (a distinct row of `train`)
    is first consistent with them; NaN when that never happens (the count goes from several to none, or the
    trajectory ends on several)."""
    x = traj.strings
    n, d = x.shape
    small = np.int8 if v < 128 else np.int64                          # a quarter of the memory traffic or less
    tt = np.ascontiguousarray(_distinct(as_strings(train, v, d, "train"), v).T.astype(small))   # (d, P)
    x = x.astype(small)
    alive = np.ones((n, tt.shape[1]), dtype=bool)
    out = np.full(n, np.nan)
    rows = np.arange(n)
    for j in range(d):
        pos = traj.order[:, j]
        alive &= tt[pos] == x[rows, pos][:, None]                      # (n, P): still consistent
        first = np.isnan(out) & (np.count_nonzero(alive, axis=1) == 1)
        out[first] = j + 1
    return out


def _distinct(t: np.ndarray, v: int) -> np.ndarray:
    """The distinct rows of t (P, d): by one integer code per row when v**d fits in 62 bits (a 1-D unique, several
    times faster than np.unique(axis=0)), else row-wise."""
    d = t.shape[1]
    if d * np.log2(max(v, 2)) >= 62:
        return np.unique(t, axis=0)
    _, first = np.unique(t @ (np.int64(v) ** np.arange(d, dtype=np.int64)), return_index=True)
    return t[first]


def posterior_entropies(grammar: Grammar, traj: Trajectories, posterior: GrammarPosterior | None = None
                        ) -> np.ndarray:
    """(n, d): the exact grammar posterior's entropy (nats) of the position unmasked at step j, given the state
    before it; what a grammar-faithful sampler's entropy of that unmasking is."""
    sp = grammar.spec
    n, d = traj.strings.shape
    z = traj.states(sp.v).reshape(n * d, d)
    bp = posterior or GrammarPosterior(grammar)
    marg = bp.masked(z).marginals.reshape(n, d, d, sp.v)                # (n, step, position, v)
    at = np.take_along_axis(marg, traj.order[:, :, None, None], axis=2)[:, :, 0]     # (n, step, v)
    with np.errstate(divide="ignore", invalid="ignore"):
        return -np.where(at > 0, at * np.log(at), 0.0).sum(-1)


def model_trajectories(model: object, n: int, seed: int | list[int]) -> list[Trajectories]:
    """The exact sampler of a (packed) masked diffusion model (`models.MaskedDiffusion.sample_trajectory`, the
    same draws and strings as its `sample(n, None, rng)`), with the order and each draw's entropy recorded. One
    Trajectories per member, member k's drawn from its own generator (seed[k], or seed + k)."""
    from models.rng import MemberRNG

    K = model.K
    seeds = list(seed) if isinstance(seed, (list, tuple)) else [int(seed) + k for k in range(K)]
    if len(seeds) != K:
        raise ValueError(f"got {len(seeds)} seeds for a pack of K={K} members: expected one per member")
    return trajectories(*model.sample_trajectory(n, MemberRNG([int(s_) for s_ in seeds], model.device)))


def trajectories(strings: object, order: object, times: object, entropy: object) -> list[Trajectories]:
    """One Trajectories per member from the recorded exact sampler's tensors, each (K, n, d) on any device."""
    host = [a.detach().cpu().numpy() for a in (strings, order, times, entropy)]
    return [Trajectories(strings=host[0][k], order=host[1][k], entropy=host[3][k].astype(np.float64),
                         times=host[2][k]) for k in range(host[0].shape[0])]


def collapse_curves(grammar: Grammar, model_traj: Trajectories, train: object, null_seed: int = 0,
                    posterior: GrammarPosterior | None = None, n_entropy: int | None = ENTROPY_TRAJECTORIES
                    ) -> dict[str, np.ndarray | float]:
    """One evaluation's collapse summaries: collapse_model / collapse_grammar, the mean collapse step over the
    trajectories that collapse (as a fraction of d), and collapse_*_frac the fraction that do, for the model's
    trajectories and as many of the grammar-faithful generator's; entropy_model / entropy_grammar (d,): mean entropy
    of the j-th unmasking (the grammar's at the model's own states); entropy_excess: their mean difference
    grammar - model (> 0: the model is surer of its unmaskings than the language allows), both over the first
    `n_entropy` trajectories (None: all)."""
    sp = grammar.spec
    few = Trajectories(*(None if a is None else a[:n_entropy] for a in (model_traj.strings, model_traj.order,
                                                                         model_traj.entropy, model_traj.times)))
    null = grammar_trajectories(grammar, model_traj.strings.shape[0], null_seed)
    cm, cg = collapse_steps(model_traj, train, sp.v), collapse_steps(null, train, sp.v)
    with np.errstate(invalid="ignore"):
        return {"collapse_model": float(np.nanmean(cm) / sp.d) if np.isfinite(cm).any() else float("nan"),
                "collapse_model_frac": float(np.isfinite(cm).mean()),
                "collapse_grammar": float(np.nanmean(cg) / sp.d) if np.isfinite(cg).any() else float("nan"),
                "collapse_grammar_frac": float(np.isfinite(cg).mean()),
                "entropy_model": (em := few.entropy.mean(0)),
                "entropy_grammar": (eg := posterior_entropies(grammar, few, posterior).mean(0)),
                "entropy_excess": float(np.mean(eg - em))}
