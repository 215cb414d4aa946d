"""The curve metrics, each declared once: its name, where it is stored, what it may be used for, what it means.

Everything else derives from `METRICS`: the store's `curves` / `level_curves` columns (`analysis.schema`), the
rows a trial writes (`analysis.metrics.evaluate` must return exactly these names), the onset metrics and the
`--metric` choices of the CLI, the Optuna objectives and early-stop metrics a spec may name, the report's captions
and the synthetic fixtures. Adding a metric is one entry here plus its computation in `analysis.metrics`.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Metric:
    """One metric of an evaluation.

    curve: a scalar per evaluation (a column of `curves`); level: one value per production level (a column of
    `level_curves`); a metric may be both. onset: "mem" or "gen" when its threshold crossing may define that onset
    (`tau_mem`, `tau_gen`). objective: a spec may stop trials on it or give it to Optuna as the objective.
    """

    name: str
    description: str
    curve: bool = True
    level: bool = False
    onset: str | None = None
    objective: bool = False


METRICS: tuple[Metric, ...] = (
    Metric("train_loss", "mean training loss over the steps since the previous evaluation"),
    Metric("heldout_loss", "diffusion loss (ELBO part) on the held-out strings, fixed noise seed"),
    Metric("copy_frac", "fraction of generated strings identical to a training string", onset="mem",
           objective=True),
    Metric("copy_baseline", "grammar mass p(T) of the distinct training strings: the copy rate of a model that "
                            "learned the grammar exactly and memorized nothing"),
    Metric("mem_excess", "(copy_frac - copy_baseline) / (1 - copy_baseline): copies in excess of the grammar mass "
                         "of the training set (right only if the non-copies are grammar-faithful)", onset="mem",
           objective=True),
    Metric("twin_frac", "fraction of generated strings in the twin set T' (twins of training strings that are not "
                        "training strings themselves)"),
    Metric("mem_twin", "copy_frac - twin_frac * p(T) / p(T'): copies beyond what sampling at the grammar's rates "
                       "makes; 0 for a grammar-faithful generator at any P, copy_frac for a pure memorizer",
           onset="mem", objective=True),
    Metric("heldout_frac", "fraction of generated strings that are held-out strings (a second null)"),
    Metric("mem_heldout", "copy_frac - heldout_frac * p(T) / p(H): the same excess against the held-out set",
           onset="mem", objective=True),
    Metric("near_copy_frac", "fraction of generated strings with nearest/second-nearest Hamming ratio d1/d2 < 1/3"),
    Metric("mean_d1", "mean Hamming distance to the nearest training string, divided by the length d"),
    Metric("valid_frac", "fraction of generated strings the grammar derives (per level: every reduction from the "
                         "leaves up to that level succeeds)", level=True, onset="gen"),
    Metric("novel_valid_frac", "fraction of generated strings that are valid and not training strings",
           onset="gen"),
    Metric("gen_share", "novel_valid_frac / (1 - p(T)): the share of a perfect generalizer's novel valid rate (a "
                        "grammar-faithful sampler copies T at rate p(T), so its novel_valid_frac is 1 - p(T)); NaN "
                        "when p(T) = 1", onset="gen"),
    Metric("unique_gen_frac", "distinct generated strings / number generated"),
    Metric("overprod", "slop: over-production of the common productions (top quarter by training count) in the "
                       "non-copy strings against a grammar-faithful generator's non-copies (the null, 0); scalar "
                       "weighted by parsed nodes", level=True),
    Metric("overprod_train", "slop against T's own frequencies: over-production of the same common productions in "
                             "the non-copy strings against their share of the training set's nodes (> 0: "
                             "sharpening beyond T; a grammar-faithful generator gives < 0, reversion to the mean)",
           level=True),
    Metric("slop_n", "number of non-copy generated strings with a parsed node (at the level): what the slop "
                     "values rest on", level=True),
    Metric("entropy_ratio", "conditional entropy of the non-copy strings' productions given the parent over the "
                            "training strings' (1 = as diverse)", level=True),
    Metric("kl_gen_train", "KL of the non-copy strings' production frequencies from the (smoothed) training "
                           "frequencies, per parent, weighted", level=True),
    Metric("kl_gen_grammar", "KL of the non-copy strings' production frequencies from the null's (the grammar "
                             "outside the training set)", level=True),
    Metric("proto_spearman", "Spearman correlation over training samples of copy count with prototypicality"),
    Metric("loglik_spearman", "Spearman correlation over training samples of copy count with log-likelihood"),
    Metric("overest_train", "mean over training strings of the overestimation o(x, t) = mean over masked i of "
                            "log p_model(x_i|z) - log p_grammar(x_i|z), at the probe's highest noise level t "
                            "(early in denoising); per t and per string in the `overest` table (analysis.overest)"),
    Metric("overest_heldout", "the same over held-out strings: the null, a model that has not seen x"),
    Metric("overest_gap", "overest_train - overest_heldout: overestimation of the training strings beyond the null"),
    Metric("collapse_model", "exact sampler's reverse trajectories (analysis.collapse): mean number of unmasked "
                             "tokens, / d, at which exactly one training string is left consistent, over those "
                             "that collapse"),
    Metric("collapse_model_frac", "fraction of the exact sampler's trajectories that collapse onto one training "
                                  "string"),
    Metric("collapse_grammar", "the same for the grammar-faithful generator (the null): grammar strings unmasked in "
                               "a random order"),
    Metric("collapse_grammar_frac", "fraction of the grammar-faithful generator's trajectories that collapse"),
    Metric("entropy_excess", "mean over the sampler's unmaskings of the exact grammar posterior's entropy minus the "
                             "model's, at the model's own states (> 0: surer than the language allows)"),
)

BY_NAME: dict[str, Metric] = {m.name: m for m in METRICS}
#: Columns of the `curves` table, in declaration order.
CURVE_METRICS: tuple[str, ...] = tuple(m.name for m in METRICS if m.curve)
#: Columns of the `level_curves` table.
LEVEL_METRICS: tuple[str, ...] = tuple(m.name for m in METRICS if m.level)
#: Metrics that may define tau_mem / tau_gen.
MEM_METRICS: tuple[str, ...] = tuple(m.name for m in METRICS if m.onset == "mem")
GEN_METRICS: tuple[str, ...] = tuple(m.name for m in METRICS if m.onset == "gen")
#: Metrics a spec may stop trials on or hand to Optuna.
OBJECTIVE_METRICS: tuple[str, ...] = tuple(m.name for m in METRICS if m.objective)
#: Curves filled from the model's predictions on the overestimation probe (NaN where it was not run).
OVEREST_METRICS: tuple[str, ...] = ("overest_train", "overest_heldout", "overest_gap", "collapse_model",
                                     "collapse_model_frac", "collapse_grammar", "collapse_grammar_frac",
                                     "entropy_excess")
DEFAULT_MEM_METRIC: str = "mem_twin"
DEFAULT_GEN_METRIC: str = "gen_share"
assert DEFAULT_MEM_METRIC in MEM_METRICS and DEFAULT_GEN_METRIC in GEN_METRICS
assert set(OVEREST_METRICS) <= set(CURVE_METRICS)


def metric(name: str) -> Metric:
    """The declaration of `name`; ValueError naming the known metrics otherwise."""
    try:
        return BY_NAME[name]
    except KeyError:
        raise ValueError(f"unknown metric {name!r}; metrics are {', '.join(BY_NAME)}") from None


def check_choice(name: str, choices: tuple[str, ...], what: str) -> str:
    """`name` if it is one of `choices`, else ValueError saying what the metric is for and what is valid."""
    if name not in choices:
        raise ValueError(f"{what} metric {name!r} is not one of {', '.join(choices)}")
    return name
