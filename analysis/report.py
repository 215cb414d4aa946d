"""One self-contained HTML report: the answers at a glance (headline), every figure embedded (base64 PNG; SVG files
beside it), the laws a reader needs (all of them in laws.csv), memorization order and slop beside their nulls, the
store fragments that were skipped, and the command that made it."""
from __future__ import annotations

import base64
import html
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from analysis import fits, flags as flagmod, headline, memorder, onset, plots, slop
from analysis.registry import DEFAULT_GEN_METRIC, DEFAULT_MEM_METRIC, metric as metric_info

FIGURES: dict[str, str] = {
    "curves": "Memorization curves: the memorization metric against training steps (log scale), one panel per "
              "(tail, depth L) group and one line per training-set size P, mean over seeds with a +-1 sd band.",
    "curves_gen": "Generalization curves: the generalization metric (by default gen_share, the share of "
                  "generations that are valid, novel strings over a perfect generalizer's 1 - p(T)) against "
                  "training steps, laid out as the memorization curves; where it rises before the memorization "
                  "metric, the model generalizes first.",
    "onsets": "Onset tau_mem against P (log-log) per group at theta=0.5. Filled points are observed onsets, open "
              "triangles right-censored trials (drawn at their last step; the onset is later). Solid lines: the "
              "censoring-aware (Tobit) law tau = C P^beta, legend with the bootstrap 95% interval of beta; dashed: "
              "naive OLS on observed points only, for comparison.",
    "onsets_gen": "Generalization onset tau_gen (the generalization metric, gen_share by default, at theta=0.5) "
                  "against P, same conventions. The science expects beta_gen close to 0.",
    "phase": "Phase diagram per depth: tail x P, color = fraction of trials that reached theta=0.5 within their "
             "training budget; the text is the median tau_mem ('>' when more than half are censored).",
    "memorder": "Memorization order beside its null. Left: per trial, Spearman rho between a training sample's "
                "prototypicality and the evaluation at which it is first copied (filled, bootstrap 95% CI over its "
                "samples), next to the volume-matched null (open black: the trial's own copies per evaluation drawn "
                "from its training set by p(x); the headline null) and a grammar-faithful generator with the "
                "trial's own N, schedule and training set (open grey), each as mean and 95% range. Middle: observed "
                "minus each null (volume-matched, grammar-faithful, empirical-grammar) for that rho, and minus the "
                "volume-matched null for the partial rho controlling for log-likelihood. Right: raw fraction copied "
                "over training per prototypicality quartile.",
    "overest": "Early overestimation (only for sweeps run with eval.overest_every >= 1): o(x, t) = the model's "
               "log-probability of a string's masked true tokens minus the exact grammar posterior's, at the highest "
               "noise level, against training steps; solid the probed training strings, dashed the held-out ones "
               "(the null: strings the model never saw); per P, mean over trials; one panel per regime (a trial "
               "generalized first when tau_gen was observed at theta=0.5).",
    "overest_auc": "Does early overestimation predict memorization? Per regime, the AUC of an evaluation's per-string "
                   "o at the highest noise level for the training strings copied at a later evaluation, against the "
                   "lead time (later step / earlier step, log bins), beside the model's own log-probability of the "
                   "masked tokens (a reference-free membership score) and prototypicality; 0.5 is chance.",
    "slop": "Slop: over-production of the common productions (top quarter by training count) in generations that "
            "are not copies, per level and node-weighted over all levels, against training steps. 0 is what a "
            "grammar-faithful generator's non-copies give (exact); the window between the median tau_gen and "
            "tau_mem is shaded.",
}

