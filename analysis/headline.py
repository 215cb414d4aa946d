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


def order_lines(pooled: pa.Table | None) -> list[str]:
    """Per group and overall: each order statistic beside its null, with the excess and its verdict."""
    if pooled is None or pooled.num_rows == 0:
        return ["Memorization order: no samples/copies tables in the store."]
    out = []
    for r in pooled.to_pylist():
        who = "all trials" if r["tail"] == "*" else f"{r['tail']} L={r['L']}"
        out.append(f"Memorization order, {who} ({r.get('n_rho_proto', 0)} trials), observed vs a grammar-faithful "
                   "generator (the null):")
        for name, words in ORDER_WORDS.items():
            if f"{name}_mean" not in r:
                continue
            v = verdict(r.get(f"{name}_excess_lo"), r.get(f"{name}_excess_hi"),
                        "prototypical first, beyond the null", "prototypical later than the null",
                        "not distinguishable from the null")
            why = _units(r.get(f"n_{name}"), r.get(f"n_clusters_{name}"))
            left = r.get(f"n_{name}_no_null") or 0
            extra = f"; {left} trial(s) without a null left out" if left else ""
            out.append(f"  {words} {_f(r[f'{name}_mean'])} vs null {_f(r.get(f'{name}_null_mean'))} (the same "
                       f"{r.get(f'n_{name}', 0)} trials{extra}): excess {_f(r.get(f'{name}_excess_mean'))} "
                       f"({_ci(r.get(f'{name}_excess_lo'), r.get(f'{name}_excess_hi'), why=why)}) -> {v}.")
    return out


def slop_lines(pooled: pa.Table) -> list[str]:
    """The all-levels slop before memorization, per group, against its null (0)."""
    if pooled.num_rows == 0:
        return ["Slop: no non-copy generations with parsed nodes."]
    out = []
    for r in pooled.to_pylist():
        if r["level"] != -1:
            continue
        v = verdict(r["overprod_before_lo"], r["overprod_before_hi"], "common parts under-produced",
                    "common parts over-produced (slop)", "faithful within noise")
        why = _units(r["n_before"], r.get("n_clusters_before"))
        out.append(f"Slop, {r['tail']} L={r['L']}: overprod of non-copies before tau_mem {_f(r['overprod_before'])} "
                   f"({_ci(r['overprod_before_lo'], r['overprod_before_hi'], why=why)}; null 0; {r['n_before']} "
                   "trials, "
                   f"~{r['strings_before']:.0f} strings per evaluation) -> {v}; after tau_mem "
                   f"{_f(r['overprod_after'])} ({r['n_after']} trials).")
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
