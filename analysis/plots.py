"""Figures (matplotlib, Agg backend): curves, onset laws, phase diagram, memorization order, slop.

Every function takes pyarrow tables (the analysis layer's outputs) and returns a ``Figure``; ``save`` writes it as
PNG and SVG. Nothing here reads the store.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pyarrow as pa  # noqa: E402
import pyarrow.compute as pc  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from analysis.registry import DEFAULT_MEM_METRIC  # noqa: E402


def save(fig: Figure, out_dir: Path | str, name: str, dpi: int = 110) -> dict[str, Path]:
    """Write ``name.png`` and ``name.svg`` into out_dir; returns both paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"png": out / f"{name}.png", "svg": out / f"{name}.svg"}
    fig.savefig(paths["png"], dpi=dpi, bbox_inches="tight")      # tight: titles, colorbars and labels never clip
    fig.savefig(paths["svg"], bbox_inches="tight")
    plt.close(fig)
    return paths


def _empty(title: str, why: str) -> Figure:
    fig, ax = plt.subplots(figsize=(5, 3))
    ax.text(0.5, 0.5, why, ha="center", va="center", wrap=True)
    ax.set_axis_off()
    ax.set_title(title)
    return fig


def _groups(t: pa.Table) -> list[tuple[str, int]]:
    if t.num_rows == 0:
        return []
    g = t.select(["tail", "L"]).group_by(["tail", "L"]).aggregate([]).to_pylist()
    return sorted(((r["tail"], int(r["L"])) for r in g), key=lambda x: (str(x[0]), x[1]))