STATS_TEXT = (
    "Onsets: the first evaluation that starts 2 evaluations in a row at or above theta (--onset-rule first: the "
    "first crossing), log-step interpolated linearly in the metric between the evaluation before it and it; trials "
    "never reaching theta are right-censored at their last step, trials already above theta at the first "
    "evaluation are left-censored. tau_gen is read on gen_share = novel_valid_frac / (1 - p(T)) by default. Laws: "
    "Tobit maximum likelihood of log tau = log C + beta log P + sigma eps (observed: density; censored: survival), "
    "percentile 95% bootstrap over clusters of trials that share a grammar and a data draw (within each group), "
    "Wald interval from the Hessian. Joint law: common beta and sigma, one intercept per "
    "(tail, L); 'shift' = log C_g - log C_ref (exp(shift) is the onset delay factor at equal P); LR test of a common "
    "slope. Goodness of fit (laws.csv): sigma, log-likelihood, Cox-Snell pseudo-R2, KS p-value of observed points' "
    "probability integral transforms; naive OLS of observed points only. Nulls: mem_twin = copy_frac - twin_frac * "
    "p(T)/p(T') is 0 for a model that samples the grammar and memorized nothing. Order nulls (200 simulations per "
    "trial): volume-matched (the headline: the trial's own copies per evaluation drawn from T by p(x)), "
    "grammar-faithful (multinomial draws of N strings per evaluation from the grammar) and empirical-grammar (the "
    "same from T's production frequencies). Slop: against the grammar (exact reference; null: the empirical-grammar "
    "generator at the trial's N) and against T's frequencies (null: the grammar at the trial's N), 40 "
    "simulations per trial."
)

#: Figures drawn only when the store has an `overest` table (sweeps run with eval.overest_every >= 1).
OVEREST_FIGURES = ("overest", "overest_auc")
#: The headline sentences, as plain text beside index.html (what `memsweep demo` prints).
HEADLINE_FILE = "headline.txt"
LAW_VIEW = ["scope", "onset", "theta", "tail", "L", "n_obs", "n_cens", "beta", "beta_lo", "beta_hi", "shift",
            "shift_lo", "shift_hi", "lr_p", "reason"]
ORDER_VIEW = ["tail", "L", "n_rho_proto", "n_clusters_rho_proto", "n_rho_proto_vol", "n_clusters_rho_proto_vol"] + [
    f"{k}{infix}{part}" for k in ("rho_proto", "partial_proto", "rho_twin")
    for infix in memorder.NULLS.values() for part in ("_null_mean", "_excess_mean", "_excess_lo", "_excess_hi")] + [
    "n_rho_proto_vol_undefined", "rho_proto_vol_undefined"]
SLOP_VIEW = ["tail", "L", "level", "n_before", "n_clusters_before", "overprod_before", "overprod_before_lo",
             "overprod_before_hi", "overprod_before_null", "overprod_before_null_sd", "overprod_before_excess", "overprod_before_excess_lo",
             "overprod_before_excess_hi", "overprod_train_before", "overprod_train_before_null",
             "overprod_train_before_null_sd", "overprod_train_before_excess", "overprod_train_before_excess_lo",
             "overprod_train_before_excess_hi", "strings_before", "n_after", "overprod_after", "overprod_after_lo",
             "overprod_after_hi"]


def read_tables(store_or_uri: Any, sweep: str | None = None, metric: str = DEFAULT_MEM_METRIC,
                gen_metric: str = DEFAULT_GEN_METRIC, pool_specs: bool = False) -> dict[str, pa.Table]:
    """The store tables the report needs (only the columns it uses); tables a sweep never wrote are left out.
    The trials are those `onset.analysed` keeps, a sweep's effective specs apart unless `pool_specs`."""
    st = onset._open_store(store_or_uri)
    cols = list(dict.fromkeys(["trial_id", "step", metric, gen_metric, "novel_valid_frac", "overprod",
                               "overprod_train", "slop_n"]))
    trials, _ = onset.analysed(st.read("trials", sweep=sweep), pool_specs)   # failed and diverged left out
    kept = trials.column("trial_id").combine_chunks()
    out = {"trials": trials, "curves": st.read("curves", sweep=sweep, columns=cols)}
    for name, cols in (("level_curves", slop.SLOP_COLUMNS), ("copies", None),
                       ("samples", [c for c in memorder.SAMPLE_COLUMNS]), ("slop_nulls", None), ("overest", None)):
        try:
            t = st.read(name, sweep=sweep, columns=cols)
        except (FileNotFoundError, KeyError, ValueError):
            continue
        if t.num_rows:
            out[name] = t
    for name in [n for n in out if n != "trials"]:
        out[name] = out[name].filter(pc.is_in(out[name].column("trial_id"), value_set=kept))
    return out


