"""The generalize-then-memorize window, counted per trial and fitted per arm (SCIENCE.md, "Regime, per trial").

At THETA (0.5), with the page's default metrics (`gen_share`, `mem_twin`, 2 evaluations in a row), a trial is in
the *generalizing* arm when tau_gen is observed and memorization did not come first (tau_mem censored, or
tau_gen < tau_mem), and in the *memorize-only* arm otherwise. The arm is fixed by generalization, never by
whether memorization was seen, so each arm's tau_mem law keeps its censored trials (Tobit lower bounds) and is not
conditioned on the outcome it fits.

- `cells`: per (tail, L, P): trials, how many generalized, memorized, and did both in that order (the window), with
  the median onsets over the trials where each was observed.
- `pooled`: per (tail, L, arm), the order statistic beside its three nulls (volume-matched, grammar-faithful,
  empirical-grammar) and slop before tau_mem against the grammar and against `T`, pooled over the arm's trials
  with cluster intervals (the report's own pooling on its per-trial rows).
- `laws`: per arm, the Tobit laws with cluster intervals: tau_gen over the generalizing arm, tau_mem over each arm
  separately; per tail groups with the joint law and each tail's shift against uniform rules where several tails
  are present (the `tails` sweep), and the placement pair's shift (fat at the leaves' parents against fat at the
  root, matched H(x)) in its own joint law.

Works from an onsets table alone (the store's, or the committed onsets_trials.csv), flagged trials left out, so
docs/findings/refit.py reproduces both files.

    .venv/bin/python docs/findings/window.py runs/regime/store docs/findings/regime
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
import by_p  # noqa: E402
from analysis import fits, memorder, slop  # noqa: E402
from analysis.registry import DEFAULT_GEN_METRIC, DEFAULT_MEM_METRIC  # noqa: E402

THETA = 0.5
GENERALIZING, MEMORIZE_ONLY = "generalizing", "memorize-only"
# The matched-entropy placement pair of the `tails` preset: the fat tail at the root production, at the 3 below it.
PLACEMENT = ("power(a=1)@0/power(a=1.181)", "power(a=1)@1/power(a=1.5)")


def default_onsets(ons: pa.Table) -> pa.Table:
    """The rows the window reads: tau_mem on the default memorization metric and tau_gen on the default
    generalization metric, at THETA."""
    keep = pc.or_(pc.and_(pc.equal(ons.column("onset"), "mem"), pc.equal(ons.column("metric"), DEFAULT_MEM_METRIC)),
                  pc.and_(pc.equal(ons.column("onset"), "gen"), pc.equal(ons.column("metric"), DEFAULT_GEN_METRIC)))
    t = ons.filter(keep)
    return t.filter(pc.equal(t.column("theta"), THETA))


def per_trial(ons: pa.Table) -> dict[str, dict]:
    """{trial_id: {tail, L, P, cluster, gen, mem (tau or NaN when censored), arm, window}} from default onset
    rows."""
    out: dict[str, dict] = {}
    for r in default_onsets(ons).to_pylist():
        d = out.setdefault(r["trial_id"], {"tail": r["tail"], "L": int(r["L"]), "P": int(r["P"]),
                                           "cluster": r.get("cluster"), "gen": np.nan, "mem": np.nan})
        d[r["onset"]] = np.nan if r["censored"] else float(r["tau"])
    for d in out.values():
        gen, mem = np.isfinite(d["gen"]), np.isfinite(d["mem"])
        d["window"] = bool(gen and mem and d["gen"] < d["mem"])
        d["arm"] = GENERALIZING if gen and (not mem or d["gen"] < d["mem"]) else MEMORIZE_ONLY
    return out


def cells(ons: pa.Table) -> pa.Table:
    """Per (tail, L, P): n, generalized (tau_gen observed), memorized (tau_mem observed), window (both, in that order),
    generalized with memorization censored, and the median observed onsets."""
    by: dict[tuple[str, int, int], list[dict]] = {}
    for d in per_trial(ons).values():
        by.setdefault((d["tail"], d["L"], d["P"]), []).append(d)
    rows = []
    for (tail, L, P), ds in sorted(by.items()):
        gen = np.array([d["gen"] for d in ds])
        mem = np.array([d["mem"] for d in ds])
        rows.append({"tail": tail, "L": L, "P": P, "n": len(ds), "generalized": int(np.isfinite(gen).sum()),
                     "memorized": int(np.isfinite(mem).sum()), "window": sum(d["window"] for d in ds),
                     "gen_mem_censored": int((np.isfinite(gen) & ~np.isfinite(mem)).sum()),
                     "tau_gen_median": float(np.nanmedian(gen)) if np.isfinite(gen).any() else np.nan,
                     "tau_mem_median": float(np.nanmedian(mem)) if np.isfinite(mem).any() else np.nan})
    return pa.Table.from_pylist(rows)


def _arm_rows(ons: pa.Table, arm_of: dict[str, str], arm: str, onset: str) -> pa.Table:
    ids = [t for t, a in arm_of.items() if a == arm]
    t = default_onsets(ons)
    t = t.filter(pc.and_(pc.equal(t.column("onset"), onset),
                         pc.is_in(t.column("trial_id"), value_set=pa.array(ids, pa.string()))))
    return t


def laws(ons: pa.Table) -> pa.Table:
    """The arms' laws at THETA (an `arm` column added): tau_gen over the generalizing arm, tau_mem over each arm;
    per tail with joint and shift rows; the placement pair's own joint law (`scope` placement-joint/-shift)."""
    arm_of = {t: d["arm"] for t, d in per_trial(ons).items()}
    parts = []
    fits_to_do = [(GENERALIZING, "gen"), (GENERALIZING, "mem"), (MEMORIZE_ONLY, "mem")]
    for arm, onset in fits_to_do:
        rows = _arm_rows(ons, arm_of, arm, onset)
        if rows.num_rows == 0:
            continue
        law = fits.fit_laws(rows, theta=THETA)
        parts.append(law.append_column("arm", pa.array([arm] * law.num_rows, pa.string())))
        pair = rows.filter(pc.is_in(rows.column("tail"), value_set=pa.array(PLACEMENT)))
        if set(pair.column("tail").to_pylist()) == set(PLACEMENT):
            pl = fits.fit_laws(pair, theta=THETA)
            pl = pl.filter(pc.is_in(pl.column("scope"), value_set=pa.array(["joint", "shift"])))
            scope = pa.array([f"placement-{s}" for s in pl.column("scope").to_pylist()], pa.string())
            pl = pl.set_column(pl.column_names.index("scope"), "scope", scope)
            parts.append(pl.append_column("arm", pa.array([arm] * pl.num_rows, pa.string())))
    return pa.concat_tables(parts, promote_options="permissive") if parts else pa.table({})


