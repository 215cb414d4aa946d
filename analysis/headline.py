"""The answers at a glance: each law's exponent, the memorization order beside its null, the slop verdict, the
regime and the trials, as plain sentences. Used by the report's headline block and by `memsweep demo`."""
from __future__ import annotations

import math
from typing import Any

import pyarrow as pa

#: Lines that start with two spaces continue the line above (the report nests them).
INDENT = "  "
ORDER_WORDS = {
    "rho_proto": "rho(prototypicality, first copy)",
    "partial_proto": "the same controlling for log-likelihood",
    "rho_twin": "rho(prototypicality, first time copies exceed twins)",
}


def _f(x: Any, signed: bool = True) -> str:
    """A value to 2 decimals (with its sign for correlations and excesses), "n/a" when missing."""
    if x is None or not math.isfinite(float(x)):
        return "n/a"
    return f"{float(x):+.2f}" if signed else f"{float(x):.2f}"


def _estimated(lo: Any, hi: Any) -> bool:
    """Whether (lo, hi) is an interval: both finite and of non-zero width."""
    return (lo is not None and hi is not None and math.isfinite(float(lo)) and math.isfinite(float(hi))
            and float(hi) > float(lo))


def _ci(lo: Any, hi: Any, signed: bool = True, why: str = "too few independent units") -> str:
    """"95% CI lo to hi", or "interval not estimated: why" (never "n/a to n/a", never a zero-width interval)."""
    if not _estimated(lo, hi):
        zero = lo is not None and hi is not None and math.isfinite(float(lo)) and float(lo) == float(hi)
        return "interval not estimated: " + ("every resample gave the same value" if zero else why)
    return f"95% CI {_f(lo, signed)} to {_f(hi, signed)}"


def _units(n: Any, clusters: Any) -> str:
    """Why an interval over trials is missing: how many trials and clusters there were, against the minimum."""
    from analysis.stats import MIN_CLUSTERS
    k = n if clusters is None else clusters
    return (f"{n or 0} trial(s) in {k or 0} cluster(s) of shared grammar and data draw; an interval needs "
            f"{MIN_CLUSTERS}")


def verdict(lo: Any, hi: Any, below: str, above: str, within: str) -> str:
    """Word for an interval against 0: `below` if it excludes 0 from below, `above` from above, else `within`."""
    if not _estimated(lo, hi):
        return "undetermined (no interval)"
    return below if hi < 0 else above if lo > 0 else within


def law_lines(laws: pa.Table, theta: float = 0.5) -> list[str]:
    """One sentence per group law and per joint-law row at `theta`, memorization onset first."""
    rows = [r for r in laws.to_pylist() if r["theta"] == theta]
    out = []
    for onset in ("mem", "gen"):
        mine = [r for r in rows if r["onset"] == onset]
        fitted = [r for r in mine if r["status"] == "ok"]
        if not fitted:
            groups = [r for r in mine if r["scope"] == "group"]
            seen, n = sum(r["n_obs"] or 0 for r in groups), sum(r["n_trials"] or 0 for r in groups)
            out.append(f"tau_{onset}: no law at theta={theta:g}: {seen} of {n} trials reached it." if groups
                       else f"tau_{onset}: no onsets at theta={theta:g}.")
            continue
        metric = fitted[0]["metric"]
        for r in fitted:
            if r["scope"] == "group":
                out.append(f"tau_{onset} ({metric}, theta={theta:g}) for {r['tail']} L={r['L']}: grows like "
                           f"P^{r['beta']:.2f} ({_ci(r['beta_lo'], r['beta_hi'], False, _law_why(r))}; "
                           f"{r['n_obs']} observed, {r['n_cens']} censored trials).")
            elif r["scope"] == "joint":
                lr = "" if not math.isfinite(r["lr_p"] or math.nan) else f"; one common slope vs one per group: LR p = {r['lr_p']:.2g}"
                out.append(f"tau_{onset} jointly over groups: P^{r['beta']:.2f} "
                           f"({_ci(r['beta_lo'], r['beta_hi'], False, _law_why(r))}){lr}.")
            elif r["scope"] == "shift" and r["shift"] is not None and math.isfinite(r["shift"]) and r["shift"] != 0:
                ci = (f"95% CI {math.exp(r['shift_lo']):.2f}x to {math.exp(r['shift_hi']):.2f}x"
                      if _estimated(r["shift_lo"], r["shift_hi"]) else _ci(None, None, why=_law_why(r)))
                out.append(f"  {r['tail']} L={r['L']} needs {math.exp(r['shift']):.2f}x the steps of "
                           f"{r['reference']} to reach it at equal P ({ci}).")
    return out