def _cell(v: Any) -> str:
    if isinstance(v, float):
        return "" if not np.isfinite(v) else f"{v:.4g}"
    return html.escape("" if v is None else str(v))


def _table_html(table: pa.Table, cols: Sequence[str]) -> str:
    """An HTML table of the `cols` that exist (floats to 4 significant digits, NaN as blank)."""
    cols = [c for c in cols if c in table.column_names]
    head = "".join(f"<th>{html.escape(c)}</th>" for c in cols)
    body = "".join("<tr>" + "".join(f"<td>{_cell(r.get(c))}</td>" for c in cols) + "</tr>" for r in table.to_pylist())
    return f"<table class='laws'><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _order_html(pooled: pa.Table | None) -> str:
    if pooled is None:
        return ""
    return ("<h2>Memorization order beside its null, pooled</h2><p>Per group and statistic, three nulls: "
            "<b>volume-matched</b> (<code>_vol</code>, the headline: each trial's own number of copies per evaluation, "
            "drawn from its training set by p(x)), <b>grammar-faithful</b> (no infix: a generator sampling the grammar "
            "with each trial's N, schedule and training set) and <b>empirical-grammar</b> (<code>_emp</code>: the "
            "grammar's rules at the training set's production frequencies, no string stored). For each: the mean "
            "null and the mean excess (observed - null) over the trials where it is defined (the same trials), with "
            "a bootstrap 95% interval over clusters of trials that share a grammar and a data draw; trials where a "
            "null is undefined (the volume-matched one: no copies) are counted and named. An excess below 0 whose "
            "interval excludes 0 means prototypical samples are copied first beyond "
            "that null. All columns (also rho_loglik, per-trial p-values) in <a href='memorder.csv'>"
            "memorder.csv</a> and <a href='memorder_trials.csv'>memorder_trials.csv</a>.</p>"
            + _table_html(pooled, ORDER_VIEW))


def _slop_html(pooled: pa.Table) -> str:
    if pooled.num_rows == 0:
        return ""
    return ("<h2>Slop beside its null, pooled</h2><p>Mean over trials of each trial's mean overprod of non-copy "
            "generations before tau_mem (from tau_gen when observed) and after it, per level (-1: all levels, "
            "node-weighted), bootstrap 95% interval over clusters of trials that share a grammar and a data draw, "
            "against two references: the grammar "
            "(<code>overprod</code>; its null, the <b>empirical-grammar generator</b> at each trial's N, learns the "
            "parts and stores no string) and the training set's own frequencies (<code>overprod_train</code>; its "
            "null, the <b>grammar</b> at each trial's N). <code>_null</code> and <code>_null_sd</code> are the nulls' "
            "mean and sd over the same trials, <code>_excess</code> the trial value minus its null; strings_before is "
            "the mean number of non-copy strings per evaluation a value rests on. Also in <a href='slop.csv'>"
            "slop.csv</a>, per trial in <a href='slop_trials.csv'>slop_trials.csv</a>.</p>"
            + _table_html(pooled, SLOP_VIEW))


def _nested_list(lines: Sequence[str]) -> str:
    """HTML list items of headline lines; lines that start with headline.INDENT nest under the line above."""
    items: list[tuple[str, list[str]]] = []
    for line in lines:
        if line.startswith(headline.INDENT) and items:
            items[-1][1].append(line.strip())
        else:
            items.append((line.strip(), []))
    return "".join(f"<li>{html.escape(text)}" + (("<ul>" + "".join(f"<li>{html.escape(s)}</li>" for s in sub)
                                                    + "</ul>") if sub else "") + "</li>" for text, sub in items)


