"""Bounds: a trial whose memory or time no machine can give is refused at validation, with the estimate and the
limit it breaks, instead of dying in an allocation (or running for years) after the sweep started.

The limits are declared here and nowhere else. The estimates are closed-form and deliberately simple: parameter
counts are exact for both backbones (tests compare them with the built models), activation memory follows
Korthikanti et al. 2022 ("Reducing activation recomputation in large transformer models": 34*s*b*h + 5*a*s^2*b bytes
per layer at 16 bit, doubled here for float32), and the time is a lower bound (an optimistic peak FLOP rate and a
floor per optimizer step), so nothing reasonable is refused and absurd values always are.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

GiB = 2**30
# ---- the limits (one place) -------------------------------------------------------------------------------
MAX_DEVICE_BYTES = 192 * GiB      # largest memory of one accelerator shipping today (NVIDIA B200); a trial uses one
MAX_HOST_BYTES = 4096 * GiB       # RAM of a large single node; a trial runs in one process
MAX_TRIAL_SECONDS = 30 * 86400    # 30 days for one trial of a sweep is a typo, not a plan
PEAK_FLOPS = {"cuda": 2.5e15, "cpu": 2e11}   # per GPU (B200 dense bf16) / per CPU core (AVX-512 FMA): optimistic
MIN_STEP_SECONDS = 1e-4           # no optimizer step of a PyTorch model takes less (kernel launches, Adam)
FLOAT = 4                         # bytes per float32 value
TOKEN = 8                         # bytes per int64 token
MAX_TRIALS = 10_000               # trials of one sweep (grid points, or optuna.trials): more is a typo or many sweeps
MAX_EVALS_PER_DECADE = 10_000     # at 10,000 per decade every step below ~4,000 is already evaluated


def n_params(model: Any, v: int, d: int, s: int, L: int) -> int:
    """Exact parameter count of `models.build_model(model, v, d, s, L)`, without building it."""
    w, depth = model.width, model.depth
    n_in = v + 1 if model.process == "masked" else v
    time = (32 * w + w + w * w + w) if model.time_cond else 0
    head = 2 * w + w * v + v
    if model.backbone == "transformer":
        return n_in * w + d * w + time + depth * (12 * w * w + 13 * w) + head
    pointwise = 4 * w * w + 5 * w
    per_level = (s * w * w + w) + (w * s * w + s * w) + 2 * (2 * w) + 2 * (depth - 1) * pointwise
    return n_in * w + time + L * per_level + head


# What drives each part of an estimate: the spec keys named in a refusal, so it says which value to lower.
DRIVERS = {
    "weights, gradients, Adam": ("model.width", "model.depth"),
    "training activations": ("train.batch_size", "model.width", "model.depth"),
    "sampling activations": ("eval.n_gen", "model.width"),
    "training and held-out tokens": ("data.P", "data.heldout"),
    "data sets and their index": ("data.P", "data.heldout", "eval.n_gen"),
    "training": ("train.steps", "train.batch_size", "model.width"),
    "evaluation": ("eval.n_gen", "train.evals_per_decade", "model.width"),
}
_VALUES = {"model.width": lambda t: t.model.width, "model.depth": lambda t: t.model.depth,
           "train.batch_size": lambda t: t.train.batch_size, "train.steps": lambda t: t.train.steps,
           "train.evals_per_decade": lambda t: t.train.evals_per_decade, "eval.n_gen": lambda t: t.n_gen,
           "data.P": lambda t: t.P, "data.heldout": lambda t: t.heldout}


@dataclass(frozen=True)
class Estimate:
    """Memory (bytes, by part) and a lower bound on the time (seconds, by part) of one trial."""

    params: int
    device: dict[str, float] = field(default_factory=dict)   # on the trial's device (the GPU, or RAM on CPU)
    host: dict[str, float] = field(default_factory=dict)     # in the trial's process besides the device parts
    time: dict[str, float] = field(default_factory=dict)

    @property
    def seconds(self) -> float:
        return sum(self.time.values())


def estimate(trial: Any, gpu: float) -> Estimate:
    """Memory and minimum time of `trial` (a TrialConfig) on a GPU share `gpu` (0: CPU)."""
    from models import eval_schedule

    g, m, t = trial.grammar, trial.model, trial.train
    d, v, w, B, n = g.d, g.v, m.width, t.batch_size, trial.n_gen
    N = n_params(m, v, d, g.s, g.L)
    transformer = m.backbone == "transformer"
    layers = m.depth if transformer else 2 * g.L * m.depth
    per_layer = 2 * (34 * d * B * w + (5 * m.heads * d * d * B if transformer else 0))
    device = {
        "weights, gradients, Adam": FLOAT * N * (4 + (t.ema > 0)),
        "training activations": layers * per_layer + 3 * FLOAT * B * d * v,
        "sampling activations": 2 * FLOAT * n * d * (w + v) + (FLOAT * m.heads * n * d * d if transformer else 0),
        "training and held-out tokens": TOKEN * d * (trial.P + trial.heldout),
    }
    host = {"data sets and their index": 4 * TOKEN * d * (trial.P + trial.heldout + n)}
    matmul = (m.depth * 12 * w * w + w * v) if transformer else (w * v + w * w)  # weights every token meets
    peak = PEAK_FLOPS["cuda"] * max(gpu, 1.0) if gpu > 0 else PEAK_FLOPS["cpu"]
    evals = len(eval_schedule(min(t.steps, 10**15), t.evals_per_decade, t.first_eval))
    calls = d if trial.sample_steps is None else trial.sample_steps
    time = {"training": t.steps * max(MIN_STEP_SECONDS, 6 * matmul * B * d / peak),
            "evaluation": evals * calls * max(MIN_STEP_SECONDS, 2 * matmul * n * d / peak)}
    return Estimate(N, device, host, time)


def _size(x: float) -> str:
    for unit, scale in (("PiB", 2**50), ("TiB", 2**40), ("GiB", GiB), ("MiB", 2**20), ("KiB", 2**10)):
        if x >= scale:
            return f"{x / scale:.3g} {unit}"
    return f"{x:.0f} B"


def _duration(s: float) -> str:
    for unit, scale in (("years", 365 * 86400), ("days", 86400), ("hours", 3600)):
        if s >= scale:
            return f"{s / scale:.3g} {unit}"
    return f"{s:.0f} s"


def _why(trial: Any, parts: dict[str, float], show: Any) -> str:
    """The largest part, its size and the values that drive it."""
    name, amount = max(parts.items(), key=lambda kv: kv[1])
    values = ", ".join(f"{k}={_VALUES[k](trial):,}" for k in DRIVERS[name])
    return f"mostly {name}: {show(amount)} at {values}"


def problems(trial: Any, gpu: float, device_limit: float | None = None, host_limit: float | None = None
             ) -> list[tuple[str, str]]:
    """(kind, message) for every limit `trial` breaks on a GPU share `gpu` (0: CPU, where every part is in RAM);
    the limits default to the MAX_* constants above. Counts are checked first: the estimate walks them."""
    per_decade = trial.train.evals_per_decade
    if per_decade > MAX_EVALS_PER_DECADE:
        return [("evaluations", f"train.evals_per_decade={per_decade:,} is over the limit of "
                                f"{MAX_EVALS_PER_DECADE:,} (sweeps/spec/bounds.py); at that rate every step is "
                                "evaluated already")]
    e = estimate(trial, gpu)
    host_limit = MAX_HOST_BYTES if host_limit is None else host_limit
    if gpu > 0:
        device_limit = MAX_DEVICE_BYTES if device_limit is None else device_limit
        checks = [("GPU memory", e.device, device_limit, "one accelerator"), ("RAM", e.host, host_limit, "one node")]
    else:
        checks = [("RAM", {**e.device, **e.host}, host_limit, "one node")]
    out = []
    for what, parts, limit, unit in checks:
        need = sum(parts.values())
        if need > limit:
            out.append((what, f"needs ~{_size(need)} of {what} ({_why(trial, parts, _size)}; {e.params:,} "
                              f"parameters), over the limit of {_size(limit)} per trial ({unit}; "
                              "sweeps/spec/bounds.py)"))
    if e.seconds > MAX_TRIAL_SECONDS:
        peak = PEAK_FLOPS["cuda" if gpu > 0 else "cpu"]
        out.append(("time", f"needs at least {_duration(e.seconds)} ({_why(trial, e.time, _duration)}; at most "
                            f"{peak:.2g} FLOP/s and {1 / MIN_STEP_SECONDS:,.0f} steps/s), over the limit of "
                            f"{_duration(MAX_TRIAL_SECONDS)} per trial (sweeps/spec/bounds.py)"))
    return out


def count_problems(n_trials: int, optuna_trials: int | None) -> list[str]:
    """Messages for a sweep with more trials than MAX_TRIALS (checked before any point is built)."""
    out = []
    for what, n in (("the grid has", n_trials), ("optuna.trials asks for", optuna_trials)):
        if n is not None and n > MAX_TRIALS:
            out.append(f"{what} {n:,} trials, over the limit of {MAX_TRIALS:,} per sweep (sweeps/spec/bounds.py); "
                       "split it into several sweeps")
    return out


def local_limits(gpu: float) -> tuple[float | None, float | None]:
    """(device, host) memory of this machine available to one trial with GPU share `gpu`: for a local run."""
    import os

    try:
        host = float(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):
        host = None
    device = host
    if gpu > 0:
        try:
            import torch

            device = (float(torch.cuda.get_device_properties(0).total_memory) * min(gpu, 1.0)
                      if torch.cuda.is_available() else None)
        except Exception:  # noqa: BLE001 - no usable CUDA here: only the absolute limits apply
            device = None
    return device, host