def _law_why(r: dict[str, Any]) -> str:
    """Why a law row has no bootstrap interval."""
    from analysis.stats import MIN_CLUSTERS
    k = r.get("n_clusters")
    if k is not None and k < MIN_CLUSTERS:
        return _units(r.get("n_trials"), k)
    return f"{r.get('n_boot_ok') or 0} bootstrap refits converged (need 10)"


#: The order nulls as the headline names them, headline null first (`analysis.memorder.NULLS`).
NULL_WORDS = {"volume": "volume-matched", "grammar": "grammar-faithful", "empirical": "empirical-grammar"}
#: The per-trial column of `memorder_trials.csv` that says why a null is undefined; trials named at most.
NULL_NOTES = {"volume": "vol_note", "empirical": "emp_note"}
MAX_NAMED = 10


def order_lines(pooled: pa.Table | None) -> list[str]:
    """Per group and overall: each order statistic against the volume-matched null (the headline), with the
    grammar-faithful and empirical-grammar nulls beside it, each on the trials where it is defined."""
    from analysis.memorder import NULLS

    if pooled is None or pooled.num_rows == 0:
        return ["Memorization order: no samples/copies tables in the store."]
    out = []
    for r in pooled.to_pylist():
        who = "all trials" if r["tail"] == "*" else f"{r['tail']} L={r['L']}"
        out.append(f"Memorization order, {who} ({r.get('n_rho_proto', 0)} trials): observed vs the volume-matched "
                   "null (the model's own copies per evaluation, drawn from T by p(x)), the grammar-faithful and "
                   "empirical-grammar nulls beside it:")
        for name, words in ORDER_WORDS.items():
            nulls = [(null, infix) for null, infix in NULLS.items() if f"{name}{infix}_excess_mean" in r]
            parts = [_null_part(r, name, null, infix, first=k == 0) for k, (null, infix) in enumerate(nulls)]
            if parts:
                out.append(f"  {words}: " + "; ".join(parts) + ".")
    return out


def _null_part(r: dict[str, Any], name: str, null: str, infix: str, first: bool) -> str:
    """Statistic `name` against one null (column infix `infix`) on the trials where both are defined, its excess
    with its interval over clusters (the verdict when `first`: the headline null), undefined trials named."""
    key = f"{name}{infix}"
    n, n_undef = r.get(f"n_{key}") or 0, r.get(f"n_{key}_undefined") or 0
    if not n:
        note = NULL_NOTES.get(null)
        why = (f"undefined in all {n_undef} trials" + (f" (why per trial: {note} in memorder_trials.csv)" if note
                                                       else "") if n_undef else "no trials")
        return f"vs {NULL_WORDS[null]}: not estimated: {why}"
    ids = str(r.get(f"{key}_undefined") or "").split()
    more = f" and {len(ids) - MAX_NAMED} more" if len(ids) > MAX_NAMED else ""
    undefined = f"undefined in {n_undef}: {' '.join(ids[:MAX_NAMED])}{more}" if n_undef else ""
    lo, hi = r.get(f"{key}_excess_lo"), r.get(f"{key}_excess_hi")
    obs = r.get(f"{key}_obs_mean", r.get(f"{name}_mean") if not infix else None)
    left = r.get(f"n_{key}_no_null") or 0
    same = f"the same {n} trials" + (f"; {left} trial(s) without this null left out" if left else "")
    text = (f"{_f(obs)} vs {NULL_WORDS[null]} {_f(r.get(f'{key}_null_mean'))} ({same}): excess "
            f"{_f(r.get(f'{key}_excess_mean'))} ({_ci(lo, hi, why=_units(n, r.get(f'n_clusters_{key}')))})")
    if first:
        text += " -> " + verdict(lo, hi, "prototypical first, beyond the null", "prototypical later than the null",
                                 "not distinguishable from the null")
    return text + (f" [{undefined}]" if undefined else "")