def status_line(trials: pa.Table) -> str:
    """'Trials: 12 done, 2 stopped, 2 interrupted (...).': the trials by their status in the store."""
    from analysis.schema import TRIAL_STATUSES

    statuses = trials.column("status").to_pylist() if "status" in trials.column_names else []
    counts = {s: statuses.count(s) for s in dict.fromkeys([*TRIAL_STATUSES, *statuses]) if statuses.count(s)}
    text = ", ".join(f"{n} {s}" for s, n in counts.items()) or "none"
    hint = " (`memsweep run SPEC --resume` continues them)" if counts.get("interrupted") else ""
    return f"Trials: {text}{hint}."


def _notes_html(notes: Sequence[str]) -> str:
    """The trials the analyses left out (failed, diverged) and the sweeps whose effective specs they keep apart
    (or pooled), under their own heading: these are not store damage."""
    if not notes:
        return ""
    items = "".join(f"<li>{html.escape(n)}</li>" for n in notes)
    return (f"<h2>Trials left out or kept apart: {len(notes)} note(s)</h2><p>Failed and diverged trials are not in "
            "the laws, the order and slop verdicts or the figures; a sweep's trials of different effective specs "
            f"are separate groups unless pooled (--pool-specs).</p><ul class='small'>{items}</ul>")


def _problems_html(problems: Sequence[str]) -> str:
    if not problems:
        return "<h2>Store</h2><p>Every store fragment was read; none was skipped.</p>"
    items = "".join(f"<li>{html.escape(p)}</li>" for p in problems)
    return (f"<h2>Store: {len(problems)} fragment(s) skipped</h2><p>These files were damaged or did not match the "
            f"schema; their rows are not in this report.</p><ul class='small'>{items}</ul>")


def _order(tables: dict[str, pa.Table], curves: pa.Table, trials: pa.Table, n_boot: int,
           out: Path) -> tuple[Any, pa.Table | None]:
    """The memorization-order figure and pooled table (CSV files beside), or an empty figure without copies."""
    if "samples" not in tables or "copies" not in tables:
        return plots._empty("memorization order", "no samples/copies tables in the store"), None
    ids = tables["samples"].column("trial_id").unique()
    steps = curves.select(["trial_id", "step"]).filter(pc.is_in(curves.column("trial_id"), value_set=ids))
    last = steps.group_by("trial_id").aggregate([("step", "max")]).rename_columns(["trial_id", "last_step"])
    first = onset.first_copy_from_tables(tables["copies"], tables["samples"], last)
    order = memorder.order_from_tables(tables["samples"], tables["copies"], steps, trials, n_boot=n_boot)
    pooled = memorder.pool_order(order, seed=0)
    pacsv.write_csv(order, out / "memorder_trials.csv")
    pacsv.write_csv(pooled, out / "memorder.csv")
    return plots.plot_memorder(order, memorder.fraction_by_quantile(first, tables["samples"], steps), trials), pooled


def _flags_html(flags: pa.Table, kept: bool) -> str:
    if flags.num_rows == 0:
        return ""
    n = int(pc.sum(flags.column("flagged")).as_py() or 0)
    what = ("kept in the laws and verdicts (--keep-flagged)" if kept else
            "left out of the onset laws and the order and slop verdicts (--keep-flagged keeps them)")
    return (f"<h2>Nulls per trial: {n} of {flags.num_rows} trials flagged, {html.escape(what)}</h2><p>p(T) and "
            "p(T') (training and twin-set mass), the chance level of validity (a uniformly random string is valid "
            "that often), the ceiling of novel_valid_frac (1 - p(T): a perfect generalizer's value) and the null sd "
            "of mem_twin (sqrt(p(T) (1 + p(T)/p(T')) / N)). Flagged: chance > 1%, p(T) > 0.5, or null sd > theta/4; "
            "the null-sd flag is applied per threshold in the laws. Also in <a href='flags.csv'>flags.csv</a>.</p>"
            + _table_html(flags, ["trial_id", "train_mass", "twin_set_mass", "chance_valid", "ceiling", "null_sd",
                                  "flagged", "reason"]))


