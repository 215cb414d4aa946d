"""Refit every law and pooled number of the findings page from the committed per-trial CSVs alone (no store, no
sweep): a reader can check the page's numbers, and any other analysis of them, from docs/findings/<sweep>/.

Reads, per sweep folder: onsets_trials.csv (docs/findings/trials.py), memorder_trials.csv, slop_trials.csv and
flags.csv (the report's; flagged trials stay out of the laws and by-P cells, as there). Writes into OUT/<sweep>/ the files run.sh makes from the store, with the same calls:
laws.csv (the report's laws), laws_copy_frac.csv, memorder.csv, slop.csv, by_p.csv (regime, tails, study),
window_cells.csv, window_laws.csv and window_pooled.csv (every sweep), and overest_auc.csv, overest_phase.csv
and overest_severity.csv where the folder has overest_trials.csv (docs/findings/overest.py),
laws_covariates.csv and placement.csv (study, when its placement tails are there).

    .venv/bin/python docs/findings/refit.py docs/findings OUT [SWEEP ...]

and compares each refit file with the folder's own (the one run.sh made from the store): numbers must agree to
1e-9 relative, text exactly; exit status 1 names every file and column that does not.
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
import placement  # noqa: E402
import overest  # noqa: E402
import window  # noqa: E402
from analysis import fits, flags, memorder, onset, slop  # noqa: E402
from analysis.registry import DEFAULT_GEN_METRIC, DEFAULT_MEM_METRIC  # noqa: E402

BY_P_SWEEPS = ("regime", "tails", "study")
COVARIATES = ("entropy", "entropy_tilt")


def read_csv(path: Path) -> pa.Table:
    """A committed CSV with text columns kept as text (a tail label or a note is never parsed as a number)."""
    text = {"trial_id", "tail", "tail_family", "tail_levels", "onset", "metric", "vol_note", "emp_note", "scope",
            "reference", "status", "cluster", "reason"}
    head = path.read_text().split("\n", 1)[0].replace('"', "").split(",")
    return pacsv.read_csv(path, convert_options=pacsv.ConvertOptions(
        column_types={c: pa.string() for c in head if c in text}, strings_can_be_null=False))


def _metric(ons: pa.Table, mem: str, thetas: tuple[float, ...] | None = None) -> pa.Table:
    """Onsets of memorization metric `mem` with the generalization onsets, optionally at `thetas` only."""
    keep = pc.or_(pc.and_(pc.equal(ons.column("onset"), "mem"), pc.equal(ons.column("metric"), mem)),
                  pc.and_(pc.equal(ons.column("onset"), "gen"), pc.equal(ons.column("metric"), DEFAULT_GEN_METRIC)))
    t = ons.filter(keep)
    return t if thetas is None else t.filter(pc.is_in(t.column("theta"), value_set=pa.array(thetas, pa.float64())))


def refit(folder: Path, out: Path) -> list[str]:
    """Every refit file of one sweep folder; returns the names written."""
    out.mkdir(parents=True, exist_ok=True)
    every = read_csv(folder / "onsets_trials.csv")
    # the laws and by-P cells leave flagged trials out, as the report and `memsweep fit` do (its flags.csv)
    ons = (flags.drop_flagged_onsets(every, read_csv(folder / "flags.csv")) if (folder / "flags.csv").exists()
           else every)
    written = {}
    written["laws.csv"] = fits.fit_laws(_metric(ons, DEFAULT_MEM_METRIC, onset.DEFAULT_THETAS), theta=None)
    written["laws_copy_frac.csv"] = fits.fit_laws(_metric(ons, "copy_frac", (0.1, 0.5, 0.9)), theta=[0.1, 0.5, 0.9])
    order_trials = read_csv(folder / "memorder_trials.csv") if (folder / "memorder_trials.csv").exists() else None
    slop_trials = read_csv(folder / "slop_trials.csv") if (folder / "slop_trials.csv").exists() else pa.table({})
    if order_trials is not None:
        written["memorder.csv"] = memorder.pool_order(order_trials, seed=0)
    if slop_trials.num_rows:
        written["slop.csv"] = slop.pool_trial_slop(slop_trials)
    if folder.name in BY_P_SWEEPS and order_trials is not None:
        written["by_p.csv"] = by_p.cells(_metric(ons, DEFAULT_MEM_METRIC, (by_p.THETA,)), order_trials, slop_trials)
    written.update(window.tables(ons, order_trials, slop_trials))
    if (folder / "overest_trials.csv").exists():
        import pandas as pd
        frames = [pd.read_csv(folder / f"overest_{k}.csv") for k in ("cells", "trials", "curves")]
        written.update({name: pa.Table.from_pandas(df, preserve_index=False)
                        for name, df in overest.pooled(*frames).items()})
    if folder.name == "study":
        written["laws_covariates.csv"] = fits.fit_laws(_metric(ons, DEFAULT_MEM_METRIC, (0.1, 0.5)),
                                                       theta=[0.1, 0.5], covariates=COVARIATES)
        if {placement.HIGH, placement.LOW} <= set(every.column("tail").to_pylist()):
            written["placement.csv"] = placement.placement_laws(ons)       # flagged left out, as placement.py
    for name, table in written.items():
        pacsv.write_csv(table, out / name)
    return list(written)


def disagreements(a: pa.Table, b: pa.Table) -> list[str]:
    """Columns where two tables differ (numbers beyond 1e-9 relative, NaN = NaN; text exactly)."""
    if a.num_rows != b.num_rows or set(a.column_names) != set(b.column_names):
        return [f"shape {a.num_rows}x{sorted(a.column_names)} vs {b.num_rows}x{sorted(b.column_names)}"]
    bad = []
    for c in a.column_names:
        x, y = a.column(c).to_pylist(), b.column(c).to_pylist()
        num = all(isinstance(v, (int, float)) or v is None for v in x + y)
        if num:
            xa, ya = (np.array([np.nan if v is None else v for v in z], float) for z in (x, y))
            same = np.allclose(xa, ya, rtol=1e-9, atol=1e-12, equal_nan=True)
        else:
            same = [("" if v is None else str(v)) for v in x] == [("" if v is None else str(v)) for v in y]
        if not same:
            bad.append(c)
    return bad


def main(findings: str, out: str, sweeps: list[str]) -> int:
    root = Path(findings)
    folders = [root / s for s in sweeps] if sweeps else sorted(p.parent for p in root.glob("*/onsets_trials.csv"))
    if not folders:
        sys.exit(f"refit.py: no <sweep>/onsets_trials.csv under {root}; run docs/findings/run.sh first")
    failed = 0
    for folder in folders:
        names = refit(folder, Path(out) / folder.name)
        for name in names:
            if not (folder / name).exists():
                print(f"{folder.name}/{name}: refit (no file from the store to compare with)")
                continue
            bad = disagreements(read_csv(folder / name), read_csv(Path(out) / folder.name / name))
            failed += bool(bad)
            print(f"{folder.name}/{name}: " + (f"DIFFERS in {', '.join(bad)}" if bad else "refit agrees"))
    return 1 if failed else 0


if __name__ == "__main__":
    if len(sys.argv) < 3:
        sys.exit("usage: refit.py FINDINGS_DIR OUT_DIR [SWEEP ...]")
    sys.exit(main(sys.argv[1], sys.argv[2], sys.argv[3:]))
