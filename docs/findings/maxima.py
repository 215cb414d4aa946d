"""Per trial of a sweep: the largest novel_valid_frac, mem_twin and copy_frac it reached, and its last step.

The regime table of docs/findings.md reads these (a censored trial's onset says only "not yet"; its maximum says
how close it came).

    .venv/bin/python docs/findings/maxima.py runs/regime/store docs/findings/regime/maxima.csv
"""
from __future__ import annotations

import sys
from pathlib import Path

import pyarrow.csv as pacsv

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from analysis.store import Store  # noqa: E402

QUERY = """
select t.tail, t.L, t.P, t."cfg.grammar.seed" as grammar_seed, t.seed, t.status,
       max(c.novel_valid_frac) as max_novel_valid_frac, max(c.mem_twin) as max_mem_twin,
       max(c.copy_frac) as max_copy_frac, max(c.step) as last_step
from curves c join trials t using (trial_id)
group by all order by t.tail, t.L, t.P, grammar_seed, t.seed
"""


def main(store_uri: str, out_csv: str) -> None:
    table = Store(store_uri).sql(QUERY)
    Path(out_csv).parent.mkdir(parents=True, exist_ok=True)
    pacsv.write_csv(table, out_csv)
    print(table.to_pandas().round(2).to_string(index=False))


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit("usage: maxima.py STORE OUT.csv")
    main(sys.argv[1], sys.argv[2])