def _unflagged(tables: dict[str, pa.Table], curves: pa.Table,
               flags: pa.Table) -> tuple[dict[str, pa.Table], pa.Table]:
    """The tables with the flagged trials' rows left out (trials and curves whole: the figures show every trial),
    and the curves without them (what slop reads)."""
    bad = set(flagmod.flagged_ids(flags))
    kept = [t for t in tables["trials"].column("trial_id").to_pylist() if t not in bad]
    out = {k: (v if k in ("trials", "curves") else flagmod.keep_trials(v, kept)) for k, v in tables.items()}
    return out, flagmod.keep_trials(curves, kept)


def overest_frames(tables: dict[str, pa.Table], curves: pa.Table, trials: pa.Table, ons: pa.Table,
                   theta: float) -> tuple[Any, Any, dict[str, Any]]:
    """From a store's `overest` table: its curves per (trial, step, t) with P and regime, the prediction table
    (analysis.overest_predict) with regime, and its AUC by lead time per regime (headline.trial_regimes)."""
    from analysis.overest import overest_curves
    from analysis.overest_predict import by_lead, prediction_table

    regime = headline.trial_regimes(ons, theta)
    ov = tables["overest"].to_pandas()
    cur = overest_curves(ov)
    cur["regime"] = cur.trial_id.map(regime).fillna("memorize-only")
    cur["P"] = cur.trial_id.map(dict(zip(trials.column("trial_id").to_pylist(), trials.column("P").to_pylist())))
    none = {"trial_id": pa.array([], pa.string()), "step": pa.array([], pa.int64()),
            "train_index": pa.array([], pa.int64()), "count": pa.array([], pa.int64()),
            "proto": pa.array([], pa.float64())}
    copies = tables.get("copies", pa.table({k: none[k] for k in ("trial_id", "step", "train_index", "count")}))
    samples = tables.get("samples", pa.table({k: none[k] for k in ("trial_id", "train_index", "proto")}))
    table = prediction_table(ov, copies.to_pandas(), samples.to_pandas(),
                             curves.select(["trial_id", "step"]).to_pandas())
    table["regime"] = table.trial_id.map(regime).fillna("memorize-only")
    leads = {name: by_lead(table[table.regime == name]) for name in sorted(set(table.regime))}
    return cur, table, leads