def slop_lines(pooled: pa.Table) -> list[str]:
    """The all-levels slop before memorization, per group, against each reference and the reference's null."""
    if pooled.num_rows == 0:
        return ["Slop: no non-copy generations with parsed nodes."]
    out = []
    for r in pooled.to_pylist():
        if r["level"] != -1:
            continue
        why = _units(r["n_before"], r.get("n_clusters_before"))
        head = (f"Slop, {r['tail']} L={r['L']}: overprod of non-copies before tau_mem {_f(r['overprod_before'])} "
                f"against the grammar ({_ci(r['overprod_before_lo'], r['overprod_before_hi'], why=why)}; "
                f"{r['n_before']} trials, ~{r['strings_before']:.0f} strings per evaluation)")
        if r.get("overprod_before_excess") is None:   # a store written before the slop nulls: the exact null is 0
            v = verdict(r["overprod_before_lo"], r["overprod_before_hi"], "common parts under-produced",
                        "common parts over-produced (slop)", "faithful within noise")
            out.append(f"{head}; null 0 -> {v}; after tau_mem {_f(r['overprod_after'])} ({r['n_after']} trials).")
            continue
        v = verdict(r["overprod_before_excess_lo"], r["overprod_before_excess_hi"],
                    "common parts under-produced", "common parts over-produced beyond T's part frequencies (slop)",
                    "no more than learning T's part frequencies gives")
        why = _units(r.get("n_overprod_before_null"), r.get("n_clusters_overprod_before_null"))
        out.append(f"{head}; the empirical-grammar null at each trial's N gives {_f(r['overprod_before_null'])} "
                   f"(sd {_f(r['overprod_before_null_sd'], False)}): excess {_f(r['overprod_before_excess'])} "
                   f"({_ci(r['overprod_before_excess_lo'], r['overprod_before_excess_hi'], why=why)}) -> {v}; "
                   f"after tau_mem {_f(r['overprod_after'])} ({r['n_after']} trials).")
        if r.get("overprod_train_before_excess") is not None:
            why = _units(r.get("n_overprod_train_before_null"), r.get("n_clusters_overprod_train_before_null"))
            t = verdict(r["overprod_train_before_excess_lo"], r["overprod_train_before_excess_hi"],
                        "reversion to the mean beyond the grammar's", "sharpening: common parts beyond T's share",
                        "as the grammar reverts")
            out.append(f"  against T's own frequencies {_f(r['overprod_train_before'])} vs the grammar's "
                       f"{_f(r['overprod_train_before_null'])} (sd {_f(r['overprod_train_before_null_sd'], False)}): "
                       f"excess {_f(r['overprod_train_before_excess'])} ("
                       f"{_ci(r['overprod_train_before_excess_lo'], r['overprod_train_before_excess_hi'], why=why)}"
                       f") -> {t}.")
    return out


