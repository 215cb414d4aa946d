"""The findings page's tables, rendered from the committed CSVs: the page quotes them between markers

    <!-- table regime/window_cells -->
    ...
    <!-- /table -->

so every number in them comes from a file (and, through docs/findings/refit.py, from the per-trial rows).
`tables.py FINDINGS_DIR PAGE` exits 1 naming each block that differs from what the CSVs give; `--write` rewrites
the blocks in place. tests/test_findings_page.py renders them from the refit of the committed rows and compares.
"""
from __future__ import annotations

import math
import re
import sys
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import refit  # noqa: E402 (its read_csv keeps labels as text)

BLOCK = re.compile(r"(<!-- table (\S+) -->\n)(.*?)(<!-- /table -->)", re.S)


def _n(v: object, digits: int = 2) -> str:
    """A number for the page: '-' for missing, thousands with commas for large values."""
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    v = float(v)
    if round(v, digits) == 0:
        v = 0.0                                     # no "-0.00"
    if abs(v) >= 1000:
        return f"{v:,.0f}"
    return f"{v:.{digits}f}"


def _ci(r: dict, k: str, digits: int = 2) -> str:
    """`value [lo, hi]`, or the value with 'no interval' when the bootstrap gave none."""
    lo, hi = r.get(f"{k}_lo"), r.get(f"{k}_hi")
    if lo is None or hi is None or (isinstance(lo, float) and math.isnan(lo)):
        return f"{_n(r.get(k), digits)} (no interval)"
    return f"{_n(r.get(k), digits)} [{_n(lo, digits)}, {_n(hi, digits)}]"


