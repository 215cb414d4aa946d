"""Early overestimation (SCIENCE.md, "Early overestimation"): how much surer than the grammar a denoiser is of a
string's own tokens, o(x, t) = mean over masked i of [log p_model(x_i | z) - log p_grammar(x_i | z)].

A `Probe` fixes, once per trial, the strings (training and held-out), a set of mask draws per string at each noise
level t (exactly max(1, round(t d)) masked positions, uniformly placed) and the exact grammar posterior of every
masked true token (`rhm.posterior`); the grammar and the draws never change along training, so each evaluation
costs one batched forward pass of the model. `overestimation(predict, probe)` is the pure function of a model's
predictions; `masked_true_logp` is the forward pass of a (packed) masked diffusion model.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from analysis.tokens import is_tensor, to_numpy
from rhm import Grammar, as_strings
from rhm.posterior import GrammarPosterior

#: Noise levels (fraction masked) of the probe: high t is early in denoising.
NOISE_LEVELS: tuple[float, ...] = (0.9, 0.75, 0.5)
#: Mask draws per string and noise level (one: the probe's forward pass is strings x levels x draws strings).
N_DRAWS: int = 1
#: Training strings probed per trial (a fixed random subset when P is larger; as many held-out strings): the probe's
#: forward pass then costs 2 x 64 x 3 strings whatever P: +10% (regime) and +20-23% (study) of an evaluation at
#: P = 1,024 with the collapse (benchmarks/overest_bench.py; all 1,024 + 256 strings: +128% and +212%). The price: a per-evaluation AUC rests on 64
#: strings (standard error ~0.07 instead of ~0.02 at P = 1,024), the curves' means on 64 + 64.
OVEREST_STRINGS: int = 64


@dataclass(frozen=True)
class Probe:
    """strings (n, d); ts (T,) noise levels; masks (T, n, D, d) bool, D draws per string; grammar_logp (T, n, D, d)
    log p_grammar(x_i | z) of the true token at each masked position (NaN where observed)."""

    strings: np.ndarray
    ts: np.ndarray
    masks: np.ndarray
    grammar_logp: np.ndarray

    @property
    def n(self) -> int:
        return int(self.strings.shape[0])

    def inputs(self, mask_id: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The model's inputs, flat over (t, string, draw): masked strings z (N, d) (mask_id where masked), their
        noise levels t (N,) and the true strings x (N, d)."""
        T, n, D, d = self.masks.shape
        x = np.broadcast_to(self.strings[None, :, None, :], self.masks.shape).reshape(-1, d)
        z = np.where(self.masks.reshape(-1, d), mask_id, x)
        t = np.broadcast_to(self.ts[:, None, None], (T, n, D)).reshape(-1)
        return z, t.astype(np.float64), np.ascontiguousarray(x)

    def scores(self, model_logp: object) -> np.ndarray:
        """o (T, n) from the model's log-probabilities of the true tokens, (N, d) flat as `inputs` or (T, n, D, d):
        per draw the mean over its masked positions of the difference with the grammar, then the mean over draws."""
        lp = _floats(model_logp).reshape(self.masks.shape)
        return self.masked_mean(lp - np.where(self.masks, self.grammar_logp, 0.0))

    def masked_mean(self, values: np.ndarray) -> np.ndarray:
        """(T, n): per draw the mean of values (T, n, D, d) over its masked positions, then the mean over draws."""
        per_draw = np.where(self.masks, values, 0.0).sum(-1) / self.masks.sum(-1)
        return per_draw.mean(-1)


def _floats(x: object) -> np.ndarray:
    """A float64 numpy array from a numpy array or a torch tensor on any device."""
    return np.asarray(x.detach().cpu().numpy() if is_tensor(x) else x, dtype=np.float64)


