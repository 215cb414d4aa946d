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


def _ci(lo: Any, hi: Any, signed: bool = True) -> str:
    return f"95% CI {_f(lo, signed)} to {_f(hi, signed)}"


def verdict(lo: Any, hi: Any, below: str, above: str, within: str) -> str:
    """Word for an interval against 0: `below` if it excludes 0 from below, `above` from above, else `within`."""
    if lo is None or hi is None or not (math.isfinite(lo) and math.isfinite(hi)):
        return "undetermined (too few trials for an interval)"
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
                           f"P^{r['beta']:.2f} ({_ci(r['beta_lo'], r['beta_hi'], False)}; {r['n_obs']} observed, "
                           f"{r['n_cens']} censored trials).")
            elif r["scope"] == "joint":
                lr = "" if not math.isfinite(r["lr_p"] or math.nan) else f"; one common slope vs one per group: LR p = {r['lr_p']:.2g}"
                out.append(f"tau_{onset} jointly over groups: P^{r['beta']:.2f} ({_ci(r['beta_lo'], r['beta_hi'], False)})"
                           f"{lr}.")
            elif r["scope"] == "shift" and r["shift"] is not None and math.isfinite(r["shift"]) and r["shift"] != 0:
                out.append(f"  {r['tail']} L={r['L']} needs {math.exp(r['shift']):.2f}x the steps of "
                           f"{r['reference']} to reach it at equal P (95% CI {math.exp(r['shift_lo']):.2f}x to "
                           f"{math.exp(r['shift_hi']):.2f}x).")
    return out


#: The order nulls as the headline names them, headline null first (`analysis.memorder.NULLS`).
NULL_WORDS = {"volume": "volume-matched", "grammar": "grammar-faithful", "empirical": "empirical-grammar"}


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
            parts = []
            for null, infix in NULLS.items():
                if f"{name}{infix}_excess_mean" not in r:
                    continue
                lo, hi = r.get(f"{name}{infix}_excess_lo"), r.get(f"{name}{infix}_excess_hi")
                n_undef = r.get(f"n_{name}{infix}_undefined") or 0
                undefined = f"undefined in {n_undef}: {r.get(f'{name}{infix}_undefined')}"
                if not r.get(f"n_{name}{infix}"):
                    parts.append(f"vs {NULL_WORDS[null]}: not estimated ({undefined}; why per trial in "
                                 "memorder_trials.csv)")
                    continue
                text = (f"{_f(r.get(f'{name}{infix}_obs_mean'))} vs {NULL_WORDS[null]} "
                        f"{_f(r.get(f'{name}{infix}_null_mean'))}: excess {_f(r.get(f'{name}{infix}_excess_mean'))} "
                        f"({_ci(lo, hi)}, {r.get(f'n_{name}{infix}', 0)} trials)")
                if not parts:
                    text += " -> " + verdict(lo, hi, "prototypical first, beyond the null",
                                             "prototypical later than the null", "not distinguishable from the null")
                if n_undef:
                    text += f" [{undefined}]"
                parts.append(text)
            if parts:
                out.append(f"  {words}: " + "; ".join(parts) + ".")
    return out


def slop_lines(pooled: pa.Table) -> list[str]:
    """The all-levels slop before memorization, per group, against each reference and the reference's null."""
    if pooled.num_rows == 0:
        return ["Slop: no non-copy generations with parsed nodes."]
    out = []
    for r in pooled.to_pylist():
        if r["level"] != -1:
            continue
        head = (f"Slop, {r['tail']} L={r['L']}: overprod of non-copies before tau_mem {_f(r['overprod_before'])} "
                f"against the grammar ({_ci(r['overprod_before_lo'], r['overprod_before_hi'])}; "
                f"{r['n_before']} trials, ~{r['strings_before']:.0f} strings per evaluation)")
        if "overprod_before_excess" not in r:    # a store written before the slop nulls: the exact null is 0
            v = verdict(r["overprod_before_lo"], r["overprod_before_hi"], "common parts under-produced",
                        "common parts over-produced (slop)", "faithful within noise")
            out.append(f"{head}; null 0 -> {v}; after tau_mem {_f(r['overprod_after'])} ({r['n_after']} trials).")
            continue
        v = verdict(r["overprod_before_excess_lo"], r["overprod_before_excess_hi"],
                    "common parts under-produced", "common parts over-produced beyond T's part frequencies (slop)",
                    "no more than learning T's part frequencies gives")
        out.append(f"{head}; the empirical-grammar null at each trial's N gives {_f(r['overprod_before_null'])} "
                   f"(sd {_f(r['overprod_before_null_sd'], False)}): excess {_f(r['overprod_before_excess'])} "
                   f"({_ci(r['overprod_before_excess_lo'], r['overprod_before_excess_hi'])}) -> {v}; after tau_mem "
                   f"{_f(r['overprod_after'])} ({r['n_after']} trials).")
        if "overprod_train_before_excess" in r:
            t = verdict(r["overprod_train_before_excess_lo"], r["overprod_train_before_excess_hi"],
                        "reversion to the mean beyond the grammar's", "sharpening: common parts beyond T's share",
                        "as the grammar reverts")
            out.append(f"  against T's own frequencies {_f(r['overprod_train_before'])} vs the grammar's "
                       f"{_f(r['overprod_train_before_null'])} (sd {_f(r['overprod_train_before_null_sd'], False)}): "
                       f"excess {_f(r['overprod_train_before_excess'])} "
                       f"({_ci(r['overprod_train_before_excess_lo'], r['overprod_train_before_excess_hi'])}) -> {t}.")
    return out


def regime_line(onsets: pa.Table, theta: float = 0.5) -> str:
    """How many trials generalized before memorizing (tau_gen < tau_mem, both observed) at `theta`."""
    t = onsets.filter(pa.compute.equal(onsets.column("theta"), theta)).to_pylist()
    by: dict[str, dict[str, Any]] = {}
    for r in t:
        by.setdefault(r["trial_id"], {})[r["onset"]] = r
    n = len(by)
    gen_first = sum(1 for d in by.values() if "gen" in d and not d["gen"]["censored"]
                    and (d.get("mem", {}).get("censored", True) or d["gen"]["tau"] < d["mem"]["tau"]))
    gen_seen = sum(1 for d in by.values() if "gen" in d and not d["gen"]["censored"])
    if gen_seen == 0:
        return (f"Regime: memorize-only. No trial generalized (tau_gen at theta={theta:g} never observed in {n} "
                "trials): statements about a generalize-then-memorize window cannot be made here.")
    return (f"Regime: {gen_first} of {n} trials generalized before memorizing (tau_gen < tau_mem at "
            f"theta={theta:g}); {gen_seen} reached tau_gen at all.")


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
