"""Placement at matched entropy: the onset delay of a fat tail at the leaves against the same tail near the root.

The study's two placement tails have the same exact H(x); fitting the joint law (common beta, one intercept per
tail) on those two alone makes the first (the tail near the root, `@0,1`) the reference, so the other row's
`shift` is log(tau_low / tau_high) at equal P, with the report's bootstrap interval. The claim "diversity at high
levels staves off memorization" predicts a negative shift (the leaves' tail memorized earlier). Trials that
`analysis.flags` flags (chance > 1%, p(T) > 0.5, null sd > theta/4 at a row's theta) are left out, as `fit` and
the report leave them out; `--keep-flagged` keeps them.

    .venv/bin/python docs/findings/placement.py runs/study/store docs/findings/study/placement.csv [--keep-flagged]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from analysis import fits, flags as flagmod, onset  # noqa: E402
from analysis.store import Store  # noqa: E402

HIGH, LOW = "power(a=1)@0,1/power(a=2.393)", "power(a=1)@2/power(a=3)"
THETAS = (0.1, 0.5)


def placement_laws(ons: pa.Table) -> pa.Table:
    """The joint and shift rows of the two placement tails, per metric (mem_twin, copy_frac), from an onsets table
    holding both metrics' memorization onsets (the store's, or the committed onsets_trials.csv)."""
    parts = []
    for metric in ("mem_twin", "copy_frac"):
        m = ons.filter(pc.and_(pc.equal(ons.column("metric"), metric), pc.equal(ons.column("onset"), "mem")))
        m = m.filter(pc.is_in(m.column("tail"), value_set=pa.array([HIGH, LOW])))
        m = m.filter(pc.is_in(m.column("theta"), value_set=pa.array(THETAS, pa.float64())))
        found = set(m.column("tail").to_pylist())
        if found != {HIGH, LOW}:
            sys.exit(f"placement.py: the onsets lack the placement tails {sorted({HIGH, LOW} - found)}")
        laws = fits.fit_laws(m, theta=list(THETAS))
        parts.append(laws.filter(pc.is_in(laws.column("scope"), value_set=pa.array(["joint", "shift"]))))
    return pa.concat_tables(parts, promote_options="permissive")


def main(store_uri: str, out_csv: str, keep_flagged: bool = False) -> None:
    st = Store(store_uri)
    ons = pa.concat_tables([onset.onsets(st, thetas=THETAS, metric=m, gen_metric=None)
                            for m in ("mem_twin", "copy_frac")], promote_options="permissive")
    flags = flagmod.trial_flags(st.read("trials"), min(THETAS))
    for line in flagmod.flag_lines(flags, min(THETAS), keep_flagged, per_trial_max=0, every="memsweep report "
                                   "lists every trial"):
        print(line)
    if not keep_flagged:                       # left out as `memsweep fit` and the report leave them out
        ons = flagmod.drop_flagged_onsets(ons, flags)
    out = placement_laws(ons)
    Path(out_csv).parent.mkdir(parents=True, exist_ok=True)
    pacsv.write_csv(out, out_csv)
    rows = out.to_pylist()
    for r in (r for r in rows if r["scope"] == "shift" and r["tail"] == LOW):
        joint = next(j for j in rows if j["scope"] == "joint" and j["metric"] == r["metric"]
                     and j["theta"] == r["theta"] and j["onset"] == r["onset"])
        print(f"{r['metric']:9s} theta={r['theta']}: log(tau_low/tau_high) = {r['shift']:+.2f} "
              f"[{r['shift_lo']:+.2f}, {r['shift_hi']:+.2f}] ({joint['n_obs']} observed, {joint['n_cens']} censored)")


if __name__ == "__main__":
    cli = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    cli.add_argument("store")
    cli.add_argument("out_csv", metavar="OUT.csv")
    cli.add_argument("--keep-flagged", action="store_true", help="keep the trials analysis.flags flags")
    args = cli.parse_args()
    main(args.store, args.out_csv, args.keep_flagged)