def draw_masks(n: int, d: int, ts: tuple[float, ...], draws: int, seed: int) -> np.ndarray:
    """(T, n, draws, d) bool: per string and level t, `draws` masks of exactly max(1, round(t d)) positions."""
    ts = _check_levels(ts)
    if isinstance(draws, bool) or not isinstance(draws, int) or draws < 1:
        raise ValueError(f"draws must be an integer >= 1 mask draws per string, got {draws!r}")
    rng = np.random.default_rng(seed)
    out = np.empty((len(ts), n, draws, d), dtype=bool)
    for i, t in enumerate(ts):
        k = max(1, int(round(t * d)))
        rank = rng.random((n, draws, d)).argsort(-1).argsort(-1)
        out[i] = rank < k
    return out


def _check_levels(ts: object) -> tuple[float, ...]:
    ts = tuple(float(t) for t in np.atleast_1d(np.asarray(ts, dtype=np.float64)))
    if not ts or not all(0.0 < t <= 1.0 for t in ts):
        raise ValueError(f"noise levels must be fractions masked in (0, 1], got {ts}")
    return ts


def make_probe(grammar: Grammar, strings: object, ts: tuple[float, ...] = NOISE_LEVELS, draws: int = N_DRAWS,
               seed: int = 0, posterior: GrammarPosterior | None = None) -> Probe:
    """The probe of valid `strings` (n, d): mask draws from `seed` and the grammar's posterior of their tokens."""
    sp = grammar.spec
    x = as_strings(to_numpy(strings), sp.v, sp.d, "strings")
    if x.shape[0] and not grammar.parse(x).valid.all():
        row = int(np.flatnonzero(~grammar.parse(x).valid)[0])
        raise ValueError(f"strings row {row} is not a valid string of the grammar; o(x, t) needs valid strings")
    masks = draw_masks(x.shape[0], sp.d, ts, draws, seed)
    probe = Probe(strings=x, ts=np.asarray(_check_levels(ts)), masks=masks, grammar_logp=np.empty(0))
    z, _, xs = probe.inputs(sp.v)
    bp = posterior or GrammarPosterior(grammar)
    post = bp.masked(z).marginals                                       # (N, d, v)
    with np.errstate(divide="ignore"):
        logp = np.log(np.take_along_axis(post, xs[..., None], axis=-1)[..., 0])
    logp = np.where(masks.reshape(-1, sp.d), logp, np.nan).reshape(masks.shape)
    return Probe(strings=x, ts=probe.ts, masks=masks, grammar_logp=logp)


def overestimation(predict: Callable[[np.ndarray, np.ndarray], object], probe: Probe, mask_id: int) -> np.ndarray:
    """o (T, n) of a denoiser `predict(z (N, d), t (N,)) -> log p(x_i = b | z) (N, d, v)` on the probe's strings."""
    z, t, x = probe.inputs(mask_id)
    logp = _floats(predict(z, t))
    if logp.ndim != 3 or logp.shape[:2] != z.shape:
        raise ValueError(f"predict must return log-probabilities of shape (N={z.shape[0]}, d={z.shape[1]}, v), "
                         f"got shape {logp.shape}")
    return probe.scores(np.take_along_axis(logp, x[..., None], axis=-1)[..., 0])


def masked_true_logp(model: object, z: object, t: object, x: object, chunk: int = 4096) -> object:
    """log p_model(x_i | z) (K, N, d) of a packed masked diffusion model (`models.MaskedDiffusion`, eval mode) at
    masked inputs z (K, N, d), times t (K, N), true tokens x (K, N, d): one forward pass per chunk, on its device."""
    import torch

    dev = model.device
    z, t, x = (torch.as_tensor(a, device=dev) for a in (z, t, x))
    out = torch.empty(x.shape, dtype=torch.float32, device=dev)
    with torch.no_grad():
        for i in range(0, z.shape[1], chunk):
            sl = slice(i, i + chunk)
            logits = model.net(z[:, sl].long(), t[:, sl].float()).float()
            out[:, sl] = torch.log_softmax(logits, -1).gather(-1, x[:, sl, :, None].long())[..., 0]
    return out


