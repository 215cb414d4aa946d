"""One exploration trial for issue 12.3 (the generalizing regime): train, evaluate at log-spaced steps, and record
the curve and the onsets tau_gen (novel_valid_frac) and tau_mem (copy_frac) on one CPU thread, Ray-free.

    .venv/bin/python explore/regime/probe.py NAME '{"P": 1024, "grammar": {"v": 8}, "model": {"backbone": "tree_conv"}}'

The JSON overrides the base config below (nested dicts merge). Writes explore/regime/curves/NAME.csv (one row per
evaluation) and appends one summary line to explore/regime/results.jsonl. Stops at the step budget, at the wall-clock
cap (`max_wall_s`), or `stop_after` evaluations after copy_frac first reaches `stop_copy` (both onsets known).
Onsets are the first crossing of theta, interpolated linearly in log-step (as analysis.onset does); a crossing not
reached is reported as censored at the last step.
"""
from __future__ import annotations

import csv
import json
import math
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from models import ModelConfig, TrainConfig  # noqa: E402
from rhm import GrammarSpec  # noqa: E402
from sweeps.spec import TailSpec, TrialConfig  # noqa: E402
from sweeps.trial import build_data, build_trainer, evaluate_step  # noqa: E402

HERE = Path(__file__).resolve().parent
BASE = {
    "grammar": {"v": 16, "n_c": 4, "m": 4, "s": 2, "L": 3, "seed": 0},
    "tail": {"family": "uniform"},
    "P": 1024, "seed": 0, "heldout": 256, "n_gen": 256,
    "model": {"process": "masked", "backbone": "transformer", "width": 64, "depth": 2, "heads": 4},
    "train": {"steps": 20000, "batch_size": 32, "lr": 1e-3, "evals_per_decade": 8, "first_eval": 10},
    "max_wall_s": 1500, "stop_copy": 0.6, "stop_after": 1,
}
KEEP = ("train_loss", "heldout_loss", "copy_frac", "copy_baseline", "mem_excess", "valid_frac", "novel_valid_frac",
        "unique_gen_frac", "heldout_copy_frac", "heldout_mass", "near_copy_frac")


def merge(base: dict, over: dict) -> dict:
    out = dict(base)
    for k, v in over.items():
        out[k] = merge(base[k], v) if isinstance(v, dict) and isinstance(base.get(k), dict) else v
    return out


def onset(curve: list[tuple[int, float]], theta: float) -> tuple[float, bool]:
    """(tau, censored): first crossing of theta, interpolated in log-step; the last step when never reached."""
    prev = None
    for step, val in curve:
        if not math.isnan(val) and val >= theta:
            if prev is None or prev[1] >= theta:
                return float(step), False
            (s0, v0), (s1, v1) = prev, (step, val)
            f = (theta - v0) / (v1 - v0)
            return float(math.exp(math.log(s0) + f * (math.log(s1) - math.log(s0)))), False
        if not math.isnan(val):
            prev = (step, val)
    return float(curve[-1][0]) if curve else math.nan, True


def build(c: dict) -> TrialConfig:
    return TrialConfig(sweep="probe", store="unused", grammar=GrammarSpec(**c["grammar"]),
                       tail=TailSpec.from_dict(c["tail"]), P=c["P"], heldout=c["heldout"], data_seed=c["seed"],
                       model=ModelConfig(**c["model"]), train=TrainConfig(**c["train"], seed=c["seed"]),
                       n_gen=c["n_gen"], seed=c["seed"])


def main(name: str, overrides: dict) -> dict:
    torch.set_num_threads(1)
    c = merge(BASE, overrides)
    cfg = build(c)
    t0 = time.time()
    data = build_data(cfg)
    trainer = build_trainer(cfg, data, "cpu")
    heldout = torch.as_tensor(data.heldout, dtype=torch.long)
    rows: list[dict] = []
    t_eval = 0.0
    state = {"hit": None}

    def on_eval(tr, step: int) -> bool:
        nonlocal t_eval
        te = time.time()
        ev = evaluate_step(cfg, tr, data, step, heldout)
        t_eval += time.time() - te
        row = {"step": step, "wall": round(time.time() - t0, 1)}
        vals = {**ev.scalars, **getattr(ev, "extras", {})}
        row.update({k: round(float(vals.get(k, math.nan)), 5) for k in KEEP})
        rows.append(row)
        print(json.dumps(row), flush=True)
        if state["hit"] is None and row["copy_frac"] >= c["stop_copy"]:
            state["hit"] = len(rows)
        done_mem = state["hit"] is not None and len(rows) - state["hit"] >= c["stop_after"]
        return done_mem or (time.time() - t0) > c["max_wall_s"]

    final = trainer.run(on_eval)
    wall = time.time() - t0
    curve = {k: [(r["step"], r[k]) for r in rows] for k in ("novel_valid_frac", "copy_frac", "valid_frac")}
    res = {"name": name, "overrides": overrides, "P_max": cfg.grammar.P_max, "final_step": final,
           "wall_s": round(wall, 1), "eval_s": round(t_eval, 1),
           "train_steps_per_s": round(final / max(wall - t_eval, 1e-9), 1),
           "max_novel_valid": max(r["novel_valid_frac"] for r in rows),
           "max_valid": max(r["valid_frac"] for r in rows), "last": rows[-1]}
    for theta in (0.1, 0.5):
        for key, metric in (("gen", "novel_valid_frac"), ("mem", "copy_frac"), ("valid", "valid_frac")):
            tau, cens = onset(curve[metric], theta)
            res[f"tau_{key}@{theta}"] = round(tau, 1)
            res[f"cens_{key}@{theta}"] = cens
    (HERE / "curves").mkdir(exist_ok=True)
    with open(HERE / "curves" / f"{name}.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    with open(HERE / "results.jsonl", "a") as f:
        f.write(json.dumps(res) + "\n")
    print("RESULT", json.dumps(res), flush=True)
    return res


if __name__ == "__main__":
    main(sys.argv[1], json.loads(sys.argv[2]) if len(sys.argv) > 2 else {})
