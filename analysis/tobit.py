"""The Tobit (censored Gaussian) likelihood behind every onset law, fitted by batched Newton ascent.

Olsen's parameterization ``(log C / sigma, beta / sigma, 1 / sigma)`` per group makes the log-likelihood globally
concave, so Newton with step-halving finds the unique maximum; a linear map ``T`` from free parameters to every
group's natural parameters lets one routine fit separate laws, a common slope with free intercepts, free slopes,
or intercepts that are linear in group covariates. All bootstrap replicates are solved at once (one weight row
each). The definitions the laws report are in ``analysis.fits``.
"""
from __future__ import annotations

import numpy as np
from scipy import special

_LOG2PI = float(np.log(2 * np.pi))
#: Coverage of every interval the laws report.
LEVEL = 0.95


def design(x: np.ndarray, y: np.ndarray, kind: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Features ``f = s * (1, x, -y)`` (s = -1 for left-censored) and the observed mask. kind: 0 obs, 1 right, -1 left."""
    s = np.where(kind == -1, -1.0, 1.0)
    f = np.stack([s, s * x, -s * y], axis=1)
    return f, kind == 0


def newton(f: np.ndarray, obs: np.ndarray, grp: np.ndarray, G: int, T: np.ndarray, W: np.ndarray,
            phi0: np.ndarray, max_iter: int = 60, tol: float = 1e-9) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Batched Newton ascent of the weighted Tobit log-likelihood.

    Points are sorted by group ``grp`` (G groups); the per-group natural parameters ``theta_g = (a, b, gamma)`` are
    ``T @ phi`` (``T`` is ``(3G, p)``), so one routine fits separate, common-slope and free-slope models. ``W`` is
    ``(B, n)`` replicate weights. Observed points enter through per-group weighted moments (their log-likelihood is
    quadratic in theta), so each iteration only touches the censored points. Returns ``phi (B, p)``,
    ``loglik (B,)``, ``converged (B,)`` and the Hessian ``(B, p, p)``.
    """
    B, n = W.shape
    p = T.shape[1]
    Tg = T.reshape(G, 3, p)
    Tgam = Tg[:, 2, :]                                                  # gamma_g = Tgam[g] @ phi
    ff = (f[:, :, None] * f[:, None, :]).reshape(n, 9)
    starts = np.flatnonzero(np.r_[True, grp[1:] != grp[:-1]]) if n else np.array([], int)
    ends = np.r_[starts[1:], n]
    gids = grp[starts]
    Mo = np.zeros((B, G, 9))                                            # sum of w f f^T over observed points
    nobs = np.zeros((B, G))
    cs, cg = [], []                                                     # censored segments per group
    cidx = np.flatnonzero(~obs)
    for a, b, g in zip(starts, ends, gids):
        o = obs[a:b]
        Mo[:, g] = W[:, a:b][:, o] @ ff[a:b][o]
        nobs[:, g] = W[:, a:b] @ o.astype(float)
    Mo = Mo.reshape(B, G, 3, 3)
    cgrp = grp[cidx]
    cstarts = np.flatnonzero(np.r_[True, cgrp[1:] != cgrp[:-1]]) if cidx.size else np.array([], int)
    cends = np.r_[cstarts[1:], cidx.size]
    cgids = cgrp[cstarts]
    Fc = np.einsum("nk,nkp->np", f[cidx], Tg[cgrp]) if cidx.size else np.zeros((0, p))
    ffc = ff[cidx]
    Wc = W[:, cidx]
    const = -0.5 * _LOG2PI * nobs.sum(1)
    del cs, cg

    def evaluate(ph: np.ndarray, rows: np.ndarray, derivs: bool):
        th = np.einsum("gkp,bp->bgk", Tg, ph)                          # (b, G, 3)
        gam = th[:, :, 2]
        nb = nobs[rows]
        with np.errstate(divide="ignore", invalid="ignore"):
            lg = np.where(nb > 0, nb * np.log(np.where(gam > 0, gam, np.nan)), 0.0)
        Mt = np.einsum("bgkl,bgl->bgk", Mo[rows], th)
        ll = -0.5 * np.einsum("bgk,bgk->b", th, Mt) + lg.sum(1) + const[rows]
        wc = Wc[rows]
        if cidx.size:
            t = ph @ Fc.T
            lnd = special.log_ndtr(t)
            ll = ll + (wc * lnd).sum(1)
        valid = np.all((gam > 0) | (nb == 0), axis=1)
        ll = np.where(valid & np.isfinite(ll), ll, -np.inf)
        if not derivs:
            return ll, None, None
        gfull = -Mt
        gfull[:, :, 2] += nb / gam
        Hf = -Mo[rows].copy()
        Hf[:, :, 2, 2] -= nb / gam ** 2
        grad = np.einsum("bgk,gkp->bp", gfull, Tg)
        if cidx.size:
            lam = np.exp(-0.5 * t * t - 0.5 * _LOG2PI - lnd)
            grad += (wc * lam) @ Fc
            wd2 = -wc * lam * (t + lam)
            for a, b, g in zip(cstarts, cends, cgids):
                Hf[:, g] += (wd2[:, a:b] @ ffc[a:b]).reshape(-1, 3, 3)
        if G == 1:
            Hp = T.T @ Hf[:, 0] @ T
        else:
            Hb = np.zeros((Hf.shape[0], G, 3, G, 3))
            gi = np.arange(G)
            Hb[:, gi, :, gi, :] = Hf.transpose(1, 0, 2, 3)
            Hp = T.T @ Hb.reshape(-1, 3 * G, 3 * G) @ T
        return ll, grad, Hp

    phi = np.array(phi0, dtype=float, copy=True)
    allrows = np.arange(B)
    llv, grad, H = evaluate(phi, allrows, True)
    conv = np.zeros(B, dtype=bool)
    active = np.isfinite(llv)
    eye = np.eye(p)
    for _ in range(max_iter):
        ia = np.flatnonzero(active & ~conv)
        if ia.size == 0:
            break
        grad_a, Hp_a = grad[ia], H[ia]
        try:
            step = np.linalg.solve(-Hp_a + 1e-12 * eye, grad_a[:, :, None])[:, :, 0]
        except np.linalg.LinAlgError:
            step = np.stack([np.linalg.lstsq(-h, gr, rcond=None)[0] for h, gr in zip(Hp_a, grad_a)])
        dec = np.einsum("bp,bp->b", grad_a, step)
        done = np.abs(dec) < tol
        conv[ia[done]] = True
        if done.all():
            break
        ib = ia[~done]
        st, ll0 = step[~done], llv[ib]
        alpha = np.ones(ib.size)
        accepted = np.zeros(ib.size, dtype=bool)
        for _h in range(30):
            pend = np.flatnonzero(~accepted)
            rows = ib[pend]
            cand = phi[rows] + alpha[pend, None] * st[pend]
            # the first (full Newton) try also returns derivatives: accepted replicates reuse them next iteration
            lc, gc, hc = evaluate(cand, rows, _h == 0)
            ok = np.isfinite(lc) & (lc >= ll0[pend] - 1e-12 * np.abs(ll0[pend]))
            acc = rows[ok]
            phi[acc], llv[acc] = cand[ok], lc[ok]
            if gc is not None:
                grad[acc], H[acc] = gc[ok], hc[ok]
            else:
                _, g2, h2 = evaluate(cand[ok], acc, True)
                grad[acc], H[acc] = g2, h2
            accepted[pend[ok]] = True
            if accepted.all():
                break
            alpha[pend[~ok]] *= 0.5
        active[ib[~accepted]] = False                                   # line search failed: cannot improve
    bad = ~np.all(np.isfinite(phi), axis=1) | ~np.isfinite(llv)
    conv &= ~bad
    return phi, llv, conv, H


def start(x: np.ndarray, y: np.ndarray, grp: np.ndarray, G: int, T: np.ndarray) -> np.ndarray:
    """Starting phi: least squares of the full natural parameters (all points as if observed), projected on T."""
    full = np.zeros((G, 3))
    for g in range(G):
        m = grp == g
        xs, ys = x[m], y[m]
        if xs.size >= 2 and np.ptp(xs) > 0:
            b, a = np.polyfit(xs, ys, 1)
        else:
            b, a = 0.0, float(ys.mean()) if ys.size else 0.0
        sd = max(float(np.std(ys - a - b * xs)) if ys.size else 1.0, 0.1)
        full[g] = (a / sd, b / sd, 1.0 / sd)
    return np.linalg.lstsq(T, full.ravel(), rcond=None)[0]


def wald(fun, phi: np.ndarray, H: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Delta-method standard errors of fun(phi) from the Hessian (observed information -H)."""
    try:
        cov = np.linalg.inv(-H)
    except np.linalg.LinAlgError:
        return fun(phi), np.full(len(fun(phi)), np.nan)
    q0 = fun(phi)
    J = np.zeros((q0.size, phi.size))
    for j in range(phi.size):
        h = 1e-6 * max(1.0, abs(phi[j]))
        e = np.zeros(phi.size)
        e[j] = h
        J[:, j] = (fun(phi + e) - fun(phi - e)) / (2 * h)
    var = np.einsum("qp,pr,qr->q", J, cov, J)
    return q0, np.sqrt(np.where(var >= 0, var, np.nan))


def pct(samples: np.ndarray, ok: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Percentile interval over the converged replicates (columns are quantities)."""
    s = samples[ok]
    if s.shape[0] < 10:
        nan = np.full(samples.shape[1], np.nan)
        return nan, nan
    a = (1 - LEVEL) / 2
    return np.nanquantile(s, a, axis=0), np.nanquantile(s, 1 - a, axis=0)


# ----------------------------------------------------------------------------------------------- public core fits