# ---------------------------------------------------------------------------------------------- along training
@dataclass(frozen=True)
class TrialProbe:
    """A trial's probe: its training strings, then its held-out strings (split "train" / "heldout", string_index
    the row in its own set)."""

    probe: Probe
    split: np.ndarray
    string_index: np.ndarray

    @property
    def is_train(self) -> np.ndarray:
        return self.split == "train"


def trial_probe(grammar: Grammar, train: object, heldout: object, seed: int, ts: tuple[float, ...] = NOISE_LEVELS,
                draws: int = N_DRAWS, n_strings: int | None = None) -> TrialProbe:
    """The probe of a trial's training and held-out strings, mask draws from `seed` (fixed for the trial); with
    `n_strings`, of a fixed random subset of at most that many of each (drawn from `seed`, rows kept in order)."""
    sp = grammar.spec
    tr, ho = (as_strings(to_numpy(a), sp.v, sp.d, name) for a, name in ((train, "train"), (heldout, "heldout")))
    if n_strings is not None and (isinstance(n_strings, bool) or not isinstance(n_strings, int) or n_strings < 1):
        raise ValueError(f"n_strings must be an integer >= 1 strings probed per set (or None: all), got {n_strings!r}")
    rng = np.random.default_rng([seed, 1])                            # not the mask draws' stream
    i_tr, i_ho = (_subset(a.shape[0], n_strings, rng) for a in (tr, ho))
    probe = make_probe(grammar, np.concatenate([tr[i_tr], ho[i_ho]]), ts, draws, seed)
    split = np.array(["train"] * i_tr.size + ["heldout"] * i_ho.size, dtype=object)
    return TrialProbe(probe=probe, split=split, string_index=np.concatenate([i_tr, i_ho]).astype(np.int64))


def _subset(n: int, k: int | None, rng: np.random.Generator) -> np.ndarray:
    """Sorted row indices: all n rows, or k of them uniformly without replacement when n > k."""
    if k is None or n <= k:
        return np.arange(n)
    return np.sort(rng.choice(n, size=k, replace=False))


def summarize(tp: TrialProbe, o: np.ndarray, model_logp: np.ndarray | None = None
              ) -> tuple[dict[str, float], dict[str, np.ndarray]]:
    """The registry's overest curves (at the highest noise level) and the `overest` table's columns of o (T, n);
    model_logp (T, n): the model's own mean log-probability of the masked true tokens (the reference-free score)."""
    hi = int(np.argmax(tp.probe.ts))
    train = tp.is_train
    with np.errstate(invalid="ignore"):
        tr = float(np.mean(o[hi, train])) if train.any() else float("nan")
        ho = float(np.mean(o[hi, ~train])) if (~train).any() else float("nan")
    T, n = o.shape
    cols = {"t": np.repeat(tp.probe.ts, n), "split": np.tile(tp.split, T).astype(str),
            "string_index": np.tile(tp.string_index, T), "o": o.reshape(-1).astype(np.float64),
            "model_logp": (np.full(o.size, np.nan) if model_logp is None else
                           np.asarray(model_logp, dtype=np.float64).reshape(-1))}
    return {"overest_train": tr, "overest_heldout": ho, "overest_gap": tr - ho}, cols


def overest_curves(rows: object) -> object:
    """Per (trial, step, t): overest_train, overest_heldout and overest_gap from `overest` table rows (pandas)."""
    import pandas as pd

    df = pd.DataFrame(rows)
    means = df.groupby(["trial_id", "step", "t", "split"])["o"].mean().unstack("split")
    out = pd.DataFrame({"overest_train": means.get("train"), "overest_heldout": means.get("heldout")})
    out["overest_gap"] = out["overest_train"] - out["overest_heldout"]
    return out.reset_index()
