"""The spec's own section dataclasses (data, eval, stop, resources, pack, optuna) and the value types of its keys.

grammar, model and train are `rhm.GrammarSpec`, `models.ModelConfig` and `models.TrainConfig` themselves (see
`sweeps.spec.sweep.SweepSpec`, which declares every YAML key). Constraints sit on the fields as annotations; the
`description` of a constrained type is the "what would be valid" of its error message.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Literal

from pydantic import Field

from analysis.overest import OVEREST_STRINGS
from analysis.registry import DEFAULT_MEM_METRIC, OBJECTIVE_METRICS
from rhm.data import DATA_DRAWS

PosInt = Annotated[int, Field(ge=1)]
NonNegInt = Annotated[int, Field(ge=0)]
NonNegFloat = Annotated[float, Field(ge=0)]
Fraction = Annotated[float, Field(gt=0, le=1, description="a fraction in (0, 1]")]
Objective = Literal[OBJECTIVE_METRICS]  # the metrics analysis.registry lets a spec stop on or optimize
Mode = Literal["grid", "optuna-grid", "optuna-boundary"]
DataDraw = Literal[DATA_DRAWS]  # rhm.data.DATA_DRAWS: which seeds draw the training and held-out sets
Name = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$",
                            description="letters, digits, '_', '-', '.', e.g. demo")]
MODES: tuple[str, ...] = Mode.__args__


@dataclass(frozen=True)
class DataSection:
    """`data:` the training set (P strings, unique or i.i.d.) and the held-out set."""

    P: PosInt
    unique: bool = True
    heldout: NonNegInt = 256
    draw: DataDraw = "grammar+data"


@dataclass(frozen=True)
class EvalSection:
    """`eval:` generated samples per evaluation; sampler steps (None = the exact sampler: masked unmasks one
    position per network call, uniform walks all T steps); overest_every: probe overestimation (analysis.overest)
    at every k-th evaluation, 0 = never (masked diffusion only); overest_strings: the probe's fixed random subset of
    at most this many training strings and as many held-out strings (its cost does not grow with P; None: all of them,
    as trials probed before the subset existed)."""

    n_gen: PosInt = 256
    sample_steps: PosInt | None = None
    overest_every: NonNegInt = 0
    overest_strings: PosInt | None = OVEREST_STRINGS


@dataclass(frozen=True)
class StopSection:
    """`stop:` end a trial once `metric` >= `theta` at `patience` consecutive evaluations (theta None: never)."""

    theta: Fraction | None = None
    patience: PosInt = 2
    metric: Objective = DEFAULT_MEM_METRIC


@dataclass(frozen=True)
class Resources:
    """`resources:` what one trial asks Ray for; gpu may be fractional below 1 (0.25 = four trials per GPU)."""

    cpu: NonNegFloat = 1.0
    gpu: NonNegFloat = 0.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "cpu", float(self.cpu))
        object.__setattr__(self, "gpu", float(self.gpu))
        if self.gpu > 1 and self.gpu != int(self.gpu):
            raise ValueError(f"gpu={self.gpu:g} is invalid; fractions are only allowed below 1 (e.g. 0.25, 0.5), "
                             "above 1 use a whole number of GPUs")
        if self.cpu == 0 and self.gpu == 0:
            raise ValueError("cpu and gpu are both 0; a trial needs at least one (e.g. cpu: 1)")

    def __getitem__(self, key: str) -> float:
        """`resources["gpu"]`, as when resources were a dict."""
        return getattr(self, key)


@dataclass(frozen=True)
class PackSection:
    """`pack:` train up to `size` compatible trials of a grid as one Tune trial, one vectorized step for all
    (sweeps.packing); 1 = one trial at a time. Optuna modes propose one point at a time and keep size 1."""

    size: PosInt = 1


@dataclass(frozen=True)
class OptunaSpec:
    """`optuna:` settings of the Optuna modes (see the sweeps.spec docstring)."""

    trials: PosInt | None = None          # None: the grid size (optuna-grid)
    target_step: PosInt | None = None     # optuna-boundary: the step at which `metric` is compared with `theta`
    metric: Objective = DEFAULT_MEM_METRIC
    theta: Fraction = 0.5
    journal: str | None = None            # JournalStorage file; None: <store parent>/optuna-<name>.journal (local)
    seed: NonNegInt = 0
