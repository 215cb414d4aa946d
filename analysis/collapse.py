"""Trajectory collapse (SCIENCE.md, "Early overestimation"): along the exact masked sampler's reverse trajectory (one
position unmasked per network call, in a uniformly random order), the step at which the unmasked tokens leave
exactly one consistent training string, against the same for the grammar-faithful generator (grammar strings,
unmasked in a uniformly random order: the null); and the model's entropy of each unmasking against the exact grammar
posterior's at the same state (`rhm.posterior`).

Pure functions on token arrays, plus `model_trajectories`, the exact sampler of `models.MaskedDiffusion` re-run
with its order and entropies recorded.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from rhm import Grammar, as_strings
from rhm.posterior import GrammarPosterior


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
    t = np.unique(as_strings(train, v, d, "train"), axis=0)
    alive = np.ones((n, t.shape[0]), dtype=bool)
    out = np.full(n, np.nan)
    rows = np.arange(n)
    for j in range(d):
        pos = traj.order[:, j]
        alive &= t[:, pos].T == x[rows, pos][:, None]                  # (n, P): still consistent
        first = np.isnan(out) & (alive.sum(1) == 1)
        out[first] = j + 1
    return out


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
    """The exact sampler of a (packed) masked diffusion model (`models.MaskedDiffusion`), as its
    `sample(n, None, rng)`: i.i.d. U(0, 1) unmasking times, positions unmasked in decreasing time order, the network
    seeing the state and the time just before each event; with the order and each draw's entropy recorded. One
    Trajectories per member, member k's drawn from its own generator (seed[k], or seed + k)."""
    import torch

    K, dev, d, v = model.K, model.device, model.d, model.v
    seeds = list(seed) if isinstance(seed, (list, tuple)) else [int(seed) + k for k in range(K)]
    if len(seeds) != K:
        raise ValueError(f"got {len(seeds)} seeds for a pack of K={K} members: expected one per member")
    gens = [torch.Generator(device="cpu").manual_seed(int(s_)) for s_ in seeds]
    draws = [torch.rand(n, d, generator=g_).sort(dim=-1, descending=True) for g_ in gens]
    times = torch.stack([t_ for t_, _ in draws])                       # (K, n, d)
    order = torch.stack([o_ for _, o_ in draws])
    x = torch.full((K, n, d), v, dtype=torch.long, device=dev)
    ent = torch.empty(K, n, d, dtype=torch.float64)
    kk, nn = torch.arange(K, device=dev)[:, None], torch.arange(n, device=dev)[None, :]
    with torch.no_grad():
        for j in range(d):
            pos = order[:, :, j].to(dev)                                # (K, n)
            logits = model.net(x, times[:, :, j].to(dev)).float()[kk, nn, pos]          # (K, n, v)
            logp = torch.log_softmax(logits, -1)
            ent[:, :, j] = -(logp.exp() * logp).sum(-1).double().cpu()
            u = torch.stack([torch.rand(n, v, generator=g_) for g_ in gens]).clamp_(min=1e-20).to(dev)
            x[kk, nn, pos] = (logp - torch.log(-torch.log(u))).argmax(-1)
    return [Trajectories(strings=x[k].cpu().numpy(), order=order[k].numpy(), entropy=ent[k].numpy(),
                         times=times[k].numpy()) for k in range(K)]


def collapse_curves(grammar: Grammar, model_traj: Trajectories, train: object, null_seed: int = 0,
                    posterior: GrammarPosterior | None = None) -> dict[str, np.ndarray | float]:
    """One evaluation's collapse summaries: collapse_model / collapse_grammar, the mean collapse step over the
    trajectories that collapse (as a fraction of d), and collapse_*_frac the fraction that do, for the model's
    trajectories and as many of the grammar-faithful generator's; entropy_model / entropy_grammar (d,): mean entropy
    of the j-th unmasking (the grammar's at the model's own states); entropy_excess: their mean difference
    grammar - model (> 0: the model is surer of its unmaskings than the language allows)."""
    sp = grammar.spec
    null = grammar_trajectories(grammar, model_traj.strings.shape[0], null_seed)
    cm, cg = collapse_steps(model_traj, train, sp.v), collapse_steps(null, train, sp.v)
    with np.errstate(invalid="ignore"):
        return {"collapse_model": float(np.nanmean(cm) / sp.d) if np.isfinite(cm).any() else float("nan"),
                "collapse_model_frac": float(np.isfinite(cm).mean()),
                "collapse_grammar": float(np.nanmean(cg) / sp.d) if np.isfinite(cg).any() else float("nan"),
                "collapse_grammar_frac": float(np.isfinite(cg).mean()),
                "entropy_model": (em := model_traj.entropy.mean(0)),
                "entropy_grammar": (eg := posterior_entropies(grammar, model_traj, posterior).mean(0)),
                "entropy_excess": float(np.mean(eg - em))}
