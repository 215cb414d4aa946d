"""Placement at matched entropy: the onset delay of a fat tail at the leaves against the same tail near the root.

The study's two placement tails have the same exact H(x); fitting the joint law (common beta, one intercept per
tail) on those two alone makes the first (the tail near the root, `@0,1`) the reference, so the other row's
`shift` is log(tau_low / tau_high) at equal P, with the report's bootstrap interval. The claim "diversity at high
levels staves off memorization" predicts a negative shift (the leaves' tail memorized earlier).

    .venv/bin/python docs/findings/placement.py runs/study/store docs/findings/study/placement.csv
"""
from __future__ import annotations

import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from analysis import fits, onset  # noqa: E402
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


def main(store_uri: str, out_csv: str) -> None:
    st = Store(store_uri)
    ons = pa.concat_tables([onset.onsets(st, thetas=THETAS, metric=m, gen_metric=None)
                            for m in ("mem_twin", "copy_frac")], promote_options="permissive")
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
    if len(sys.argv) != 3:
        sys.exit("usage: placement.py STORE OUT.csv")
    main(sys.argv[1], sys.argv[2])
