"""Onset-time laws ``tau = C * P**beta``: censoring-aware (Tobit) fits with bootstrap and Wald intervals.

Statistical definitions (also in the report):

* Model: ``log tau_i = log C + beta * log P_i + sigma * eps_i``, ``eps_i ~ N(0, 1)`` (lognormal scatter over seeds).
* Tobit likelihood: an observed onset contributes the density ``log(phi(z_i) / sigma)``, ``z_i = (log tau_i - mu_i) /
  sigma``; a right-censored trial (never reached theta by its last step ``c_i``) contributes the survival
  ``log Phi((mu_i - log c_i) / sigma)`` = ``log P(log tau > log c_i)``; a left-censored one (already above theta at
  its first evaluation ``c_i``) contributes ``log Phi((log c_i - mu_i) / sigma)`` (``left="observed"`` treats those
  as exact instead). The maximum is found by Newton's method in Olsen's parameterization
  ``(log C / sigma, beta / sigma, 1 / sigma)``, where the Tobit log-likelihood is globally concave, so the optimum
  is unique and Newton with step-halving converges; all bootstrap replicates are solved at once (batched).
  ``tobit_fit`` is the same fit through ``scipy.optimize.minimize`` on ``(log C, beta, log sigma)`` (a check).
* Intervals: percentile 95% bootstrap over clusters of trials that share a grammar and a data draw
  (``analysis.stats.cluster_keys``; the onsets table's ``cluster`` column, else each trial its own): resample the
  clusters of each group with replacement, refit; fewer than ``MIN_CLUSTERS`` (3) clusters give no interval;
  replicates whose fit does not converge, e.g. no observed point left, are dropped and counted in ``n_boot_ok``),
  and the Wald 95% interval from the inverse observed information (delta method to ``log C, beta, sigma``).
* Joint law: all ``(tail, L)`` groups together with a common ``beta`` and ``sigma`` and one intercept per group;
  reported as ``scope="joint"`` (the common ``beta``) and ``scope="shift"`` rows: each group's intercept minus the
  reference group's (``log C_g - log C_ref``: the group's onset delay factor at equal P is ``exp(shift)``), with
  bootstrap and Wald intervals. The reference is the ``uniform`` tail with the smallest ``L`` if present, else the
  first group in sort order. A likelihood-ratio test of the common slope against free per-group slopes (common
  sigma in both) is in the joint row: ``lr_stat, lr_df = G - 1, lr_p``.
* Goodness of fit: ``sigma`` and ``loglik``; ``pseudo_r2`` = Cox-Snell ``1 - exp(-2 (ll - ll0) / n)`` against the
  intercept-only Tobit fit; ``ks_p`` = Kolmogorov-Smirnov p-value of the observed points' probability integral
  transforms ``(Phi(z_i) - Phi(z_first)) / (Phi(z_last) - Phi(z_first))`` (uniform under the model, given that the
  onset fell inside the observed window of its trial).
* Naive comparison: ordinary least squares of ``log tau`` on ``log P`` over the observed (uncensored) points only
  (``ols_*`` columns, t-interval): what one gets by dropping censored trials. It is biased when censoring is
  informative, which it always is here (late onsets are the ones censored).
* A group with fewer than 2 observed points, or observed points at a single P, is ``status="undetermined"`` with
  NaN estimates and a ``reason``; nothing raises.
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from scipy import optimize, special, stats

from analysis.onset import DEFAULT_THETAS, onsets as _onsets
from analysis.specs import base_tail
from analysis.covariates import covariate_matrix, fit_covariates
from analysis.stats import MIN_CLUSTERS, cluster_codes, cluster_weights
from analysis.tobit import LEVEL, design, newton, pct, start, wald
from analysis.registry import DEFAULT_GEN_METRIC, DEFAULT_MEM_METRIC

def _kind(censored: np.ndarray, left: np.ndarray | None, left_mode: str) -> np.ndarray:
    k = np.where(np.asarray(censored, bool), 1, 0)
    if left is not None and left_mode == "censored":
        k = np.where(np.asarray(left, bool) & (k == 0), -1, k)
    return k.astype(np.int64)


def _ols(x: np.ndarray, y: np.ndarray) -> dict[str, float]:
    """Naive OLS of y on x (observed points only), with a 95% t-interval on the slope."""
    out = dict(ols_beta=np.nan, ols_beta_lo=np.nan, ols_beta_hi=np.nan, ols_logC=np.nan, ols_r2=np.nan)
    if x.size < 2 or np.ptp(x) == 0:
        return out
    r = stats.linregress(x, y)
    out.update(ols_beta=float(r.slope), ols_logC=float(r.intercept), ols_r2=float(r.rvalue ** 2))
    if x.size > 2:
        q = stats.t.ppf(0.5 + LEVEL / 2, x.size - 2)
        out.update(ols_beta_lo=float(r.slope - q * r.stderr), ols_beta_hi=float(r.slope + q * r.stderr))
    return out


def fit_group(logP: np.ndarray, logtau: np.ndarray, censored: np.ndarray, left: np.ndarray | None = None,
              first: np.ndarray | None = None, last: np.ndarray | None = None, n_boot: int = 200,
              seed: int = 0, left_mode: str = "censored", bootstrap: bool = True,
              clusters: np.ndarray | None = None) -> dict[str, Any]:
    """Tobit fit of one group: ``log tau = log C + beta log P``; returns estimates, intervals and diagnostics.

    ``logtau`` holds log onsets, or log censoring points where ``censored`` (right) or ``left`` is set. ``first``
    and ``last`` (log first/last evaluated step per trial) are only used for the ``ks_p`` statistic. ``clusters``
    (codes per point) are the bootstrap's units; None: each point its own.
    """
    x = np.asarray(logP, float)
    y = np.asarray(logtau, float)
    kind = _kind(censored, left, left_mode)
    ok = np.isfinite(x) & np.isfinite(y)
    clusters = np.arange(x.size) if clusters is None else np.asarray(clusters)
    x, y, kind, clusters = x[ok], y[ok], kind[ok], clusters[ok]
    first = None if first is None else np.asarray(first, float)[ok]
    last = None if last is None else np.asarray(last, float)[ok]
    n_obs, n_cens, n_left = int((kind == 0).sum()), int((kind == 1).sum()), int((kind == -1).sum())
    nan = float("nan")
    res: dict[str, Any] = dict(status="ok", reason="", n_trials=int(x.size), n_obs=n_obs, n_cens=n_cens,
                               n_left=n_left, logC=nan, logC_lo=nan, logC_hi=nan, C=nan, beta=nan, beta_lo=nan,
                               beta_hi=nan, beta_wald_lo=nan, beta_wald_hi=nan, logC_wald_lo=nan,
                               logC_wald_hi=nan, sigma=nan, sigma_lo=nan, sigma_hi=nan, loglik=nan,
                               pseudo_r2=nan, ks_p=nan, n_boot_ok=0)
    res.update(_ols(x[kind == 0], y[kind == 0]))
    if n_obs < 2:
        return {**res, "status": "undetermined", "reason": f"{n_obs} observed point(s) (need 2)"}
    if np.ptp(x[kind == 0]) == 0:
        return {**res, "status": "undetermined", "reason": "observed points at a single P"}
    order = np.argsort(x, kind="stable")
    x, y, kind, clusters = x[order], y[order], kind[order], clusters[order]
    first = None if first is None else first[order]
    last = None if last is None else last[order]
    f, obs = design(x, y, kind)
    grp = np.zeros(x.size, dtype=np.int64)
    T = np.eye(3)
    phi0 = start(x, y, grp, 1, T)
    phi, ll, conv, H = newton(f, obs, grp, 1, T, np.ones((1, x.size)), phi0[None])
    if not conv[0]:
        return {**res, "status": "undetermined", "reason": "likelihood maximum not found (fit did not converge)"}

    def nat(ph: np.ndarray) -> np.ndarray:
        return np.array([ph[0] / ph[2], ph[1] / ph[2], 1.0 / ph[2]])

    est, se = wald(nat, phi[0], H[0])
    z = stats.norm.ppf(0.5 + LEVEL / 2)
    res.update(logC=float(est[0]), C=float(np.exp(est[0])), beta=float(est[1]), sigma=float(est[2]),
               loglik=float(ll[0]), beta_wald_lo=float(est[1] - z * se[1]), beta_wald_hi=float(est[1] + z * se[1]),
               logC_wald_lo=float(est[0] - z * se[0]), logC_wald_hi=float(est[0] + z * se[0]))
    # intercept-only model for Cox-Snell pseudo-R^2
    T0 = np.array([[1.0, 0.0], [0.0, 0.0], [0.0, 1.0]])
    _, ll0, c0, _ = newton(f, obs, grp, 1, T0, np.ones((1, x.size)), start(x, y, grp, 1, T0)[None])
    if c0[0]:
        res["pseudo_r2"] = float(1 - np.exp(-2 * (ll[0] - ll0[0]) / x.size))
    res["ks_p"] = _ks_pit(x[obs], y[obs], est, None if first is None else first[obs],
                          None if last is None else last[obs])
    if bootstrap and n_boot > 0 and np.unique(clusters).size >= MIN_CLUSTERS:   # else no interval, not a fake one
        rng = np.random.default_rng(seed)
        W = cluster_weights(grp, clusters, n_boot, rng)
        # a replicate needs 2 observed points at 2 distinct P to identify the slope
        obs_w = W[:, obs]
        xo = x[obs]
        has = obs_w > 0
        nx = np.where(has, xo[None, :], np.nan)
        with np.errstate(all="ignore"):
            ident = (has.sum(1) >= 2) & (np.fmax.reduce(nx, 1) > np.fmin.reduce(nx, 1))
        pb, _, cb, _ = newton(f, obs, grp, 1, T, W, np.repeat(phi, n_boot, 0))
        cb &= ident
        nb = np.stack([pb[:, 0] / pb[:, 2], pb[:, 1] / pb[:, 2], 1.0 / pb[:, 2]], axis=1)
        lo, hi = pct(nb, cb)
        res.update(logC_lo=float(lo[0]), logC_hi=float(hi[0]), beta_lo=float(lo[1]), beta_hi=float(hi[1]),
                   sigma_lo=float(lo[2]), sigma_hi=float(hi[2]), n_boot_ok=int(cb.sum()))
    return res


def _ks_pit(x: np.ndarray, y: np.ndarray, est: np.ndarray, first: np.ndarray | None, last: np.ndarray | None) -> float:
    """KS p-value of observed points' PITs, conditioned on the onset lying in the trial's observed window."""
    if x.size < 3:
        return float("nan")
    mu, sd = est[0] + est[1] * x, est[2]
    lo = stats.norm.cdf((first - mu) / sd) if first is not None else 0.0
    hi = stats.norm.cdf((last - mu) / sd) if last is not None else 1.0
    den = np.maximum(hi - lo, 1e-300)
    u = np.clip((stats.norm.cdf((y - mu) / sd) - lo) / den, 0, 1)
    return float(stats.kstest(u, "uniform").pvalue)


def tobit_fit(logP: np.ndarray, logtau: np.ndarray, censored: np.ndarray, left: np.ndarray | None = None) -> dict[str, float]:
    """Reference Tobit fit with scipy.optimize.minimize on (log C, beta, log sigma); no intervals (a cross-check)."""
    x, y = np.asarray(logP, float), np.asarray(logtau, float)
    kind = _kind(censored, left, "censored")

    def nll(p: np.ndarray) -> float:
        a, b, ls = p
        sd = np.exp(ls)
        mu = a + b * x
        z = (y - mu) / sd
        ll = np.where(kind == 0, stats.norm.logpdf(z) - ls,
                      np.where(kind == 1, special.log_ndtr(-z), special.log_ndtr(z)))
        return -float(ll.sum())

    b0, a0 = np.polyfit(x, y, 1)
    r = optimize.minimize(nll, np.array([a0, b0, 0.0]), method="Nelder-Mead",
                          options=dict(xatol=1e-8, fatol=1e-10, maxiter=20000, maxfev=20000))
    r = optimize.minimize(nll, r.x, method="BFGS")
    return dict(logC=float(r.x[0]), beta=float(r.x[1]), sigma=float(np.exp(r.x[2])), loglik=float(-r.fun),
                success=bool(r.success))


def fit_joint(gidx: np.ndarray, logP: np.ndarray, logtau: np.ndarray, censored: np.ndarray,
              left: np.ndarray | None = None, ref: int = 0, n_boot: int = 200, seed: int = 0,
              left_mode: str = "censored", clusters: np.ndarray | None = None) -> dict[str, Any]:
    """Joint Tobit law over groups: common beta and sigma, one intercept per group (codes ``gidx`` in [0, G)).

    Returns the common ``beta`` (estimate, bootstrap and Wald intervals), per-group ``shift`` = intercept minus the
    ``ref`` group's, with intervals, and the likelihood-ratio test of the common slope against free slopes. Groups
    with no observed point are dropped from the joint fit (their intercept is unbounded) and listed in ``dropped``.
    """
    gidx = np.asarray(gidx, np.int64)
    x, y = np.asarray(logP, float), np.asarray(logtau, float)
    kind = _kind(censored, left, left_mode)
    ok = np.isfinite(x) & np.isfinite(y)
    clusters = np.arange(x.size) if clusters is None else np.asarray(clusters)
    gidx, x, y, kind, clusters = gidx[ok], x[ok], y[ok], kind[ok], clusters[ok]
    G0 = int(gidx.max()) + 1 if gidx.size else 0
    nobs_g = np.bincount(gidx[kind == 0], minlength=G0)
    keep_g = np.flatnonzero(nobs_g > 0)
    nan = float("nan")
    out: dict[str, Any] = dict(status="ok", reason="", beta=nan, beta_lo=nan, beta_hi=nan, beta_wald_lo=nan,
                               beta_wald_hi=nan, sigma=nan, sigma_lo=nan, sigma_hi=nan, loglik=nan, lr_stat=nan,
                               lr_df=0, lr_p=nan, n_boot_ok=0, n_trials=int(x.size), n_obs=int((kind == 0).sum()),
                               n_cens=int((kind == 1).sum()), n_left=int((kind == -1).sum()),
                               dropped=[int(g) for g in range(G0) if nobs_g[g] == 0], shifts={})
    if ref not in keep_g:
        return {**out, "status": "undetermined", "reason": "reference group has no observed point"}
    xo = x[kind == 0]
    if out["n_obs"] < 2 or np.ptp(xo) == 0 or keep_g.size < 1:
        return {**out, "status": "undetermined", "reason": "fewer than 2 observed points at distinct P"}
    remap = -np.ones(G0, np.int64)
    remap[keep_g] = np.arange(keep_g.size)
    m = remap[gidx] >= 0
    g, x, y, kind, clusters = remap[gidx][m], x[m], y[m], kind[m], clusters[m]
    order = np.lexsort((x, g))
    g, x, y, kind, clusters = g[order], x[order], y[order], kind[order], clusters[order]
    G = keep_g.size
    r = int(remap[ref])
    f, obs = design(x, y, kind)
    p = G + 2
    T = np.zeros((3 * G, p))
    for k in range(G):
        T[3 * k, k] = 1.0
        T[3 * k + 1, G] = 1.0
        T[3 * k + 2, G + 1] = 1.0
    phi, ll, conv, H = newton(f, obs, g, G, T, np.ones((1, x.size)), start(x, y, g, G, T)[None])
    if not conv[0]:
        return {**out, "status": "undetermined", "reason": "joint likelihood maximum not found"}

    def nat(ph: np.ndarray) -> np.ndarray:
        a = ph[..., :G] / ph[..., G + 1:G + 2]
        return np.concatenate([(ph[..., G] / ph[..., G + 1])[..., None], (1 / ph[..., G + 1])[..., None],
                               a - a[..., r:r + 1]], axis=-1)

    est, se = wald(nat, phi[0], H[0])
    z = stats.norm.ppf(0.5 + LEVEL / 2)
    out.update(beta=float(est[0]), sigma=float(est[1]), loglik=float(ll[0]),
               beta_wald_lo=float(est[0] - z * se[0]), beta_wald_hi=float(est[0] + z * se[0]))
    # free slopes, common sigma: LR test of the common slope
    if G > 1:
        pf = 2 * G + 1
        Tf = np.zeros((3 * G, pf))
        for k in range(G):
            Tf[3 * k, k] = 1.0
            Tf[3 * k + 1, G + k] = 1.0
            Tf[3 * k + 2, 2 * G] = 1.0
        phi_free = np.r_[phi[0, :G], np.full(G, phi[0, G]), phi[0, G + 1]]
        _, llf, cf, _ = newton(f, obs, g, G, Tf, np.ones((1, x.size)), phi_free[None])
        if cf[0]:
            lr = max(0.0, 2 * float(llf[0] - ll[0]))
            out.update(lr_stat=lr, lr_df=G - 1, lr_p=float(stats.chi2.sf(lr, G - 1)))
    lo = hi = np.full(est.size, np.nan)
    if n_boot > 0 and np.unique(clusters).size >= MIN_CLUSTERS:
        W = cluster_weights(g, clusters, n_boot, np.random.default_rng(seed))
        pb, _, cb, _ = newton(f, obs, g, G, T, W, np.repeat(phi, n_boot, 0))
        # every kept group must keep an observed point in the replicate, else its intercept is unbounded
        nobs_b = np.stack([(W[:, (g == k) & obs]).sum(1) for k in range(G)], axis=1)
        cb &= np.all(nobs_b > 0, axis=1)
        lo, hi = pct(nat(pb), cb)
        out.update(beta_lo=float(lo[0]), beta_hi=float(hi[0]), sigma_lo=float(lo[1]), sigma_hi=float(hi[1]),
                   n_boot_ok=int(cb.sum()))
    for k, g0 in enumerate(keep_g):
        out["shifts"][int(g0)] = dict(shift=float(est[2 + k]), shift_lo=float(lo[2 + k]), shift_hi=float(hi[2 + k]),
                                      shift_wald_lo=float(est[2 + k] - z * se[2 + k]),
                                      shift_wald_hi=float(est[2 + k] + z * se[2 + k]))
    return out


# ----------------------------------------------------------------------------------------------- tables
LAW_COLUMNS = ["scope", "onset", "metric", "theta", "tail", "L", "reference", "status", "reason", "n_trials",
               "n_obs", "n_cens", "n_left", "beta", "beta_lo", "beta_hi", "beta_wald_lo", "beta_wald_hi", "logC",
               "logC_lo", "logC_hi", "logC_wald_lo", "logC_wald_hi", "C", "shift", "shift_lo", "shift_hi",
               "shift_wald_lo", "shift_wald_hi", "sigma", "sigma_lo", "sigma_hi", "loglik", "pseudo_r2", "ks_p",
               "lr_stat", "lr_df", "lr_p", "n_boot_ok", "n_clusters", "ols_beta", "ols_beta_lo", "ols_beta_hi",
               "ols_logC", "ols_r2", "term", "coef", "coef_lo", "coef_hi", "coef_wald_lo", "coef_wald_hi"]
_STR = {"scope", "onset", "metric", "tail", "reference", "status", "reason", "term"}
_INT = {"L", "n_trials", "n_obs", "n_cens", "n_left", "lr_df", "n_boot_ok", "n_clusters"}


def _laws_table(rows: list[dict[str, Any]]) -> pa.Table:
    cols = {}
    for c in LAW_COLUMNS:
        vals = [r.get(c) for r in rows]
        if c in _STR:
            cols[c] = pa.array([None if v is None else str(v) for v in vals], pa.string())
        elif c in _INT:
            cols[c] = pa.array([None if v is None else int(v) for v in vals], pa.int64())
        else:
            cols[c] = pa.array([np.nan if v is None else float(v) for v in vals], pa.float64())
    return pa.table(cols)


def _group_label(tail: str, L: int) -> str:
    return f"{tail} L={L}"


def _reference(groups: list[tuple[str, int]]) -> int:
    uni = [i for i, (t, _) in enumerate(groups) if base_tail(t) == "uniform"]
    if uni:
        return min(uni, key=lambda i: groups[i][1])
    return 0


def _covariate_rows(base: dict[str, Any], covariates: Sequence[str], t: pa.Table, sel: np.ndarray,
                    gcode: np.ndarray, G: int, x: np.ndarray, y: np.ndarray, kind: np.ndarray, n_boot: int,
                    seed: int, clusters: np.ndarray | None = None) -> list[dict[str, Any]]:
    """Rows of the covariate law (``analysis.covariates``): one ``covariate_law`` row, one ``covariate`` per term."""
    missing = [c for c in covariates if c not in t.column_names]
    if missing:
        raise KeyError(f"covariates {missing} are not columns of the onsets table; available: {t.column_names}")
    values = {c: np.asarray(t.column(c).to_pylist(), object)[sel] for c in covariates}
    Z, names, problem = covariate_matrix(values, gcode, G)
    head = {**base, "scope": "covariate_law", "tail": "*", "L": None, "reference": " + ".join(covariates)}
    if problem:
        return [{**head, "status": "undetermined", "reason": problem}]
    r = fit_covariates(gcode, Z, names, x, y, kind, n_boot=n_boot, seed=seed, clusters=clusters)
    terms = r.pop("terms")
    rows = [{**head, **r, "n_clusters": int(np.unique(clusters).size) if clusters is not None else None}]
    rows += [{**base, "scope": "covariate", "tail": "*", "L": None, "reference": head["reference"],
              "status": r["status"], "beta": r["beta"], "sigma": r["sigma"], **term} for term in terms]
    return rows


def fit_laws(onsets_table: pa.Table, theta: float | Sequence[float] | None = 0.5, n_boot: int = 200,
             seed: int = 0, left_mode: str = "censored", joint: bool = True,
             covariates: Sequence[str] = ()) -> pa.Table:
    """Per-(tail, L) Tobit laws plus the joint law, for every (onset, metric) in the table and the given theta(s).

    ``theta=None`` fits every threshold present. One row per fit (``LAW_COLUMNS``): ``scope`` is ``group``,
    ``joint`` (common beta across groups) or ``shift`` (a group's intercept shift in the joint law); with
    ``covariates`` (onsets-table columns, e.g. ``entropy`` and ``entropy_tilt``) also ``covariate_law`` (common beta,
    intercepts linear in the covariates, LR test against free intercepts) and one ``covariate`` row per term.
    """
    need = {"tail", "L", "P", "tau", "censored", "theta"}
    missing = need - set(onsets_table.column_names)
    if missing:
        raise KeyError(f"onsets table lacks columns {sorted(missing)}")
    t = onsets_table
    if theta is not None:
        th = [float(theta)] if np.isscalar(theta) else [float(v) for v in theta]
        t = t.filter(pc.is_in(t.column("theta"), value_set=pa.array(th, pa.float64())))
    cols = t.to_pydict() if t.num_rows < 1 else None
    d = {c: t.column(c).to_numpy(zero_copy_only=False) for c in t.column_names
         if c in ("theta", "tau", "censored", "left_censored", "P", "L", "first_step", "last_step")}
    tails = np.asarray(t.column("tail").to_pylist(), dtype=object) if t.num_rows else np.array([], object)
    onset = np.asarray(t.column("onset").to_pylist(), object) if "onset" in t.column_names else np.full(t.num_rows, "mem", object)
    metric = np.asarray(t.column("metric").to_pylist(), object) if "metric" in t.column_names else np.full(t.num_rows, "", object)
    del cols
    rows: list[dict[str, Any]] = []
    if t.num_rows == 0:
        return _laws_table(rows)
    codes = cluster_codes(t)
    keys = sorted(set(zip(onset, metric, d["theta"].tolist())))
    for k_on, k_me, k_th in keys:
        sel = (onset == k_on) & (metric == k_me) & (d["theta"] == k_th)
        tl, Ls = tails[sel], d["L"][sel].astype(np.int64)
        P = d["P"][sel].astype(float)
        with np.errstate(divide="ignore", invalid="ignore"):
            x, y = np.log(P), np.log(d["tau"][sel].astype(float))
            lf = np.log(d["first_step"][sel].astype(float)) if "first_step" in d else None
            lls = np.log(d["last_step"][sel].astype(float)) if "last_step" in d else None
        cen = d["censored"][sel].astype(bool)
        left = d["left_censored"][sel].astype(bool) if "left_censored" in d else None
        groups = sorted(set(zip(tl.tolist(), Ls.tolist())), key=lambda g: (str(g[0]), g[1]))
        gcode = np.empty(sel.sum(), np.int64)
        base = dict(onset=k_on, metric=k_me, theta=k_th)
        for gi, (gt, gL) in enumerate(groups):
            m = (tl == gt) & (Ls == gL)
            gcode[m] = gi
            r = fit_group(x[m], y[m], cen[m], None if left is None else left[m],
                          None if lf is None else lf[m], None if lls is None else lls[m],
                          n_boot=n_boot, seed=seed + gi, left_mode=left_mode, clusters=codes[sel][m])
            r["n_clusters"] = int(np.unique(codes[sel][m]).size)
            rows.append({**base, "scope": "group", "tail": gt, "L": gL, **r})
        if joint and len(groups) > 1:
            ref = _reference(groups)
            j = fit_joint(gcode, x, y, cen, left, ref=ref, n_boot=n_boot, seed=seed + 10_000, left_mode=left_mode,
                          clusters=codes[sel])
            refl = _group_label(*groups[ref])
            shifts, dropped = j.pop("shifts"), j.pop("dropped")
            rows.append({**base, "scope": "joint", "tail": "*", "L": None, "reference": refl,
                         "n_clusters": int(np.unique(codes[sel]).size), **j})
            for gi, (gt, gL) in enumerate(groups):
                sr = shifts.get(gi)
                if sr is None:
                    why = "no observed point in group" if gi in dropped else j.get("reason", "")
                    rows.append({**base, "scope": "shift", "tail": gt, "L": gL, "reference": refl,
                                 "status": "undetermined", "reason": why})
                else:
                    rows.append({**base, "scope": "shift", "tail": gt, "L": gL, "reference": refl,
                                 "status": j["status"], "beta": j["beta"], "sigma": j["sigma"], **sr})
        if covariates and len(groups) > 1:
            rows += _covariate_rows(base, covariates, t, sel, gcode, len(groups), x, y,
                                    _kind(cen, left, left_mode), n_boot, seed + 20_000, codes[sel])
    return _laws_table(rows)


def fit_store(store_or_uri: Any, sweep: str | None = None, thetas: Sequence[float] = DEFAULT_THETAS,
              metric: str = DEFAULT_MEM_METRIC, n_boot: int = 200, gen_metric: str | None = DEFAULT_GEN_METRIC,
              seed: int = 0, pool_specs: bool = False) -> pa.Table:
    """Onsets from the store, then ``fit_laws`` for every threshold (tau_mem and tau_gen): the laws table. A
    sweep's trials of different effective specs are separate groups unless `pool_specs` (``analysis.specs``)."""
    ons = _onsets(store_or_uri, sweep=sweep, thetas=thetas, metric=metric, gen_metric=gen_metric,
                  pool_specs=pool_specs)
    return fit_laws(ons, theta=None, n_boot=n_boot, seed=seed)


def write_laws(table: pa.Table, out_dir: Any, stem: str = "laws") -> tuple[Any, Any]:
    """Write the laws table as Parquet and CSV into out_dir; returns both paths."""
    from pathlib import Path

    import pyarrow.csv as pcsv
    import pyarrow.parquet as pq

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, out / f"{stem}.parquet")
    pcsv.write_csv(table, out / f"{stem}.csv")
    return out / f"{stem}.parquet", out / f"{stem}.csv"