def _by_arm(rows: pa.Table, arm_of: dict[str, str]) -> pa.Table:
    """Per-trial rows of the trials with an arm, their `tail` relabelled "<tail> | <arm>" (the pooling's group)."""
    rows = rows.filter(pc.is_in(rows.column("trial_id"), value_set=pa.array(list(arm_of), pa.string())))
    lab = [f"{t} | {arm_of[i]}" for t, i in zip(rows.column("tail").to_pylist(), rows.column("trial_id").to_pylist())]
    return rows.drop_columns(["tail"]).append_column("tail", pa.array(lab, pa.string()))


def pooled(ons: pa.Table, order_trials: pa.Table, slop_trials: pa.Table) -> pa.Table:
    """Per (tail, L, arm): order beside its nulls and slop before/after tau_mem, pooled over the arm's trials."""
    arm_of = {t: d["arm"] for t, d in per_trial(ons).items()}
    order = memorder.pool_order(_by_arm(order_trials, arm_of))
    sl = slop.pool_trial_slop(_by_arm(slop_trials, arm_of)) if slop_trials.num_rows else pa.table({})
    sl = sl.filter(pc.equal(sl.column("level"), slop.ALL_LEVELS)) if sl.num_rows else sl
    o_rows = {(r["tail"], r["L"]): r for r in order.to_pylist() if r["tail"] != "*"}
    s_rows = {(r["tail"], r["L"]): r for r in sl.to_pylist() if r["tail"] != "*"} if sl.num_rows else {}
    rows = []
    for label, L in sorted(set(o_rows) | set(s_rows)):
        tail, arm = label.rsplit(" | ", 1)
        o, s = o_rows.get((label, L), {}), s_rows.get((label, L), {})
        rows.append({"tail": tail, "L": L, "arm": arm, **{k: o.get(k) for k in by_p.ORDER_KEYS},
                     **{k: s.get(k) for k in by_p.SLOP_KEYS}})
    return pa.Table.from_pylist(rows)


def tables(ons: pa.Table, order_trials: pa.Table | None = None,
           slop_trials: pa.Table | None = None) -> dict[str, pa.Table]:
    """{file name: table}: window_cells.csv, window_laws.csv, and window_pooled.csv given per-trial order rows."""
    out = {"window_cells.csv": cells(ons), "window_laws.csv": laws(ons)}
    if order_trials is not None and order_trials.num_rows:
        out["window_pooled.csv"] = pooled(ons, order_trials, slop_trials if slop_trials is not None else pa.table({}))
    return out


def write(ons: pa.Table, out_dir: Path, order_trials: pa.Table | None = None,
          slop_trials: pa.Table | None = None) -> dict[str, pa.Table]:
    """`tables` written into `out_dir`; returns them."""
    out = tables(ons, order_trials, slop_trials)
    out_dir.mkdir(parents=True, exist_ok=True)
    for name, table in out.items():
        pacsv.write_csv(table, out_dir / name)
    return out


def main(store_uri: str, out_dir: str) -> None:
    from analysis import flags as flagmod, onset
    from analysis.store import Store

    st = Store(store_uri)
    fl = flagmod.trial_flags(st.read("trials"), THETA)
    ons = flagmod.drop_flagged_onsets(onset.onsets(st, thetas=(THETA,)), fl)
    bad = set(flagmod.flagged_ids(fl))
    kept = [t for t in fl.column("trial_id").to_pylist() if t not in bad]
    tables = write(ons, Path(out_dir), memorder.memorder(st, trials=kept),
                   slop.trial_slop(slop.slop(st, trials=kept, theta=THETA)))
    print(tables["window_cells.csv"].to_pandas().to_string(index=False))


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit("usage: window.py STORE OUT_DIR")
    main(sys.argv[1], sys.argv[2])
