"""A joint onset law whose intercepts are linear in group covariates:
``log tau = c0 + sum_j c_j z_gj + beta log P + sigma eps`` for the trials of group g (a (tail, L) group).

This separates effects that free per-group intercepts (``analysis.fits.fit_joint``) cannot: with the exact string
entropy ``entropy`` and the ``entropy_tilt`` (where that entropy sits, see ``sweeps.trial.data_columns``) as
covariates, "diversity at high levels delays memorization" is the coefficient of the tilt at fixed entropy, not a
difference of intercepts that also carries the difference in entropy. Covariates are trials-table columns: numeric
ones enter as they are, text ones as indicators against their first value in sort order. The same Tobit likelihood,
bootstrap over trials within groups and Wald intervals as the other laws; a likelihood-ratio test against free
intercepts (the common-slope joint law) says whether the covariates explain the groups' differences.
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np
from scipy import stats

from analysis.stats import cluster_weights
from analysis.tobit import LEVEL, design, newton, pct, start, wald


def covariate_matrix(values: dict[str, np.ndarray], gidx: np.ndarray, G: int) -> tuple[np.ndarray, list[str], str]:
    """(Z (G, k), term names, problem) from per-trial covariate columns: one value per group, indicators for text.

    A covariate that varies within a group, or terms that are constant or collinear across groups, is a problem
    (returned as text, with Z empty): the law would not be identified."""
    cols, names = [], []
    for name, v in values.items():
        v = np.asarray(v, dtype=object)
        per = [sorted({str(x) for x in v[gidx == g]}) for g in range(G)]
        if any(len(p) != 1 for p in per):
            return np.zeros((G, 0)), [], f"covariate {name!r} varies within a group (or is missing in one)"
        first = [p[0] for p in per]
        try:
            cols.append(np.array([float(x) for x in first]))
            names.append(name)
        except ValueError:
            levels = sorted(set(first))
            for lev in levels[1:]:
                cols.append(np.array([x == lev for x in first], float))
                names.append(f"{name}={lev}")
    Z = np.stack(cols, 1) if cols else np.zeros((G, 0))
    A = np.c_[np.ones(G), Z]
    if not np.all(np.isfinite(Z)):
        return Z, names, "a covariate is NaN in some group"
    if np.linalg.matrix_rank(A) < A.shape[1]:
        return Z, names, (f"covariates {names} are constant or collinear across the {G} groups; the law needs "
                          f"more groups than terms, with the terms varying independently")
    return Z, names, ""


def _T(Z: np.ndarray) -> np.ndarray:
    """Free parameters (c0, c_1..c_k, beta, gamma) / sigma -> every group's (a, b, gamma)."""
    G, k = Z.shape
    T = np.zeros((3 * G, k + 3))
    T[0::3, 0] = 1.0
    T[0::3, 1:k + 1] = Z
    T[1::3, k + 1] = 1.0
    T[2::3, k + 2] = 1.0
    return T


def fit_covariates(gidx: np.ndarray, Z: np.ndarray, names: Sequence[str], logP: np.ndarray, logtau: np.ndarray,
                   kind: np.ndarray, n_boot: int = 200, seed: int = 0,
                   clusters: np.ndarray | None = None) -> dict[str, Any]:
    """The covariate law on trials sorted or not (codes `gidx` in [0, G), `kind` 0 observed / 1 right / -1 left
    censored). Returns beta, sigma and one entry per term (intercept first) with bootstrap and Wald intervals, and
    the LR test against free intercepts (lr_*: NaN when a group has no observed point)."""
    x, y = np.asarray(logP, float), np.asarray(logtau, float)
    ok = np.isfinite(x) & np.isfinite(y)
    clusters = np.arange(x.size) if clusters is None else np.asarray(clusters)
    g, x, y, kind, clusters = np.asarray(gidx)[ok], x[ok], y[ok], np.asarray(kind)[ok], clusters[ok]
    order = np.lexsort((x, g))
    g, x, y, kind, clusters = g[order], x[order], y[order], kind[order], clusters[order]
    G, k = Z.shape
    nan = float("nan")
    out: dict[str, Any] = dict(status="ok", reason="", beta=nan, beta_lo=nan, beta_hi=nan, sigma=nan, loglik=nan,
                               lr_stat=nan, lr_df=G - 1 - k, lr_p=nan, n_boot_ok=0, n_trials=int(x.size),
                               n_obs=int((kind == 0).sum()), n_cens=int((kind == 1).sum()),
                               n_left=int((kind == -1).sum()), terms=[])
    if out["n_obs"] < 2 or np.ptp(x[kind == 0]) == 0:
        return {**out, "status": "undetermined", "reason": "fewer than 2 observed points at distinct P"}
    f, obs = design(x, y, kind)
    T = _T(Z)
    phi, ll, conv, H = newton(f, obs, g, G, T, np.ones((1, x.size)), start(x, y, g, G, T)[None])
    if not conv[0]:
        return {**out, "status": "undetermined", "reason": "likelihood maximum not found"}

    def nat(ph: np.ndarray) -> np.ndarray:
        gam = ph[..., k + 2:k + 3]
        return np.concatenate([ph[..., :k + 2] / gam, 1.0 / gam], axis=-1)     # c0, c_j, beta, sigma

    est, se = wald(nat, phi[0], H[0])
    z = stats.norm.ppf(0.5 + LEVEL / 2)
    out.update(beta=float(est[k + 1]), sigma=float(est[k + 2]), loglik=float(ll[0]))
    if np.all(np.bincount(g[obs], minlength=G) > 0) and G - 1 - k > 0:
        Tf = np.zeros((3 * G, G + 2))
        Tf[3 * np.arange(G), np.arange(G)] = 1.0
        Tf[1::3, G] = 1.0
        Tf[2::3, G + 1] = 1.0
        _, llf, cf, _ = newton(f, obs, g, G, Tf, np.ones((1, x.size)), start(x, y, g, G, Tf)[None])
        if cf[0]:
            lr = max(0.0, 2 * float(llf[0] - ll[0]))
            out.update(lr_stat=lr, lr_p=float(stats.chi2.sf(lr, G - 1 - k)))
    lo = hi = np.full(est.size, np.nan)
    if n_boot > 0:
        W = cluster_weights(g, clusters, n_boot, np.random.default_rng(seed))
        pb, _, cb, _ = newton(f, obs, g, G, T, W, np.repeat(phi, n_boot, 0))
        cb &= (W[:, obs] > 0).sum(1) >= 2
        lo, hi = pct(nat(pb), cb)
        out.update(beta_lo=float(lo[k + 1]), beta_hi=float(hi[k + 1]), n_boot_ok=int(cb.sum()))
    for j, name in enumerate(["intercept", *names]):
        out["terms"].append(dict(term=name, coef=float(est[j]), coef_lo=float(lo[j]), coef_hi=float(hi[j]),
                                 coef_wald_lo=float(est[j] - z * se[j]), coef_wald_hi=float(est[j] + z * se[j])))
    return out