def write_report_from_tables(tables: dict[str, pa.Table], out_dir: Path | str, laws: pa.Table | None = None,
                             thetas: Sequence[float] = onset.DEFAULT_THETAS, metric: str = DEFAULT_MEM_METRIC,
                             gen_metric: str = DEFAULT_GEN_METRIC, n_boot: int = 200, command: str = "",
                             title: str = "memsweep report", problems: Sequence[str] = (),
                             keep_flagged: bool = False, consecutive: int = onset.DEFAULT_CONSECUTIVE,
                             every_trial: pa.Table | None = None, notes: Sequence[str] = ()) -> Path:
    """Figures (PNG + SVG), laws (Parquet + CSV), order and slop CSVs and index.html from in-memory store tables.
    `every_trial`: the store's `trials` before failed and diverged ones were left out (for the status line; default
    tables["trials"]). `problems`: store fragments skipped; `notes`: `onset.analysed`'s lines (trials left out,
    specs kept apart).

    Trials flagged by `analysis.flags` are left out of the laws, the order and slop verdicts and the regime count
    unless `keep_flagged`; the curve, onset and phase figures show every trial."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    trials, curves = tables["trials"], tables["curves"]
    curves = onset.with_gen_share(curves, trials) if gen_metric == "gen_share" else curves
    ons = onset.onsets_from_tables(trials, curves, thetas, metric, gen_metric, consecutive)
    th = 0.5 if 0.5 in thetas else float(thetas[0])
    flags = flagmod.trial_flags(trials, th)
    pacsv.write_csv(flags, out / "flags.csv")
    ons_read, tables, slop_curves = ons, dict(tables), curves
    if not keep_flagged:      # the laws, verdicts and regime count read the unflagged trials; the figures all
        ons_read = flagmod.drop_flagged_onsets(ons, flags)
        tables, slop_curves = _unflagged(tables, curves, flags)
    if laws is None:
        laws = fits.fit_laws(ons_read, theta=None, n_boot=n_boot)
    fits.write_laws(laws, out)
    figs: dict[str, Any] = {"curves": plots.plot_curves(curves, trials, metric),
                            "curves_gen": plots.plot_curves(curves, trials, gen_metric),
                            "onsets": plots.plot_onsets(ons, laws, th, "mem"),
                            "onsets_gen": plots.plot_onsets(ons, laws, th, "gen"),
                            "phase": plots.plot_phase(ons, th, "mem")}
    figs["memorder"], order_pooled = _order(tables, curves, trials, n_boot, out)
    slop_table = slop.slop_from_tables(tables.get("level_curves"), trials, slop.windows_from_onsets(ons, th),
                                       slop_curves, tables.get("slop_nulls"))
    figs["slop"] = plots.plot_slop(slop_table)
    if "overest" in tables:             # sweeps that probed early overestimation (eval.overest_every >= 1)
        ov_curves, ov_table, leads = overest_frames(tables, curves, trials, ons, th)
        figs["overest"], figs["overest_auc"] = plots.plot_overest(ov_curves), plots.plot_overest_auc(leads)
        ov_table.to_csv(out / "overest_prediction.csv", index=False)
    slop_trials = slop.trial_slop(slop_table)
    slop_pooled = slop.pool_trial_slop(slop_trials)
    if slop_pooled.num_rows:
        pacsv.write_csv(slop_trials, out / "slop_trials.csv")
        pacsv.write_csv(slop_pooled, out / "slop.csv")
    sections = []
    for name, fig in figs.items():
        png = plots.save(fig, out, name)["png"]
        b64 = base64.b64encode(png.read_bytes()).decode("ascii")
        sections.append(
            f"<section id='fig-{name}'><h2>{html.escape(name)}</h2><p>{html.escape(FIGURES[name])}</p>"
            f"<img alt='{html.escape(name)}' src='data:image/png;base64,{b64}'/>"
            f"<p class='small'>Files: <a href='{name}.png'>{name}.png</a>, <a href='{name}.svg'>{name}.svg</a></p>"
            "</section>")
    lines = (headline.headline(trials, ons_read, laws, order_pooled, slop_pooled, th)
             + flagmod.flag_lines(flags, th, keep_flagged))
    head = _nested_list(lines)
    page = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>body{{font-family:sans-serif;max-width:1200px;margin:2em auto;}} img{{max-width:100%;}}
table.laws{{border-collapse:collapse;font-size:11px}} table.laws td,table.laws th{{border:1px solid #ccc;padding:2px 4px}}
#headline{{background:#f4f7fb;border:1px solid #cdd;padding:.5em 1em}} #headline li{{margin:.25em 0}}
.small{{font-size:11px;color:#555}}</style></head><body>
<h1>{html.escape(title)}</h1>
<section id="headline"><h2>At a glance</h2><ul>{head}</ul>
<p class="small">Memorization metric <code>{html.escape(metric)}</code>: {html.escape(metric_info(metric).description)}.
Generalization metric <code>{html.escape(gen_metric)}</code>. Thresholds {html.escape(', '.join(f'{t:g}' for t in thetas))};
the sentences above use theta={th:g}.</p></section>
<p class="small">Made by <code>{html.escape(command or 'analysis.report.write_report')}</code> at {time.strftime('%Y-%m-%d %H:%M:%S')}.
{html.escape(status_line(trials if every_trial is None else every_trial))}</p>
{''.join(sections)}
<h2>Laws</h2><p>The columns a reader needs; every column (Wald intervals, sigma, goodness of fit, naive OLS) and every
threshold is in <a href="laws.csv">laws.csv</a> and laws.parquet.</p>
{_table_html(laws, LAW_VIEW)}
{_order_html(order_pooled)}
{_slop_html(slop_pooled)}
{_flags_html(flags, keep_flagged)}
{_notes_html(notes)}
{_problems_html(problems)}
<h2>Method</h2><p>{html.escape(STATS_TEXT)}</p>
</body></html>
"""
    index = out / "index.html"
    index.write_text(page, encoding="utf-8")
    (out / HEADLINE_FILE).write_text("\n".join(lines) + "\n", encoding="utf-8")
    return index


