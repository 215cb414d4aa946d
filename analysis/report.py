"""One self-contained HTML report: every figure embedded (base64 PNG; SVG files beside it), the laws table, a short
text of what each figure shows, and the command that made it."""
from __future__ import annotations

import base64
import html
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv

from analysis import fits, memorder, onset, plots, slop
from analysis.registry import DEFAULT_GEN_METRIC, DEFAULT_MEM_METRIC

FIGURES: dict[str, str] = {
    "curves": "Memorization curves: the memorization metric against training step (log scale), one panel per "
              "(tail, depth L) group and one line per training-set size P, mean over seeds with a +-1 sd band.",
    "onsets": "Onset tau_mem against P (log-log) per group at theta=0.5. Filled points are observed onsets, open "
              "triangles right-censored trials (drawn at their last step; the onset is later). Solid lines: the "
              "censoring-aware (Tobit) law tau = C P^beta, legend with the bootstrap 95% interval of beta; dashed: "
              "naive OLS on observed points only, for comparison.",
    "onsets_gen": "Generalization onset tau_gen (first step at which novel valid samples reach theta=0.5) against P, "
                  "same conventions. The science expects beta_gen close to 0.",
    "phase": "Phase diagram per depth: tail x P, color = fraction of trials that reached theta=0.5 within their "
             "training budget; the text is the median tau_mem ('>' when more than half are censored).",
    "memorder": "Memorization order: per trial, Spearman rho between a training sample's prototypicality and the "
                "step at which it is first copied (never-copied samples tied above all copied ones; bootstrap 95% "
                "CI), against P; and the fraction of samples copied over training time per prototypicality quartile.",
    "slop": "Slop: over-production of common productions per level against training step (`overprod`: 0 = faithful "
            "to the training frequencies, > 0 = common productions over-produced), with the partial-memorization window between the median tau_gen and tau_mem "
            "shaded.",
}

STATS_TEXT = (
    "Onsets: first evaluation at which the metric reaches theta, log-step interpolated linearly in the metric "
    "between the two evaluations around the crossing; trials never reaching theta are right-censored at their last "
    "step, trials already above theta at the first evaluation are left-censored. Laws: Tobit maximum likelihood of "
    "log tau = log C + beta log P + sigma eps (observed: density; censored: survival), percentile 95% bootstrap over "
    "trials within each group, Wald interval from the Hessian. Joint law: common beta and sigma, one intercept per "
    "(tail, L); 'shift' = log C_g - log C_ref (exp(shift) is the onset delay factor at equal P); LR test of a common "
    "slope. Goodness of fit: sigma, log-likelihood, Cox-Snell pseudo-R2 against the intercept-only fit, and the KS "
    "p-value of observed points' probability integral transforms. OLS columns: naive fit of observed points only."
)


def _read(st: Any, table: str, sweep: str | None, columns: Sequence[str] | None = None) -> pa.Table | None:
    try:
        return st.read(table, sweep=sweep, columns=list(columns) if columns else None)
    except Exception:  # a table the sweep never wrote (e.g. no parts) is not an error for the report
        return None


def read_tables(store_or_uri: Any, sweep: str | None = None, metric: str = DEFAULT_MEM_METRIC,
                gen_metric: str = DEFAULT_GEN_METRIC) -> dict[str, pa.Table]:
    """The store tables the report needs (only the columns it uses)."""
    st = onset._open_store(store_or_uri)
    out = {"trials": st.read("trials", sweep=sweep),
           "curves": st.read("curves", sweep=sweep, columns=["trial_id", "step", metric, gen_metric])}
    for name, cols in (("level_curves", ["trial_id", "step", "level", "overprod"]),
                       ("copies", ["trial_id", "step", "train_index", "count"]),
                       ("samples", ["trial_id", "train_index", "proto", "loglik"]),
                       ("parts", None)):
        t = _read(st, name, sweep, cols)
        if t is not None and t.num_rows:
            out[name] = t
    return out


