"""Markdown table of every probe in results.jsonl (and results.csv beside it): config, onsets, speed.

    .venv/bin/python explore/regime/table.py [results.jsonl]

tau_gen = first step novel_valid_frac >= 0.5, tau_mem = first step copy_frac >= 0.5 (log-step interpolated);
'>' marks a right-censored onset (never reached by the last step). steps/s excludes evaluation time.
"""
from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def fmt(r: dict, key: str, theta: float) -> str:
    tau, cens = r[f"tau_{key}@{theta}"], r[f"cens_{key}@{theta}"]
    return f">{tau:,.0f}" if cens else f"{tau:,.0f}"


def describe(o: dict) -> str:
    g, m, t = o.get("grammar", {}), o.get("model", {}), o.get("train", {})
    parts = [f"{k}={v}" for k, v in g.items()]
    parts += [f"{k}={v}" for k, v in m.items()]
    parts += [f"{k}={v}" for k, v in t.items() if k != "steps"]
    if "tail" in o:
        parts.append(f"tail={o['tail']}")
    return ", ".join(parts)


def main(path: Path) -> None:
    rows = [json.loads(x) for x in path.read_text().splitlines() if x.strip()]
    out = []
    print("| name | changes from base | P | P_max | tau_gen 0.1 | tau_gen 0.5 | tau_mem 0.1 | tau_mem 0.5 | "
          "max novel_valid | last copy_frac | final step | steps/s | wall s |")
    print("|---" * 13 + "|")
    for r in rows:
        o = r["overrides"]
        rec = {"name": r["name"], "changes": describe(o), "P": o.get("P", 1024), "P_max": r["P_max"],
               "tau_gen_0.1": fmt(r, "gen", 0.1), "tau_gen_0.5": fmt(r, "gen", 0.5),
               "tau_mem_0.1": fmt(r, "mem", 0.1), "tau_mem_0.5": fmt(r, "mem", 0.5),
               "max_novel_valid": r["max_novel_valid"], "last_copy_frac": r["last"]["copy_frac"],
               "final_step": r["final_step"], "steps_per_s": r["train_steps_per_s"], "wall_s": r["wall_s"]}
        out.append(rec)
        print("| " + " | ".join(str(v) for v in rec.values()) + " |")
    with open(path.with_suffix(".csv"), "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(out[0]))
        w.writeheader()
        w.writerows(out)


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else HERE / "results.jsonl")