def null_lines(store_or_uri: Any, sweep: str | None = None, metric: str = DEFAULT_MEM_METRIC,
               gen_metric: str = DEFAULT_GEN_METRIC, theta: float = 0.5, n_boot: int = 200,
               keep_flagged: bool = False, consecutive: int = onset.DEFAULT_CONSECUTIVE,
               pool_specs: bool = False) -> list[str]:
    """The headline's order and slop sentences, each statistic against its nulls by name (what `memsweep fit`
    prints after the laws), read as the report reads them: flagged trials left out unless `keep_flagged`, a
    sweep's effective specs apart unless `pool_specs`."""
    tables = read_tables(onset._open_store(store_or_uri), sweep, metric, gen_metric, pool_specs)
    trials, curves = tables["trials"], tables["curves"]
    curves = onset.with_gen_share(curves, trials) if gen_metric == "gen_share" else curves
    ons = onset.onsets_from_tables(trials, curves, (theta,), metric, gen_metric, consecutive)
    slop_curves = curves
    if not keep_flagged:
        tables, slop_curves = _unflagged(tables, curves, flagmod.trial_flags(trials, theta))
    order_pooled = None
    if "samples" in tables and "copies" in tables:
        order = memorder.order_from_tables(tables["samples"], tables["copies"], curves.select(["trial_id", "step"]),
                                           trials, n_boot=n_boot)
        order_pooled = memorder.pool_order(order, seed=0)
    slop_table = slop.slop_from_tables(tables.get("level_curves"), trials, slop.windows_from_onsets(ons, theta),
                                       slop_curves, tables.get("slop_nulls"))
    return headline.order_lines(order_pooled) + headline.slop_lines(slop.pool_slop(slop_table))


def write_report(store_or_uri: Any, out_dir: Path | str, sweep: str | None = None,
                 thetas: Sequence[float] = onset.DEFAULT_THETAS, metric: str = DEFAULT_MEM_METRIC,
                 gen_metric: str = DEFAULT_GEN_METRIC, n_boot: int = 200, keep_flagged: bool = False,
                 consecutive: int = onset.DEFAULT_CONSECUTIVE, pool_specs: bool = False) -> Path:
    """Read the store and write the report into out_dir; returns the path of index.html."""
    st = onset._open_store(store_or_uri)
    tables = read_tables(st, sweep, metric, gen_metric, pool_specs)
    every = st.read("trials", sweep=sweep)
    uri = getattr(store_or_uri, "uri", store_or_uri)
    cmd = (f"memsweep report {uri} --out {out_dir}" + (f" --sweep {sweep}" if sweep else "")
           + (" --keep-flagged" if keep_flagged else "") + (" --pool-specs" if pool_specs else "")
           + (f" --gen-metric {gen_metric}" if gen_metric != DEFAULT_GEN_METRIC else "")
           + ("" if consecutive == onset.DEFAULT_CONSECUTIVE else " --onset-rule first" if consecutive == 1 else ""))
    return write_report_from_tables(tables, out_dir, thetas=thetas, metric=metric, gen_metric=gen_metric,
                                    n_boot=n_boot, command=cmd, title=f"memsweep report: {sweep or 'all sweeps'}",
                                    problems=list(getattr(st, "problems", [])),
                                    notes=onset.analysed(every, pool_specs)[1],
                                    keep_flagged=keep_flagged, consecutive=consecutive, every_trial=every)