def _table_html(table: pa.Table, cols: Sequence[str]) -> str:
    """An HTML table of `cols` (floats to 4 significant digits, NaN as blank)."""
    head = "".join(f"<th>{c}</th>" for c in cols)
    body = []
    for r in table.to_pylist():
        cells = []
        for c in cols:
            v = r.get(c)
            if isinstance(v, float):
                v = "" if not np.isfinite(v) else f"{v:.4g}"
            cells.append(f"<td>{html.escape('' if v is None else str(v))}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table class='laws'><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _order_html(pooled: pa.Table | None) -> str:
    """The pooled memorization-order table (mean rho over trials per group), or nothing without copies."""
    if pooled is None:
        return ""
    cols = ["tail", "L", "n_proto", "rho_proto_mean", "rho_proto_lo", "rho_proto_hi", "frac_proto_negative",
            "rho_loglik_mean", "rho_loglik_lo", "rho_loglik_hi", "frac_loglik_negative"]
    return ("<h2>Memorization order, pooled</h2><p>Mean over trials of Spearman rho(prototypicality, first-copy "
            "step) and rho(log-likelihood, first-copy step), bootstrap 95% interval over trials; rho &lt; 0 means "
            "prototypical / likely samples are copied first. Also in <a href='memorder.csv'>memorder.csv</a> "
            "(per trial: memorder_trials.csv).</p>" + _table_html(pooled, cols))


def _slop_html(pooled: pa.Table) -> str:
    """The pooled slop table (overprod before vs after tau_mem per level), or nothing without level curves."""
    if pooled.num_rows == 0:
        return ""
    cols = ["tail", "L", "level", "n_before", "overprod_before", "overprod_before_lo", "overprod_before_hi",
            "frac_overproduce_before", "n_after", "overprod_after", "overprod_after_lo", "overprod_after_hi"]
    return ("<h2>Slop, pooled</h2><p>Mean over trials of each trial's mean overprod (0 = faithful to the training "
            "frequencies, &gt; 0 = common productions over-produced) before tau_mem (from tau_gen when it was "
            "observed) and after it; bootstrap 95% interval over trials. Also in <a href='slop.csv'>slop.csv</a>."
            "</p>" + _table_html(pooled, cols))


def _laws_html(laws: pa.Table) -> str:
    cols = ["scope", "onset", "theta", "tail", "L", "status", "n_obs", "n_cens", "n_left", "beta", "beta_lo",
            "beta_hi", "beta_wald_lo", "beta_wald_hi", "C", "shift", "shift_lo", "shift_hi", "sigma", "pseudo_r2",
            "ks_p", "lr_p", "ols_beta", "ols_beta_lo", "ols_beta_hi", "reason"]
    return _table_html(laws, cols)


def write_report_from_tables(tables: dict[str, pa.Table], out_dir: Path | str, laws: pa.Table | None = None,
                             thetas: Sequence[float] = onset.DEFAULT_THETAS, metric: str = DEFAULT_MEM_METRIC,
                             gen_metric: str = DEFAULT_GEN_METRIC, n_boot: int = 200, command: str = "",
                             title: str = "memsweep report") -> Path:
    """Figures (PNG + SVG), laws (Parquet + CSV) and index.html from in-memory store tables."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    trials, curves = tables["trials"], tables["curves"]
    pooled = None
    ons = onset.onsets_from_tables(trials, curves, thetas, metric, gen_metric)
    if laws is None:
        laws = fits.fit_laws(ons, theta=None, n_boot=n_boot)
    fits.write_laws(laws, out)
    th = 0.5 if 0.5 in thetas else float(thetas[0])
    figs: dict[str, Any] = {}
    figs["curves"] = plots.plot_curves(curves, trials, metric)
    figs["onsets"] = plots.plot_onsets(ons, laws, th, "mem")
    figs["onsets_gen"] = plots.plot_onsets(ons, laws, th, "gen")
    figs["phase"] = plots.plot_phase(ons, th, "mem")
    if "samples" in tables and "copies" in tables:
        last = curves.group_by("trial_id").aggregate([("step", "max")]).rename_columns(["trial_id", "last_step"])
        first = onset.first_copy_from_tables(tables["copies"], tables["samples"], last)
        ids = tables["samples"].column("trial_id").unique()
        steps = curves.select(["trial_id", "step"]).filter(pa.compute.is_in(curves.column("trial_id"), value_set=ids))
        order = memorder.order_from_tables(first, tables["samples"], trials, n_boot=n_boot)
        frac = memorder.fraction_by_quantile(first, tables["samples"], steps)
        figs["memorder"] = plots.plot_memorder(order, frac, trials)
        pooled = memorder.pool_order(order, seed=0)
        pacsv.write_csv(order, out / "memorder_trials.csv")
        pacsv.write_csv(pooled, out / "memorder.csv")
    else:
        figs["memorder"] = plots._empty("memorization order", "no samples/copies tables in the store")
    win = slop.windows_from_onsets(ons, th)
    st = slop.slop_from_tables(tables.get("level_curves"), tables.get("parts"), trials, win)
    figs["slop"] = plots.plot_slop(st)
    slop_pooled = slop.pool_slop(st)
    if slop_pooled.num_rows:
        pacsv.write_csv(slop_pooled, out / "slop.csv")
    sections = []
    for name, fig in figs.items():
        paths = plots.save(fig, out, name)
        b64 = base64.b64encode(paths["png"].read_bytes()).decode("ascii")
        sections.append(
            f"<section id='fig-{name}'><h2>{html.escape(name)}</h2>"
            f"<p>{html.escape(FIGURES[name])}</p>"
            f"<img alt='{html.escape(name)}' src='data:image/png;base64,{b64}'/>"
            f"<p class='small'>Files: <a href='{name}.png'>{name}.png</a>, <a href='{name}.svg'>{name}.svg</a></p>"
            "</section>")
    n_tr = trials.num_rows
    stat = {}
    if "status" in trials.column_names:
        for s in trials.column("status").to_pylist():
            stat[s] = stat.get(s, 0) + 1
    page = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>body{{font-family:sans-serif;max-width:1200px;margin:2em auto;}} img{{max-width:100%;}}
table.laws{{border-collapse:collapse;font-size:11px}} table.laws td,table.laws th{{border:1px solid #ccc;padding:2px 4px}}
.small{{font-size:11px;color:#555}} pre{{background:#f4f4f4;padding:.5em}}</style></head><body>
<h1>{html.escape(title)}</h1>
<p>{n_tr} trials ({html.escape(', '.join(f'{k}: {v}' for k, v in sorted(stat.items(), key=lambda kv: str(kv[0]))))});
memorization metric <code>{html.escape(metric)}</code>, generalization metric <code>{html.escape(gen_metric)}</code>,
thresholds {html.escape(', '.join(str(t) for t in thetas))}. Generated {time.strftime('%Y-%m-%d %H:%M:%S')}.</p>
<p>Made by: <code>{html.escape(command or 'analysis.report.write_report')}</code></p>
<h2>Method</h2><p>{html.escape(STATS_TEXT)}</p>
{''.join(sections)}
<h2>Laws</h2><p>Also in <a href="laws.csv">laws.csv</a> and laws.parquet.</p>
{_laws_html(laws)}
{_order_html(pooled)}
{_slop_html(slop_pooled)}
</body></html>
"""
    index = out / "index.html"
    index.write_text(page, encoding="utf-8")
    return index


def write_report(store_or_uri: Any, out_dir: Path | str, sweep: str | None = None,
                 thetas: Sequence[float] = onset.DEFAULT_THETAS, metric: str = DEFAULT_MEM_METRIC,
                 gen_metric: str = DEFAULT_GEN_METRIC, n_boot: int = 200) -> Path:
    """Read the store and write the report into out_dir; returns the path of index.html."""
    tables = read_tables(store_or_uri, sweep, metric, gen_metric)
    uri = getattr(store_or_uri, "uri", store_or_uri)
    cmd = f"memsweep report {uri} --out {out_dir}" + (f" --sweep {sweep}" if sweep else "")
    return write_report_from_tables(tables, out_dir, thetas=thetas, metric=metric, gen_metric=gen_metric,
                                    n_boot=n_boot, command=cmd, title=f"memsweep report: {sweep or 'all sweeps'}")
