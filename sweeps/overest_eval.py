"""Overestimation along training (analysis.overest, analysis.collapse): at every `eval.overest_every`-th evaluation,
one forward pass of the (packed) model on each member's fixed probe (at most `eval.overest_strings` training and as
many held-out strings), summarized into the registry's overest curves and the rows of the `overest` table; and the
collapse and entropy curves of the evaluation's own n_gen generations, whose exact-sampler trajectories are
recorded as they are drawn (`generate`; sampled again only when the evaluation's sampler is not the exact one),
beside the grammar-faithful generator's. The probe (mask draws and the exact grammar posterior) is built once per
trial and data."""
from __future__ import annotations

import contextlib
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from analysis.collapse import Trajectories, collapse_curves, model_trajectories, trajectories
from analysis.overest import TrialProbe, masked_true_logp, summarize, trial_probe
from rhm.posterior import GrammarPosterior

#: The collapse summaries that are registry curves (analysis.registry).
COLLAPSE_SCALARS = ("collapse_model", "collapse_model_frac", "collapse_grammar", "collapse_grammar_frac",
                    "entropy_excess")


def overest_due(cfg: Any, schedule: Sequence[int], step: int) -> bool:
    """True at every `overest_every`-th evaluation of the trial's schedule (the first included); never when 0."""
    every = int(getattr(cfg, "overest_every", 0) or 0)
    return every > 0 and step in schedule and schedule.index(step) % every == 0


def generate(trainer: Any, cfgs: Sequence[Any], seeds: Sequence[int], due: bool
             ) -> tuple[torch.Tensor, list[Trajectories] | None]:
    """The evaluation's n_gen generations per member (K, n, d); when the probe is `due` and the sampler is the
    exact one, with their trajectories recorded on the way (the same draws, the same strings), for the collapse."""
    n, steps = int(cfgs[0].n_gen), cfgs[0].sample_steps
    if not (due and steps is None):
        return trainer.sample_members(n, steps, seeds), None
    rec = trainer.sample_trajectories(n, seeds)
    return rec[0], trajectories(*rec)


def probe_of(cfg: Any, data: Any) -> TrialProbe:
    """The trial's probe, built on first use and kept on its data (subset and mask draws from the data seed)."""
    tp = getattr(data, "_overest_probe", None)
    if tp is None:
        tp = trial_probe(data.grammar, data.train, data.heldout, seed=int(cfg.data_seed) + 7,
                         n_strings=cfg.overest_strings)
        data._overest_probe = tp
    return tp


def posterior_of(data: Any) -> GrammarPosterior:
    """The grammar's belief propagation (and its masked tables), built once and kept on the trial's data."""
    bp = getattr(data, "_overest_posterior", None)
    if bp is None:
        bp = data._overest_posterior = GrammarPosterior(data.grammar)
    return bp


def measure(trainer: Any, cfgs: Sequence[Any], datas: Sequence[Any], step: int,
            trajs: Sequence[Trajectories] | None = None) -> list[tuple[dict, dict]]:
    """Per member of the trainer's pack (in order), the overest and collapse curves and the `overest` rows of its
    eval model at `step`. `trajs`: the evaluation's exact-sampler trajectories (`generate`); None samples n_gen
    per member from the evaluation's seeds (`sample_seed`)."""
    from sweeps.member import sample_seed

    probes = [probe_of(c, d) for c, d in zip(cfgs, datas)]
    mask_id = datas[0].grammar.spec.v
    inputs = [tp.probe.inputs(mask_id) for tp in probes]
    N = max(z.shape[0] for z, _, _ in inputs)
    z, t, x = (np.stack([_pad(inp[i], N) for inp in inputs]) for i in range(3))     # (K, N, ...)
    model = trainer.eval_model
    was_training = model.training
    if was_training:                # a recursive walk over every module: only when needed (the EMA model is in eval)
        model.eval()
    try:
        with getattr(trainer, "_autocast", contextlib.nullcontext)():
            lp = masked_true_logp(model, torch.from_numpy(z), torch.from_numpy(t), torch.from_numpy(x))
            if trajs is None:
                trajs = model_trajectories(model, int(cfgs[0].n_gen), [sample_seed(c, step) for c in cfgs])
    finally:
        if was_training:
            model.train()
    lp = lp.double().cpu().numpy()
    out = []
    for k, (tp, inp) in enumerate(zip(probes, inputs)):
        mine = lp[k, :inp[0].shape[0]]
        scalars, cols = summarize(tp, tp.probe.scores(mine), tp.probe.masked_mean(mine.reshape(tp.probe.masks.shape)))
        cur = collapse_curves(datas[k].grammar, trajs[k], datas[k].train, null_seed=collapse_seed(cfgs[k], step),
                              posterior=posterior_of(datas[k]))
        scalars.update({name: float(cur[name]) for name in COLLAPSE_SCALARS})
        out.append((scalars, cols))
    return out


def collapse_seed(cfg: Any, step: int) -> int:
    """The seed of a trial's grammar-faithful collapse null at `step`: its own seed and the step (not the
    sampler's)."""
    return (int(cfg.seed) * 1_000_003 + int(step)) * 2 + 1


def _pad(a: np.ndarray, n: int) -> np.ndarray:
    """`a` with its last row repeated up to n rows (members' probes differ in size with their P)."""
    return np.concatenate([a, np.repeat(a[-1:], n - a.shape[0], axis=0)])


def attach(ev: Any, result: tuple[dict, dict]) -> Any:
    """Put one member's overest curves and rows on its Evaluation."""
    scalars, cols = result
    ev.scalars.update(scalars)
    ev.overest = cols
    return ev