def regime_counts(onsets: pa.Table, theta: float = 0.5) -> dict[str, Any]:
    """Per SCIENCE.md "Regime, per trial": `window` trials with tau_gen and tau_mem both observed at `theta` and
    tau_gen < tau_mem; `gen_censored_mem` trials that generalized while tau_mem is censored (with their last
    steps: a window not yet seen, never counted as one); `gen_seen` trials with tau_gen observed; `n` trials."""
    t = onsets.filter(pa.compute.equal(onsets.column("theta"), theta)).to_pylist()
    by: dict[str, dict[str, Any]] = {}
    for r in t:
        by.setdefault(r["trial_id"], {})[r["onset"]] = r
    gen = [d for d in by.values() if "gen" in d and not d["gen"]["censored"]]
    window = [d for d in gen if "mem" in d and not d["mem"]["censored"] and d["gen"]["tau"] < d["mem"]["tau"]]
    cens = [d for d in gen if d.get("mem", {}).get("censored", True)]
    last = sorted(float(d["mem"]["last_step"]) for d in cens if "mem" in d and d["mem"].get("last_step") is not None)
    return dict(n=len(by), window=len(window), gen_censored_mem=len(cens), censored_last_steps=last,
                gen_seen=len(gen))


def trial_regimes(onsets: pa.Table, theta: float = 0.5) -> dict[str, str]:
    """Per trial: "generalize-then-memorize" when tau_gen was observed at `theta` (it generalized; memorization
    observed or not yet), else "memorize-only" (SCIENCE.md "Regime, per trial", as `regime_counts` reads it)."""
    out: dict[str, str] = {}
    for r in onsets.filter(pa.compute.equal(onsets.column("theta"), theta)).to_pylist():
        out.setdefault(r["trial_id"], "memorize-only")
        if r["onset"] == "gen" and not r["censored"]:
            out[r["trial_id"]] = "generalize-then-memorize"
    return out


def regime_line(onsets: pa.Table, theta: float = 0.5) -> str:
    """How many trials generalized, then memorized (both onsets observed, tau_gen < tau_mem) at `theta`, and, as a
    separate count, how many generalized with memorization censored (their last steps)."""
    c = regime_counts(onsets, theta)
    rule = ""
    if "consecutive" in onsets.column_names and onsets.num_rows:
        k = int(onsets.column("consecutive")[0].as_py())
        rule = "; onsets at the first crossing" if k == 1 else f"; onsets need {k} evaluations in a row"
    if c["gen_seen"] == 0:
        return (f"Regime: memorize-only. No trial generalized (tau_gen at theta={theta:g} never observed in {c['n']} "
                "trials): statements about a generalize-then-memorize window cannot be made here.")
    out = (f"Regime: {c['window']} of {c['n']} trials generalized, then memorized (tau_gen < tau_mem, both observed "
           f"at theta={theta:g}{rule}); {c['gen_seen']} reached tau_gen at all.")
    if c["gen_censored_mem"]:
        steps = ", ".join(f"{s:.0f}" for s in c["censored_last_steps"])
        out += (f" {c['gen_censored_mem']} generalized, memorization censored (not memorized by their last step: "
                f"{steps}).")
    return out


def trials_line(trials: pa.Table) -> str:
    """Counts by status, seeds and grammar seeds."""
    status: dict[str, int] = {}
    for s in trials.column("status").to_pylist() if "status" in trials.column_names else []:
        status[str(s)] = status.get(str(s), 0) + 1
    seeds = sorted(set(trials.column("seed").to_pylist())) if "seed" in trials.column_names else []
    gseeds = (sorted(set(trials.column("cfg.grammar.seed").to_pylist()))
              if "cfg.grammar.seed" in trials.column_names else [])
    what = ", ".join(f"{v} {k}" for k, v in sorted(status.items()))
    g = f"; grammar seeds {gseeds}" if gseeds else ""
    return f"{trials.num_rows} trials ({what}); seeds {seeds}{g}."


def headline(trials: pa.Table, onsets: pa.Table, laws: pa.Table, order_pooled: pa.Table | None,
             slop_pooled: pa.Table, theta: float = 0.5) -> list[str]:
    """Every headline sentence, in reading order."""
    return ([trials_line(trials)] + law_lines(laws, theta) + order_lines(order_pooled) + slop_lines(slop_pooled)
            + [regime_line(onsets, theta)])