def _fmt(v: Any, nd: int = 3) -> str:
    if v is None or (isinstance(v, float) and not np.isfinite(v)):
        return "–"
    return f"{v:.{nd}g}" if isinstance(v, float) else str(v)


def _unfitted(rows: list[dict[str, Any]]) -> dict[tuple[str, str], str]:
    """(onset, metric) pairs with no law at any theta, each with a line saying how often the onset was observed."""
    out = {}
    for key in dict.fromkeys((r["onset"], r["metric"]) for r in rows):
        sel = [r for r in rows if (r["onset"], r["metric"]) == key]
        if any(r["status"] == "ok" for r in sel):
            continue
        seen: dict[float, list[int]] = {}
        for r in sel:
            if r["scope"] == "group":
                n = seen.setdefault(r["theta"], [0, 0])
                n[0] += r["n_obs"] or 0
                n[1] += (r["n_obs"] or 0) + (r["n_cens"] or 0)
        counts = ", ".join(f"{o}/{n} at theta {_fmt(t, 2)}" for t, (o, n) in seen.items())
        out[key] = f"{key[0]} onset ({key[1]}): no law at any theta; trials that crossed: {counts or 'none'}"
    return out


def _print_covariates(rows: list[dict[str, Any]], console: Any) -> None:
    """The covariate laws: each term's coefficient (its effect on log tau per unit) with intervals."""
    if not rows:
        return
    from rich.table import Table

    c = Table(title="Covariate law: log tau = c0 + sum_j c_j z_j + beta log P (common beta; LR vs free intercepts)")
    for col in ("onset", "metric", "theta", "term", "coef [95% CI]", "Wald CI", "beta", "obs/cens", "LR p", "note"):
        c.add_column(col)
    for r in rows:
        if r["scope"] == "covariate_law":
            c.add_row(r["onset"], r["metric"], _fmt(r["theta"], 2), f"({r['reference']})", "", "",
                      f"{_fmt(r['beta'])} [{_fmt(r['beta_lo'])}, {_fmt(r['beta_hi'])}]",
                      f"{r['n_obs']}/{r['n_cens']}", _fmt(r["lr_p"], 2), r["reason"] or "")
        else:
            c.add_row("", "", "", r["term"], f"{_fmt(r['coef'])} [{_fmt(r['coef_lo'])}, {_fmt(r['coef_hi'])}]",
                      f"[{_fmt(r['coef_wald_lo'])}, {_fmt(r['coef_wald_hi'])}]", "", "", "", "")
    console.print(c)


