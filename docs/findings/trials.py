"""Per-trial onsets of a sweep, for every metric and threshold the findings fit: the file docs/findings/refit.py
refits the laws from (beside the report's memorder_trials.csv and slop_trials.csv).

Rows: the onsets table (`analysis.onset.onsets_from_tables`: trial, onset, metric, theta, tau, censored and the
trial columns the laws use, covariates included) for the default memorization metric with novel_valid_frac, and
for copy_frac, at theta 0.1, 0.5 and 0.9.

    .venv/bin/python docs/findings/trials.py runs/study/store docs/findings/study/onsets_trials.csv
"""
from __future__ import annotations

import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from analysis import onset  # noqa: E402
from analysis.registry import DEFAULT_GEN_METRIC, DEFAULT_MEM_METRIC  # noqa: E402
from analysis.store import Store  # noqa: E402

THETAS = (0.1, 0.5, 0.9)
METRICS = (DEFAULT_MEM_METRIC, "copy_frac")


def onsets_trials(store: Store) -> pa.Table:
    """Both memorization metrics' onsets (and the generalization onset once) at THETAS, one row per trial and
    (onset, metric, theta)."""
    parts = [onset.onsets(store, thetas=THETAS, metric=METRICS[0], gen_metric=DEFAULT_GEN_METRIC)]
    for metric in METRICS[1:]:
        t = onset.onsets(store, thetas=THETAS, metric=metric, gen_metric=None)
        parts.append(t.filter(pc.equal(t.column("onset"), "mem")))
    return pa.concat_tables(parts, promote_options="permissive")


def main(store_uri: str, out_csv: str) -> None:
    table = onsets_trials(Store(store_uri))
    Path(out_csv).parent.mkdir(parents=True, exist_ok=True)
    pacsv.write_csv(table, out_csv)
    print(f"{table.num_rows} onset rows written to {out_csv}")


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit("usage: trials.py STORE OUT.csv")
    main(sys.argv[1], sys.argv[2])
