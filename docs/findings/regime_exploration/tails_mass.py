"""How the `tails` preset's tails were chosen: exact H(x) and the training set's mass p(T) (and its twins' p(T'))
for candidate tails of the `regime` grammar shape (v = 8, n_c = 2, m = 8, s = 3, L = 2), per P, grammar and data
seed, from the same data draw the trials use. p(T) > 0.5 is flagged by the report (copies cannot separate a
memorizer from a generalizer where T holds most of the language), so a tail is usable only below it.

    .venv/bin/python docs/findings/regime_exploration/tails_mass.py
"""
from __future__ import annotations

import sys
from pathlib import Path

from scipy.optimize import brentq

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))
from rhm import RuleDist  # noqa: E402
from rhm.data import draw_seed, sample_unique  # noqa: E402
from rhm.grammar import Grammar  # noqa: E402
from rhm.spec import GrammarSpec  # noqa: E402
from rhm.twins import twin_set  # noqa: E402
from sweeps.spec.tail import TailSpec  # noqa: E402

SHAPE = dict(v=8, n_c=2, m=8, s=3, L=2)


def masses(tail: dict, P: int, grammar_seed: int = 0, data_seed: int = 0) -> tuple[float, float, float]:
    """(p(T), p(T'), H(x)) of one trial's grammar and training set."""
    spec = GrammarSpec(**SHAPE, levels=TailSpec.from_dict(tail).level_dists(SHAPE["L"]), seed=grammar_seed)
    g = Grammar.from_spec(spec)
    ts = twin_set(g, sample_unique(g, P, draw_seed(grammar_seed, data_seed)))
    return ts.train_mass, ts.mass, spec.entropy


def placement_pair(fat: float, thin_root: float) -> tuple[dict, dict]:
    """Fat at the root production / thinner below, and fat below / `thin_root` at the root, at equal H(x): the
    tree has 1 root production and s = 3 below it, so H(fat) + 3 H(a) = H(thin_root) + 3 H(fat) fixes a."""
    H = lambda a: RuleDist(family="power", a=a).entropy(SHAPE["m"])       # noqa: E731
    target = (2 * H(fat) + H(thin_root)) / 3
    a = round(brentq(lambda x: H(x) - target, fat + 1e-6, 20.0), 3)
    return ({"family": "power", "a": fat, "levels": [0], "rest": {"family": "power", "a": a}},
            {"family": "power", "a": fat, "levels": [1], "rest": {"family": "power", "a": thin_root}})


def main() -> None:
    cands = [{"family": "uniform"}, {"family": "power", "a": 1.0}, {"family": "power", "a": 2.0},
             {"family": "exp", "xi": 2.0}, {"family": "exp", "xi": 3.0}]
    for thin in (1.5, 2.0, 2.5):
        cands += list(placement_pair(1.0, thin))
    print(f"{'tail':40s} {'H(x)':>6s}  " + "  ".join(f"p(T) P={P:<5d}" for P in (512, 640, 768, 1024)))
    for tail in cands:
        rows = [masses(tail, P) for P in (512, 640, 768, 1024)]
        print(f"{TailSpec.from_dict(tail).label:40s} {rows[0][2]:6.3f}  " + "  ".join(f"{r[0]:12.3f}" for r in rows))
    print("\nthe chosen pair at P = 640, per grammar and data seed (p(T)):")
    for tail in placement_pair(1.0, 1.5):
        print(f"{TailSpec.from_dict(tail).label:40s} " + "  ".join(
            f"{masses(tail, 640, g, d)[0]:.3f}" for g in (0, 1) for d in (0, 1)))


if __name__ == "__main__":
    main()