def print_laws(table: pa.Table, console: Any = None) -> None:
    """Print the laws as rich tables: one for group fits (with the naive OLS beside), one for the joint law.
    An onset with no law at any threshold (e.g. no generalization at this scale) gets one line, not empty rows."""
    from rich.console import Console
    from rich.table import Table

    console = console or Console()
    rows = table.to_pylist()
    unfitted = _unfitted(rows)
    rows = [r for r in rows if (r["onset"], r["metric"]) not in unfitted]
    g = Table(title="Onset laws per group: log tau = log C + beta log P (Tobit, bootstrap 95% CI)")
    for c in ("onset", "metric", "theta", "tail", "L", "obs/cens", "beta [95% CI]", "Wald CI", "C", "sigma",
              "pseudo R2", "KS p", "OLS beta (obs only)", "note"):
        g.add_column(c)
    for r in rows:
        if r["scope"] != "group":
            continue
        g.add_row(r["onset"], r["metric"], _fmt(r["theta"], 2), r["tail"], str(r["L"]),
                  f"{r['n_obs']}/{r['n_cens']}" + (f"+{r['n_left']}L" if r["n_left"] else ""),
                  f"{_fmt(r['beta'])} [{_fmt(r['beta_lo'])}, {_fmt(r['beta_hi'])}]",
                  f"[{_fmt(r['beta_wald_lo'])}, {_fmt(r['beta_wald_hi'])}]", _fmt(r["C"]), _fmt(r["sigma"]),
                  _fmt(r["pseudo_r2"], 2), _fmt(r["ks_p"], 2),
                  f"{_fmt(r['ols_beta'])} [{_fmt(r['ols_beta_lo'])}, {_fmt(r['ols_beta_hi'])}]", r["reason"] or "")
    if g.row_count:
        console.print(g)
    for line in unfitted.values():
        console.print(line, highlight=False, soft_wrap=True)
    _print_covariates([r for r in rows if r["scope"] in ("covariate_law", "covariate")], console)
    jr = [r for r in rows if r["scope"] in ("joint", "shift")]
    if not jr:
        return
    j = Table(title="Joint law: common beta, per-group intercept shift vs reference (exp(shift) = delay factor)")
    for c in ("onset", "metric", "theta", "group", "beta / shift [95% CI]", "Wald CI", "obs/cens", "slope LR test p",
              "note"):
        j.add_column(c)
    for r in jr:
        if r["scope"] == "joint":
            j.add_row(r["onset"], r["metric"], _fmt(r["theta"], 2), f"common beta (ref {r['reference']})",
                      f"{_fmt(r['beta'])} [{_fmt(r['beta_lo'])}, {_fmt(r['beta_hi'])}]",
                      f"[{_fmt(r['beta_wald_lo'])}, {_fmt(r['beta_wald_hi'])}]", f"{r['n_obs']}/{r['n_cens']}",
                      _fmt(r["lr_p"], 2), r["reason"] or "")
        else:
            j.add_row("", "", "", f"  {r['tail']} L={r['L']}",
                      f"{_fmt(r['shift'])} [{_fmt(r['shift_lo'])}, {_fmt(r['shift_hi'])}]",
                      f"[{_fmt(r['shift_wald_lo'])}, {_fmt(r['shift_wald_hi'])}]", "", "", r["reason"] or "")
    console.print(j)
