"""Model and training configurations: frozen dataclasses of plain values, validated on construction."""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

PROCESSES = ("masked", "uniform")
BACKBONES = ("transformer", "tree_conv")
# train.compile: "off" (eager), "network" (torch.compile of the denoiser; `true` in older specs), "step" (the
# training step but its random draws and AdamW: forward, loss, backward, clipping). Booleans keep their old
# meaning: false -> off, true -> network.
COMPILE_MODES = ("off", "network", "step")


def _check_int(name: str, value: object, lo: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < lo:
        raise ValueError(f"{name}={value!r} is invalid: expected an integer >= {lo}")


def check_pack_size(K: object, what: str = "pack size") -> int:
    """K, the number of members trained together in one vectorized step: a positive integer (1 = a lone trial)."""
    if isinstance(K, bool) or not isinstance(K, int) or K < 1:
        raise ValueError(f"{what} {K!r} is invalid: a pack has an integer number of members >= 1 (1 = a lone trial)")
    return K


def check_member_seeds(seeds: object) -> list[int]:
    """A pack's member seeds: a non-empty sequence of integers >= 0, one per member."""
    if isinstance(seeds, (str, bytes)) or not isinstance(seeds, Sequence):
        raise ValueError(f"seeds={seeds!r} is invalid: expected a sequence of member seeds (integers >= 0)")
    check_pack_size(len(seeds), what="the number of seeds")
    bad = [x for x in seeds if isinstance(x, bool) or not isinstance(x, int) or x < 0]
    if bad:
        raise ValueError(f"seed {bad[0]!r} is invalid: member seeds are integers >= 0")
    return list(seeds)


def _check_bool(name: str, value: object) -> None:
    if not isinstance(value, bool):
        raise ValueError(f"{name}={value!r} is invalid: expected True or False")


@dataclass(frozen=True)
class ModelConfig:
    """Which diffusion process and denoiser to build.

    For `tree_conv`, `depth` is the number of layers per tree level (one stride-s convolution plus `depth - 1`
    residual pointwise blocks); the number of levels is the grammar's `L`. `heads` only applies to the transformer.
    """

    process: str = "masked"
    backbone: str = "transformer"
    width: int = 64
    depth: int = 2
    heads: int = 4
    time_cond: bool = True
    dropout: float = 0.0

    def __post_init__(self) -> None:
        if self.process not in PROCESSES:
            raise ValueError(f"process={self.process!r} is unknown: valid processes are {', '.join(PROCESSES)}")
        if self.backbone not in BACKBONES:
            raise ValueError(f"backbone={self.backbone!r} is unknown: valid backbones are {', '.join(BACKBONES)}")
        _check_int("width", self.width, 1)
        _check_int("depth", self.depth, 1)
        _check_int("heads", self.heads, 1)
        if self.backbone == "transformer" and self.width % self.heads:
            raise ValueError(f"width={self.width} is not divisible by heads={self.heads}: "
                             f"heads must divide the transformer width")
        _check_bool("time_cond", self.time_cond)
        if isinstance(self.dropout, bool) or not isinstance(self.dropout, (int, float)) \
                or not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout={self.dropout!r} is invalid: expected a float in [0, 1)")


@dataclass(frozen=True)
class TrainConfig:
    """Training-loop settings. `device` is "cpu", "cuda" or "cuda:N"; `bf16` (autocast) needs CUDA.

    `ema` is the EMA decay (0 disables EMA); `grad_clip` is the max global grad norm (0 disables clipping);
    `replacement=False` draws batches from reshuffled permutations (an epoch's remainder is dropped).
    `compile` is one of COMPILE_MODES ("off", "network", "step"; true/false mean "network"/"off").
    """

    steps: int
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    ema: float = 0.0
    evals_per_decade: int = 8
    first_eval: int = 10
    seed: int = 0
    device: str = "cpu"
    bf16: bool = False
    compile: Literal["off", "network", "step"] | bool = "off"
    replacement: bool = True

    def __post_init__(self) -> None:
        _check_int("steps", self.steps, 1)
        _check_int("batch_size", self.batch_size, 1)
        for name, lo_open in (("lr", True), ("weight_decay", False), ("grad_clip", False)):
            val = getattr(self, name)
            if isinstance(val, bool) or not isinstance(val, (int, float)) or val < 0 or (lo_open and val == 0):
                rng = "> 0" if lo_open else ">= 0"
                raise ValueError(f"{name}={val!r} is invalid: expected a number {rng}")
        if isinstance(self.ema, bool) or not isinstance(self.ema, (int, float)) or not 0.0 <= self.ema < 1.0:
            raise ValueError(f"ema={self.ema!r} is invalid: expected a decay in [0, 1) (0 disables EMA)")
        _check_int("evals_per_decade", self.evals_per_decade, 1)
        _check_int("first_eval", self.first_eval, 1)
        _check_int("seed", self.seed, 0)
        if not isinstance(self.device, str) or not (self.device == "cpu" or self.device == "cuda"
                                                    or (self.device.startswith("cuda:")
                                                        and self.device[5:].isdigit())):
            raise ValueError(f"device={self.device!r} is invalid: expected 'cpu', 'cuda' or 'cuda:N'")
        if isinstance(self.compile, bool):
            object.__setattr__(self, "compile", "network" if self.compile else "off")
        if self.compile not in COMPILE_MODES:
            raise ValueError(f"compile={self.compile!r} is invalid: expected one of {', '.join(COMPILE_MODES)} "
                             f"(or true/false for network/off)")
        for name in ("bf16", "replacement"):
            _check_bool(name, getattr(self, name))
        if self.bf16 and self.device == "cpu":
            raise ValueError("bf16=True needs a CUDA device (device='cpu' given): bf16 autocast is CUDA-only here")
