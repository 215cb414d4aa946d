"""Per (tail, P) cell of a sweep: onsets, the order statistic beside its null, and slop on non-copies.

The report pools over P within a (tail, L) group; the regime question needs the cells apart (below the
generalization boundary a model memorizes only, above it generalizes first). This reuses the report's own pooling
(`pool_order`, `pool_slop`) with the group label set to "<tail> P=<P>", so every number means what it means there.

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
from analysis import memorder, onset, slop  # noqa: E402
from analysis.store import Store  # noqa: E402

THETA = 0.5


def _cell_labels(t: pa.Table, trials: pa.Table) -> pa.Table:
    """`t` with its `tail` column replaced by "<tail> P=<P>" (the trial's own tail and P)."""
    lab = {r["trial_id"]: f"{r['tail']} P={r['P']}" for r in trials.select(["trial_id", "tail", "P"]).to_pylist()}
    col = pa.array([lab.get(i) for i in t.column("trial_id").to_pylist()], pa.string())
    t = t.drop_columns([c for c in ("tail",) if c in t.column_names])
    return t.append_column("tail", col)


def onset_cells(ons: pa.Table, trials: pa.Table) -> dict[str, dict[str, float]]:
    """Per cell: trials, median tau_gen / tau_mem at THETA over observed trials, and how many were observed."""
    ons = _cell_labels(ons.filter(pc.equal(ons.column("theta"), THETA)), trials)
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


def main(store_uri: str, out_csv: str) -> None:
    st = Store(store_uri)
    trials = st.read("trials")
    ons = onset.onsets(st, thetas=(THETA,))
    cells = onset_cells(ons, trials)
    order = memorder.pool_order(_cell_labels(memorder.memorder(st), trials))
    sl = slop.pool_slop(_cell_labels(slop.slop(st, theta=THETA), trials))
    sl = sl.filter(pc.equal(sl.column("level"), slop.ALL_LEVELS))
    order_rows = {r["tail"]: r for r in order.to_pylist()}
    slop_rows = {r["tail"]: r for r in sl.to_pylist()}
    rows = []
    for cell, on in sorted(cells.items(), key=lambda kv: (kv[0].split(" P=")[0], int(kv[0].split(" P=")[1]))):
        o, s = order_rows.get(cell, {}), slop_rows.get(cell, {})
        tail, P = cell.split(" P=")
        rows.append({"tail": tail, "P": int(P), **on,
                     **{k: o.get(k) for k in ("rho_proto_mean", "rho_proto_null_mean", "rho_proto_excess_mean",
                                              "rho_proto_excess_lo", "rho_proto_excess_hi", "rho_twin_excess_mean",
                                              "rho_twin_excess_lo", "rho_twin_excess_hi")},
                     **{k: s.get(k) for k in ("n_before", "overprod_before", "overprod_before_lo",
                                              "overprod_before_hi", "strings_before", "n_after", "overprod_after",
                                              "overprod_after_lo", "overprod_after_hi")}})
    Path(out_csv).parent.mkdir(parents=True, exist_ok=True)
    pacsv.write_csv(pa.Table.from_pylist(rows), out_csv)
    print(f"{len(rows)} cells written to {out_csv}")


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit("usage: by_p.py STORE OUT.csv")
    main(sys.argv[1], sys.argv[2])
