"""Per (tail, P) cell of a sweep: onsets, the order statistic beside its nulls, and slop on non-copies.

The report pools over P within a (tail, L) group; the regime question needs the cells apart (below the
generalization boundary a model memorizes only, above it generalizes first). This reuses the report's own pooling
(`pool_order`, `pool_trial_slop`) on its per-trial rows with the group label set to "<tail> P=<P>", so every number
means what it means there. `cells` works from per-trial tables alone (what docs/findings/refit.py reads back).
Trials flagged at THETA (`analysis.flags`) are left out, as the report leaves them out of its per-trial rows.

    .venv/bin/python docs/findings/by_p.py runs/regime/store docs/findings/regime/by_p.csv
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from analysis import flags as flagmod, memorder, onset, slop  # noqa: E402
from analysis.store import Store  # noqa: E402

THETA = 0.5
ORDER_KEYS = [f"rho_proto{infix}{part}" for infix in memorder.NULLS.values()
              for part in ("_null_mean", "_excess_mean", "_excess_lo", "_excess_hi")] + [
    "n_rho_proto_vol", "n_rho_proto", "n_rho_proto_emp", "n_clusters_rho_proto", "rho_proto_mean",
    "n_rho_proto_vol_undefined", "rho_twin_excess_mean", "rho_twin_excess_lo", "rho_twin_excess_hi"]
SLOP_KEYS = ["n_before", "overprod_before", "overprod_before_lo", "overprod_before_hi", "overprod_before_null",
             "overprod_before_excess", "overprod_before_excess_lo", "overprod_before_excess_hi",
             "overprod_train_before", "overprod_train_before_null", "overprod_train_before_excess",
             "overprod_train_before_excess_lo", "overprod_train_before_excess_hi", "strings_before", "n_after",
             "overprod_after", "overprod_after_lo", "overprod_after_hi"]


def _cell_labels(t: pa.Table) -> pa.Table:
    """`t` with its `tail` column replaced by "<tail> P=<P>" (each row's own tail and P)."""
    lab = pa.array([f"{a} P={b}" for a, b in zip(t.column("tail").to_pylist(), t.column("P").to_pylist())])
    return t.drop_columns(["tail"]).append_column("tail", lab)


def onset_cells(ons: pa.Table) -> dict[str, dict[str, float]]:
    """Per cell: trials, median tau_gen / tau_mem at THETA over observed trials, and how many were observed."""
    ons = _cell_labels(ons.filter(pc.equal(ons.column("theta"), THETA)))
    out: dict[str, dict[str, float]] = {}
    for r in ons.select(["tail", "onset", "tau", "censored"]).to_pylist():
        cell = out.setdefault(r["tail"], {"n": 0, "tau_gen": [], "tau_mem": []})
        cell[f"tau_{r['onset']}"].append(np.nan if r["censored"] else r["tau"])
    for cell in out.values():
        for k in ("tau_gen", "tau_mem"):
            v = np.asarray(cell[k], float)
            cell["n"] = len(v)
            cell[f"{k}_observed"] = int(np.isfinite(v).sum())
            cell[f"{k}_median"] = float(np.nanmedian(v)) if np.isfinite(v).any() else np.nan
            del cell[k]
    return out


def cells(ons: pa.Table, order_trials: pa.Table, slop_trials: pa.Table) -> pa.Table:
    """The by-P table from per-trial rows: onsets (default metric, at THETA), memorder_trials, slop_trials."""
    order = memorder.pool_order(_cell_labels(order_trials))
    sl = slop.pool_trial_slop(_cell_labels(slop_trials))
    sl = sl.filter(pc.equal(sl.column("level"), slop.ALL_LEVELS)) if sl.num_rows else sl
    order_rows = {r["tail"]: r for r in order.to_pylist()}
    slop_rows = {r["tail"]: r for r in sl.to_pylist()}
    rows = []
    for cell, on in sorted(onset_cells(ons).items(), key=lambda kv: (kv[0].split(" P=")[0], int(kv[0].split(" P=")[1]))):
        o, s = order_rows.get(cell, {}), slop_rows.get(cell, {})
        tail, P = cell.split(" P=")
        rows.append({"tail": tail, "P": int(P), **on, **{k: o.get(k) for k in ORDER_KEYS},
                     **{k: s.get(k) for k in SLOP_KEYS}})
    return pa.Table.from_pylist(rows)


def main(store_uri: str, out_csv: str) -> None:
    st = Store(store_uri)
    flags = flagmod.trial_flags(st.read("trials"), THETA)     # left out as the report leaves them out
    bad = set(flagmod.flagged_ids(flags))
    kept = [t for t in flags.column("trial_id").to_pylist() if t not in bad] if bad else None
    ons = flagmod.drop_flagged_onsets(onset.onsets(st, thetas=(THETA,)), flags)
    table = cells(ons, memorder.memorder(st, trials=kept), slop.trial_slop(slop.slop(st, trials=kept, theta=THETA)))
    Path(out_csv).parent.mkdir(parents=True, exist_ok=True)
    pacsv.write_csv(table, out_csv)
    print(f"{table.num_rows} cells written to {out_csv}")


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit("usage: by_p.py STORE OUT.csv")
    main(sys.argv[1], sys.argv[2])