def _grid(n: int, w: float = 4.0, h: float = 3.0) -> tuple[Figure, np.ndarray]:
    cols = min(n, 3)
    rows = int(np.ceil(n / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(w * cols, h * rows), squeeze=False)
    for ax in axes.ravel()[n:]:
        ax.set_axis_off()
    return fig, axes.ravel()


def _p_axis(ax: Any, Ps: Any, label: str = "training-set size P") -> None:
    """A log x axis ticked at the real P values (no minor ticks, plain integers)."""
    from matplotlib.ticker import FixedLocator, NullLocator, ScalarFormatter

    Ps = sorted({int(p) for p in Ps})
    ax.set_xscale("log")
    ax.xaxis.set_major_locator(FixedLocator(Ps))
    ax.xaxis.set_minor_locator(NullLocator())
    fmt = ScalarFormatter()
    fmt.set_scientific(False)
    ax.xaxis.set_major_formatter(fmt)
    ax.set_xlabel(label)


def _mask(t: pa.Table, tail: str, L: int) -> pa.Table:
    return t.filter(pc.and_(pc.equal(t.column("tail"), tail), pc.equal(t.column("L"), L)))


def plot_curves(curves: pa.Table, trials: pa.Table, metric: str = DEFAULT_MEM_METRIC, max_groups: int = 12) -> Figure:
    """Metric against step (log x) per (tail, L) group; one line per P: mean over seeds with a +-1 sd band."""
    if curves.num_rows == 0 or metric not in curves.column_names:
        return _empty("memorization curves", f"no {metric} curves")
    t = curves.select(["trial_id", "step", metric]).join(trials.select(["trial_id", "tail", "L", "P"]), "trial_id")
    agg = t.group_by(["tail", "L", "P", "step"]).aggregate([(metric, "mean"), (metric, "stddev")])
    groups = _groups(agg)[:max_groups]
    fig, axes = _grid(len(groups))
    for ax, (tail, L) in zip(axes, groups):
        g = _mask(agg, tail, L).sort_by([("P", "ascending"), ("step", "ascending")])
        P = g.column("P").to_numpy()
        s = g.column("step").to_numpy().astype(float)
        m = g.column(f"{metric}_mean").to_numpy(zero_copy_only=False)
        sd = np.nan_to_num(g.column(f"{metric}_stddev").to_numpy(zero_copy_only=False))
        ps = np.unique(P)
        cmap = plt.get_cmap("viridis", max(len(ps), 2))
        for k, p in enumerate(ps):
            w = P == p
            ax.plot(s[w], m[w], color=cmap(k), lw=1.3, label=f"P={p}")
            ax.fill_between(s[w], m[w] - sd[w], m[w] + sd[w], color=cmap(k), alpha=0.2, lw=0)
        ax.set_xscale("log")
        ax.set_title(f"{tail}, L={L}", fontsize=9)
        ax.set_xlabel("training steps")
        ax.set_ylabel(metric)
        ax.legend(fontsize=6, loc="upper left")
    fig.suptitle(f"{metric} against training step (mean and +-1 sd band over seeds)")
    fig.tight_layout()
    return fig


def plot_onsets(onsets_table: pa.Table, laws: pa.Table | None, theta: float = 0.5, onset: str = "mem") -> Figure:
    """tau against P in log-log per group: observed (filled), right-censored (open, up-arrow), Tobit law (solid,
    legend with bootstrap 95% CI of beta) and the naive OLS on observed points only (dashed)."""
    t = onsets_table.filter(pc.and_(pc.equal(onsets_table.column("theta"), theta),
                                    pc.equal(onsets_table.column("onset"), onset)))
    if t.num_rows == 0:
        return _empty(f"tau_{onset} against P", f"no {onset} onsets at theta={theta}")
    groups = _groups(t)
    fig, ax = plt.subplots(figsize=(7, 5))
    cmap = plt.get_cmap("tab10")
    lrows = laws.to_pylist() if laws is not None else []
    rng = np.random.default_rng(0)
    for k, (tail, L) in enumerate(groups):
        g = _mask(t, tail, L)
        P = g.column("P").to_numpy().astype(float)
        tau = g.column("tau").to_numpy(zero_copy_only=False).astype(float)
        cen = g.column("censored").to_numpy(zero_copy_only=False).astype(bool)
        jit = P * np.exp(0.04 * rng.standard_normal(P.size))
        col = cmap(k % 10)
        ax.scatter(jit[~cen], tau[~cen], s=12, color=col, alpha=0.7)
        if cen.any():
            ax.scatter(jit[cen], tau[cen], s=28, marker="^", facecolors="none", edgecolors=col, alpha=0.8)
        law = next((r for r in lrows if r["scope"] == "group" and r["onset"] == onset and r["theta"] == theta
                    and r["tail"] == tail and r["L"] == L), None)
        label = f"{tail} L={L}"
        if law and law["status"] == "ok":
            xs = np.geomspace(P.min(), P.max(), 50)
            ax.plot(xs, np.exp(law["logC"]) * xs ** law["beta"], color=col, lw=1.6,
                    label=f"{label}: beta={law['beta']:.2f} [{law['beta_lo']:.2f}, {law['beta_hi']:.2f}]"
                          f" ({law['n_obs']} obs/{law['n_cens']} cens)")
            if np.isfinite(law["ols_beta"]):
                ax.plot(xs, np.exp(law["ols_logC"]) * xs ** law["ols_beta"], color=col, lw=1, ls="--")
        else:
            ax.plot([], [], color=col, label=f"{label}: undetermined")
    ax.set_yscale("log")
    _p_axis(ax, t.column("P").to_pylist())
    ax.set_ylabel(f"tau_{onset} at theta={theta} (training steps)")
    ax.set_title(f"onset tau_{onset} against P: Tobit law (solid), naive OLS on observed (dashed), "
                 "censored = open triangles", fontsize=8)
    ax.legend(fontsize=6, loc="upper left")
    fig.tight_layout()
    return fig


def plot_phase(onsets_table: pa.Table, theta: float = 0.5, onset: str = "mem") -> Figure:
    """Phase diagram per depth L: tail x P, color = fraction of trials that reached theta within their budget,
    annotated with the median tau over trials (">" when more than half are censored)."""
    t = onsets_table.filter(pc.and_(pc.equal(onsets_table.column("theta"), theta),
                                    pc.equal(onsets_table.column("onset"), onset)))
    if t.num_rows == 0:
        return _empty("phase diagram", f"no {onset} onsets at theta={theta}")
    Ls = sorted(set(t.column("L").to_pylist()))
    tails = sorted(set(t.column("tail").to_pylist()), key=str)
    Ps = sorted(set(t.column("P").to_pylist()))
    fig, axes = plt.subplots(1, len(Ls), figsize=(max(4, 0.9 * len(Ps) + 2) * len(Ls), 0.6 * len(tails) + 2.4),
                             squeeze=False, layout="constrained")   # room for the suptitle and the colorbar
    tl = np.asarray(t.column("tail").to_pylist(), object)
    Lv = t.column("L").to_numpy()
    Pv = t.column("P").to_numpy()
    tau = t.column("tau").to_numpy(zero_copy_only=False).astype(float)
    cen = t.column("censored").to_numpy(zero_copy_only=False).astype(bool)
    im = None
    for ax, L in zip(axes[0], Ls):
        frac = np.full((len(tails), len(Ps)), np.nan)
        for i, tn in enumerate(tails):
            for j, P in enumerate(Ps):
                m = (tl == tn) & (Lv == L) & (Pv == P)
                if not m.any():
                    continue
                frac[i, j] = 1 - cen[m].mean()
                med = np.median(tau[m])
                txt = (">" if cen[m].mean() >= 0.5 else "") + f"{med:.3g}"
                ax.text(j, i, txt, ha="center", va="center", fontsize=6,
                        color="white" if frac[i, j] < 0.5 else "black")
        im = ax.imshow(frac, vmin=0, vmax=1, cmap="magma", aspect="auto", origin="lower")
        ax.set_xticks(range(len(Ps)), [str(p) for p in Ps], fontsize=7, rotation=45)
        ax.set_yticks(range(len(tails)), tails, fontsize=7)
        ax.set_xlabel("P")
        ax.set_title(f"L={L}", fontsize=9)
    if im is not None:
        fig.colorbar(im, ax=list(axes[0]), label=f"fraction memorized (theta={theta}) within budget")
    fig.suptitle(f"phase diagram: fraction reaching theta={theta}; text = median tau_{onset}", fontsize=9)
    return fig


def plot_memorder(order: pa.Table, frac: pa.Table, trials: pa.Table) -> Figure:
    """Memorization order beside its null. Left: rho(prototypicality, first copy) per trial against P (filled, with
    its bootstrap 95% CI), the volume-matched null (open black: mean and 95% range; the headline null) and the
    grammar-faithful one (open grey). Middle: observed minus each null (volume-matched, grammar-faithful,
    empirical-grammar) for rho_proto, and minus the volume-matched null for the partial correlation. Right: fraction
    of samples copied over training, per prototypicality quartile."""
    if order.num_rows == 0:
        return _empty("memorization order", "no samples/copies tables in the store")
    fig, (a1, a2, a3) = plt.subplots(1, 3, figsize=(15, 4.2))
    groups = _groups(order)
    cmap = plt.get_cmap("tab10")
    col = lambda name: order.column(name).to_numpy(zero_copy_only=False).astype(float)  # noqa: E731
    P = col("P")
    for k, (tail, L) in enumerate(groups):
        m = np.array([t == tail and l == L for t, l in zip(order.column("tail").to_pylist(),
                                                          order.column("L").to_pylist())])
        x = P[m] * np.exp(0.04 * (k - len(groups) / 2))
        r, lo, hi = col("rho_proto")[m], col("rho_proto_lo")[m], col("rho_proto_hi")[m]
        a1.errorbar(x, r, yerr=[np.nan_to_num(r - lo), np.nan_to_num(hi - r)], fmt="o", ms=3, color=cmap(k % 10),
                    label=f"{tail} L={L}", capsize=2, lw=0.8)
        for shift, infix, color in ((1.06, "_vol", "black"), (1.12, "", "grey")):
            if f"rho_proto{infix}_null" not in order.column_names:
                continue
            nl, nlo, nhi = (col(f"rho_proto{infix}_null{part}")[m] for part in ("", "_lo", "_hi"))
            a1.errorbar(x * shift, nl, yerr=[np.nan_to_num(nl - nlo), np.nan_to_num(nhi - nl)], fmt="o", ms=3,
                        mfc="none", color=color, capsize=2, lw=0.6)
    a1.plot([], [], "o", mfc="none", color="black", label="null (volume-matched)")
    a1.plot([], [], "o", mfc="none", color="grey", label="null (grammar-faithful)")
    a1.axhline(0, color="grey", lw=0.8)
    _p_axis(a1, P)
    a1.set_ylabel("Spearman rho(proto, first copy)")
    a1.set_title("observed (filled) beside its null (open); < 0: prototypical copied first", fontsize=8)
    a1.legend(fontsize=6)
    for j, (name, label) in enumerate((("rho_proto_vol", "rho(proto, first copy) - volume-matched"),
                                       ("rho_proto", "rho(proto, first copy) - grammar-faithful"),
                                       ("rho_proto_emp", "rho(proto, first copy) - empirical-grammar"),
                                       ("partial_proto_vol", "partial rho | log-lik. - volume-matched"))):
        if f"{name}_excess" not in order.column_names:
            continue
        e = col(f"{name}_excess")
        a2.scatter(P * np.exp(0.05 * (j - 1)), e, s=10, label=label, alpha=0.8)
    a2.axhline(0, color="grey", lw=0.8)
    _p_axis(a2, P)
    a2.set_ylabel("observed - null mean")
    a2.set_title("excess over each null per trial (0 = what that null gives)", fontsize=8)
    a2.legend(fontsize=6)
    if frac.num_rows:
        f = frac.group_by(["quantile", "step"]).aggregate([("frac", "mean")]).sort_by(
            [("quantile", "ascending"), ("step", "ascending")])
        q = f.column("quantile").to_numpy()
        s = f.column("step").to_numpy().astype(float)
        v = f.column("frac_mean").to_numpy()
        nq = int(q.max()) + 1
        cm = plt.get_cmap("coolwarm", max(nq, 2))
        for k in range(nq):
            w = q == k
            a3.plot(s[w], v[w], color=cm(k), label=f"proto quantile {k + 1}/{nq}" + (" (most)" if k == nq - 1 else ""))
        a3.set_xscale("log")
        a3.set_xlabel("training steps")
        a3.set_ylabel("fraction of samples copied")
        a3.set_title("copied fraction by prototypicality quartile (mean over trials; raw copies)", fontsize=8)
        a3.legend(fontsize=6)
    fig.tight_layout()
    return fig


def plot_slop(slop_table: pa.Table, max_groups: int = 6) -> Figure:
    """Over-production of common productions in the non-copy strings per level against step (mean over a group's
    trials; "all" = node-weighted over levels), with the window [median tau_gen, median tau_mem] shaded. The null,
    a grammar-faithful generator, is 0."""
    if slop_table.num_rows == 0:
        return _empty("slop", "no level_curves table in the store")
    if "tail" not in slop_table.column_names:
        return _empty("slop", "slop table lacks group columns")
    t = slop_table.filter(pc.is_finite(slop_table.column("overprod")))
    groups = _groups(t)[:max_groups]
    if not groups:
        return _empty("slop", "no non-copy strings with parsed nodes were generated")
    fig, axes = _grid(len(groups))
    for ax, (tail, L) in zip(axes, groups):
        g = _mask(t, tail, L)
        agg = g.group_by(["level", "step"]).aggregate([("overprod", "mean")]).sort_by(
            [("level", "ascending"), ("step", "ascending")])
        lv = agg.column("level").to_numpy()
        s = agg.column("step").to_numpy().astype(float)
        v = agg.column("overprod_mean").to_numpy(zero_copy_only=False)
        cm = plt.get_cmap("plasma", max(int(lv.max()) + 2, 2))
        for l in np.unique(lv):
            w = lv == l
            style = dict(color="black", lw=1.8, label="all levels") if l < 0 else dict(color=cm(int(l)), lw=1,
                                                                                       label=f"level {l}")
            ax.plot(s[w], v[w], **style)
        if "tau_gen" in g.column_names and "tau_mem" in g.column_names:
            tg = np.nanmedian(np.asarray(g.column("tau_gen").to_pylist(), float))
            tm = np.nanmedian(np.asarray(g.column("tau_mem").to_pylist(), float))
            if np.isfinite(tg) and np.isfinite(tm) and tm > tg:
                ax.axvspan(tg, tm, color="orange", alpha=0.2, label="tau_gen..tau_mem")
        ax.axhline(0.0, color="grey", lw=0.7)
        ax.set_xscale("log")
        ax.set_xlabel("training steps")
        ax.set_ylabel("overprod (non-copies)")
        ax.set_title(f"{tail}, L={L}", fontsize=9)
        ax.legend(fontsize=6)
    fig.suptitle("slop: over-production of common productions in non-copy generations (0 = a grammar-faithful "
                 "generator, above = over-produced)", fontsize=9)
    fig.tight_layout()
    return fig


REGIME_ORDER = ("memorize-only", "generalize-then-memorize")


def _regime_axes(regimes: list[str], title: str) -> tuple[Figure, dict[str, Any]]:
    names = [r for r in REGIME_ORDER if r in regimes] + sorted(set(regimes) - set(REGIME_ORDER))
    fig, axes = _grid(len(names))
    for ax, name in zip(axes, names):
        ax.set_title(f"{title}: {name}", fontsize=9)
    return fig, dict(zip(names, axes))


def plot_overest(curves: Any) -> Figure:
    """Overestimation along training at the highest noise level, one panel per regime: per P, the mean over trials
    of overest_train (solid) and overest_heldout (dashed, the null). `curves`: pandas rows of
    analysis.overest.overest_curves with `P` and `regime` columns."""
    if curves is None or len(curves) == 0:
        return _empty("overestimation", "no overestimation rows")
    top = curves[curves.t == curves.groupby("trial_id").t.transform("max")]
    fig, axes = _regime_axes(sorted(top.regime.unique()), "o(x, t_max)")
    cmap = plt.get_cmap("viridis")
    Ps = sorted(top.P.unique())
    for name, ax in axes.items():
        g = top[top.regime == name].groupby(["P", "step"])[["overest_train", "overest_heldout"]].mean().reset_index()
        for i, P in enumerate(Ps):
            c = cmap(i / max(len(Ps) - 1, 1))
            one = g[g.P == P]
            if len(one):
                ax.plot(one.step, one.overest_train, color=c, label=f"P={P}")
                ax.plot(one.step, one.overest_heldout, color=c, ls="--")
        ax.axhline(0.0, color="k", lw=0.5)
        ax.set_xscale("log")
        ax.set_xlabel("training step")
        ax.set_ylabel("o: model - grammar log p (nats)")
        ax.legend(fontsize=7, title="solid: training, dashed: held-out", title_fontsize=7)
    return fig


def plot_overest_auc(by_lead: dict[str, Any]) -> Figure:
    """AUC for the training strings copied later against the lead time (later step / earlier step), one panel per
    regime: early overestimation beside the reference-free loss and prototypicality; 0.5 is chance."""
    from analysis.overest_predict import SCORES

    rows = {k: v for k, v in by_lead.items() if v is not None and len(v)}
    if not rows:
        return _empty("overestimation AUC", "no (early, later) evaluation pair with copied and uncopied strings")
    fig, axes = _regime_axes(sorted(rows), "AUC vs lead")
    for name, ax in axes.items():
        t = rows[name]
        for key, label in SCORES.items():
            ax.plot(t.lead_bin, t[f"auc_{key}"], marker="o", label=label)
        ax.axhline(0.5, color="k", lw=0.5, ls=":")
        ax.set_xscale("log")
        ax.set_ylim(0, 1)
        ax.set_xlabel("lead time (later step / earlier step)")
        ax.set_ylabel("AUC (copied later)")
        ax.legend(fontsize=7)
    return fig
