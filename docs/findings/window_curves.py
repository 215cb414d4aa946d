"""The window in the same trials: per P, each trial's generalization (`gen_share`, and `novel_valid_frac` thin) and
memorization (`mem_twin`) curves on one axis, with its onsets at theta = 0.5 marked. A trial in the window shows
generalization rising past 0.5 and then falling as mem_twin rises.

    .venv/bin/python docs/findings/window_curves.py runs/regime/store docs/findings/regime/window_curves.png
"""
from __future__ import annotations

import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
import window  # noqa: E402


def main(store_uri: str, out_png: str) -> None:
    from analysis import flags as flagmod, onset
    from analysis.onset import with_gen_share
    from analysis.store import Store

    st = Store(store_uri)
    trials = st.read("trials")
    fl = flagmod.trial_flags(trials, window.THETA)
    per = window.per_trial(flagmod.drop_flagged_onsets(onset.onsets(st, thetas=(window.THETA,)), fl))
    curves = with_gen_share(st.read("curves", columns=["trial_id", "step", "novel_valid_frac", "mem_twin"]),
                            trials).to_pandas()
    Ps = sorted({d["P"] for d in per.values()})
    tails = sorted({d["tail"] for d in per.values()})
    panels = [(tail, P) for tail in tails for P in Ps]
    ncols = len(Ps) if len(tails) > 1 else min(3, len(Ps))
    nrows = -(-len(panels) // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(3.4 * ncols, 2.7 * nrows), squeeze=False, sharex=True,
                             sharey=True)
    for n, (tail, P) in enumerate(panels):
        i, j = divmod(n, ncols)
        ax = axes[i][j]
        ids = sorted(t for t, d in per.items() if d["P"] == P and d["tail"] == tail)
        for k, tid in enumerate(ids):
            c = curves[curves.trial_id == tid].sort_values("step")
            color = f"C{k}"
            ax.plot(c.step, c.gen_share, color=color, lw=1.4)
            ax.plot(c.step, c.novel_valid_frac, color=color, lw=0.6, alpha=0.6)
            ax.plot(c.step, c.mem_twin, color=color, lw=1.4, ls="--")
            for key, mark in (("gen", "o"), ("mem", "s")):
                if np.isfinite(per[tid][key]):
                    ax.plot(per[tid][key], window.THETA, mark, color=color, ms=4)
        n_win = sum(per[t]["window"] for t in ids)
        ax.set_title(f"{tail}, P={P}: window {n_win} of {len(ids)}", fontsize=8)
        ax.axhline(window.THETA, color="grey", lw=0.5)
        ax.set_xscale("log")
        ax.set_ylim(-0.2, 1.05)
        if i == nrows - 1:
            ax.set_xlabel("training step")
        if j == 0:
            ax.set_ylabel("gen_share (solid), mem_twin (dashed)", fontsize=7)
    fig.suptitle("generalization then memorization, per trial (circles tau_gen, squares tau_mem, theta = 0.5)",
                 fontsize=9)
    fig.tight_layout()
    Path(out_png).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_png, dpi=110)
    print(f"written {out_png}")


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit("usage: window_curves.py STORE OUT.png")
    main(sys.argv[1], sys.argv[2])