def _md(head: list[str], rows: list[list[str]]) -> str:
    return "\n".join(["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
                     + ["| " + " | ".join(r) + " |" for r in rows]) + "\n"


def _rows(path: Path) -> list[dict]:
    return refit.read_csv(path).to_pylist()


def _several_L(rows: list[dict]) -> bool:
    """Whether the rows span more than one depth (then the tables name L beside the tail)."""
    return len({r.get("L") for r in rows} - {None}) > 1


def _group(r: dict, several_L: bool) -> list[str]:
    """The (tail[, L]) cells that open a row."""
    return [r["tail"]] + ([str(r["L"])] if several_L else [])


def window_cells(folder: Path) -> str:
    """Per (tail, L, P): trials and the window counts, medians of the observed onsets."""
    got = _rows(folder / "window_cells.csv")
    many = _several_L(got)
    rows = [_group(r, many) + [f"{r['P']:,}", f"{r['generalized']} of {r['n']}", f"{r['memorized']} of {r['n']}",
                               f"**{r['window']} of {r['n']}**", f"{r['gen_mem_censored']} of {r['n']}",
                               _n(r["tau_gen_median"]), _n(r["tau_mem_median"])] for r in got]
    return _md(["tail"] + (["L"] if many else []) + [
        "P", "tau_gen observed", "tau_mem observed", "both, tau_gen < tau_mem", "generalized, tau_mem censored",
        "median tau_gen", "median tau_mem"], rows)


def window_laws(folder: Path) -> str:
    """The arms' laws: per group the exponent; per tail its shift against the reference (log tau, equal P)."""
    out, got = [], _rows(folder / "window_laws.csv")
    many = _several_L(got)
    for r in got:
        tail = f"{r['tail']} L={r['L']}" if many and r["scope"] in ("group", "shift", "placement-shift") else r["tail"]
        what = {"group": f"{tail}: beta", "joint": "all tails: common beta",
                "placement-joint": "placement pair: common beta"}.get(r["scope"])
        if what is not None:
            val = _ci(r, "beta")
        elif r["scope"] in ("shift", "placement-shift") and r["tail"] != r["reference"]:
            what = f"{tail}: log(tau / tau of {r['reference']})"
            val = _ci(r, "shift") if r.get("status") != "undetermined" else f"undetermined ({r.get('reason')})"
        else:
            continue
        counts = (f"{r['n_obs']} observed, {r['n_cens']} censored" if r.get("n_obs") is not None else "")
        out.append([r["arm"], f"tau_{r['onset']}", what, val, counts,
                    "-" if r.get("n_clusters") is None else str(r["n_clusters"])])
    return _md(["arm", "onset", "statistic", "estimate [95% CI]", "trials", "clusters"], out)


def _count(v: object) -> str:
    """An integer count for the page, '-' where the file has none."""
    return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{int(v)}"


def _mean_ci(r: dict, k: str) -> str:
    """`<k>_mean [<k>_lo, <k>_hi]` (the pooled tables' naming)."""
    return _ci({"v": r.get(f"{k}_mean"), "v_lo": r.get(f"{k}_lo"), "v_hi": r.get(f"{k}_hi")}, "v")


def window_pooled(folder: Path) -> str:
    """Order beside its three nulls and slop against the grammar and against T, per (tail, L, arm)."""
    got = _rows(folder / "window_pooled.csv")
    many = _several_L(got)
    out = [_group(r, many) + [
        r["arm"], " / ".join(_count(r[f"n_rho_proto{k}"]) for k in ("_vol", "", "_emp"))
        + f" ({_count(r['n_clusters_rho_proto'])})",
        _n(r["rho_proto_mean"]),
        _mean_ci(r, "rho_proto_vol_excess"), _mean_ci(r, "rho_proto_excess"), _mean_ci(r, "rho_proto_emp_excess"),
        _ci(r, "overprod_before_excess"), _ci(r, "overprod_train_before_excess"),
        _count(r.get("n_before"))] for r in got]
    return _md(["tail"] + (["L"] if many else []) + [
        "arm", "trials with order beside the volume / grammar / empirical null (clusters)",
        "rho (proto, first copy)", "minus volume-matched null",
        "minus grammar null", "minus empirical-grammar null", "slop before tau_mem minus its null (vs grammar)",
        "slop vs T's frequencies minus the grammar's", "trials (slop)"], out)


def order_partial(folder: Path) -> str:
    """The order statistic controlling for log-likelihood (partial rho) beside its grammar and empirical-grammar
    nulls, per (tail, L) and over all trials, from memorder.csv."""
    got = _rows(folder / "memorder.csv")
    many = _several_L(got)
    out = [([("all" if r["tail"] == "*" else r["tail"])] + ([_count(r["L"])] if many else [])) + [
        f"{_count(r['n_partial_proto'])} ({_count(r['n_clusters_partial_proto'])})", _n(r["partial_proto_mean"]),
        _mean_ci(r, "partial_proto_excess"), _mean_ci(r, "partial_proto_emp_excess")] for r in got]
    return _md(["tail"] + (["L"] if many else []) + [
        "trials (clusters)", "partial rho (proto, first copy; log-likelihood held fixed)", "minus grammar null",
        "minus empirical-grammar null"], out)


def _mem_rows(path: Path, scope: str) -> list[dict]:
    """Rows of a laws file for tau_mem on mem_twin (the page's memorization onset) of one scope."""
    return [r for r in _rows(path) if r["onset"] == "mem" and r["metric"] == "mem_twin" and r["scope"] == scope]


def laws_shifts(folder: Path) -> str:
    """The report's laws per (tail, L) group: exponent at theta 0.5 and the joint law's shift against the reference
    group at theta 0.1 and 0.5 (negative = memorized earlier at equal P), with trial counts; the joint law last."""
    path = folder / "laws.csv"
    groups, shifts = _mem_rows(path, "group"), _mem_rows(path, "shift")
    many = _several_L(groups)
    shift = {(r["tail"], r["L"], r["theta"]): r for r in shifts}
    out = []
    for g in (r for r in groups if r["theta"] == 0.5):
        key = (g["tail"], g["L"])
        s1, s5 = shift.get((*key, 0.1), {}), shift.get((*key, 0.5), {})
        out.append(_group(g, many) + [f"{g['n_obs']} observed, {g['n_cens']} censored", _ci(g, "beta"),
                                      _ci(s1, "shift"), _ci(s5, "shift"),
                                      _n(math.exp(s5["shift"])) if s5.get("shift") is not None else "-"])
    for j in (r for r in _mem_rows(path, "joint") if r["theta"] == 0.5):
        out.append([f"joint law (reference {j['reference']})"] + ([""] if many else []) + [
            f"{_count(j['n_obs'])} observed, {_count(j['n_cens'])} censored ({_count(j['n_clusters'])} clusters)",
            _ci(j, "beta"), "", f"common beta: LR p = {j['lr_p']:.2g}", ""])
    return _md(["tail"] + (["L"] if many else []) + [
        "trials (theta 0.5)", "beta at 0.5", "shift at theta 0.1", "shift at theta 0.5", "factor at 0.5"], out)


def placement_laws(folder: Path) -> str:
    """The placement pair's own joint law (study/placement.csv) and the covariate law's entropy terms
    (study/laws_covariates.csv), at theta 0.1 and 0.5."""
    out = []
    for theta in (0.1, 0.5):
        joint = next(r for r in _mem_rows(folder / "placement.csv", "joint") if r["theta"] == theta)
        for s in _mem_rows(folder / "placement.csv", "shift"):
            if s["theta"] == theta and not s["reference"].startswith(f"{s['tail']} L="):
                out.append([f"{theta:g}", f"log(tau of {s['tail']} / tau of {s['reference']})", _ci(s, "shift", 3),
                            f"{joint['n_obs']} observed, {joint['n_cens']} censored", _count(joint["n_clusters"])])
        law = next(r for r in _mem_rows(folder / "laws_covariates.csv", "covariate_law") if r["theta"] == theta)
        for c in _mem_rows(folder / "laws_covariates.csv", "covariate"):
            if c["theta"] == theta and c["term"] != "intercept":
                out.append([f"{theta:g}", f"covariate law: log-steps per nat of {c['term']}", _ci(c, "coef", 3),
                            f"{law['n_obs']} observed, {law['n_cens']} censored", _count(law["n_clusters"])])
    return _md(["theta", "statistic", "estimate [95% CI]", "trials", "clusters"], out)


def overest_auc(folder: Path) -> str:
    """AUC by lead bin and arm: the exact-reference score, the reference-free loss, prototypicality (null 0.5)."""
    out = [[r["arm"], _n(r["lead_bin"], 1), str(r["cells"]), f"{r['trials']} ({r['clusters']})",
            _ci(r, "auc_o"), _ci(r, "auc_model_logp"), _ci(r, "auc_proto"), _ci(r, "auc_o_minus_logp")]
           for r in _rows(folder / "overest_auc.csv")]
    return _md(["arm", "lead (from)", "cells", "trials (clusters)", "AUC of o (exact reference)",
                "AUC of model log-prob (reference-free)", "AUC of prototypicality", "o minus reference-free"], out)


def overest_phase(folder: Path) -> str:
    """Overestimation gap, entropy excess and collapse difference at two moments of each trial, per arm."""
    out = [[r["arm"], r["moment"], f"{r['trials']} ({r['clusters']})", _n(r["median_step_over_tau_mem"]),
            _ci(r, "overest_gap", 3), _ci(r, "entropy_excess", 3), _ci(r, "collapse_diff", 3)]
           for r in _rows(folder / "overest_phase.csv")]
    return _md(["arm", "moment", "trials (clusters)", "median step / tau_mem",
                "overest gap, train - held-out (null 0)", "entropy excess, grammar - model (null 0)",
                "collapse, model - grammar-faithful (null 0)"], out)


def overest_severity(folder: Path) -> str:
    """Spearman rho between early overestimation gap and later mem_twin, across trials."""
    out = [[r["scope"], f"{r['trials']} ({r['clusters']})", _ci(r, "rho"),
            f"gap at the first probe >= {r['early_step']:,.0f} steps; mem_twin {r['lead']:g}x later"]
           for r in _rows(folder / "overest_severity.csv")]
    return _md(["trials", "n (clusters)", "Spearman rho [95% CI] (null 0)", "what"], out)


RENDER: dict[str, Callable[[Path], str]] = {
    "window_cells": window_cells, "window_laws": window_laws, "window_pooled": window_pooled,
    "laws_shifts": laws_shifts, "placement_laws": placement_laws, "order_partial": order_partial,
    "overest_auc": overest_auc, "overest_phase": overest_phase, "overest_severity": overest_severity}


def render(findings: Path, name: str) -> str:
    """The block `name` ("<sweep>/<table>") from the CSVs under `findings`; KeyError names the known tables."""
    sweep, table = name.split("/", 1)
    if table not in RENDER:
        raise KeyError(f"unknown table {table!r} in block {name!r}; known: {', '.join(RENDER)}")
    return RENDER[table](findings / sweep)


def check(findings: Path, page: Path, write: bool = False) -> list[str]:
    """Names of the page's blocks that differ from the CSVs (rewritten in place with `write`)."""
    text, bad = page.read_text(), []

    def sub(m: re.Match) -> str:
        new = render(findings, m.group(2))
        if new != m.group(3):
            bad.append(m.group(2))
        return m.group(1) + new + m.group(4)

    out = BLOCK.sub(sub, text)
    if write and out != text:
        page.write_text(out)
    return bad


if __name__ == "__main__":
    args = [a for a in sys.argv[1:] if a != "--write"]
    if len(args) != 2:
        sys.exit("usage: tables.py FINDINGS_DIR PAGE [--write]")
    differ = check(Path(args[0]), Path(args[1]), write="--write" in sys.argv)
    for name in differ:
        print(f"{name}: {'rewritten' if '--write' in sys.argv else 'differs from the CSVs'}")
    sys.exit(1 if differ and "--write" not in sys.argv else 0)
