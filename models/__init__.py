"""Discrete diffusion models (masked and uniform) on token strings, their backbones, and the training loop, for
packs of K members trained in one vectorized step (K = 1: a lone trial).

Models see only token tensors (K, n, d) long in [0, v); they never import `rhm`.
"""
from .backbones import Transformer, TreeConv
from .config import BACKBONES, COMPILE_MODES, PROCESSES, ModelConfig, TrainConfig, check_member_seeds, check_pack_size
from .diffusion import Diffusion, MaskedDiffusion, UniformDiffusion, build_model
from .memory import MemoryEstimate, estimate_memory
from .rng import MemberRNG
from .train import Trainer, eval_schedule

__all__ = [
    "BACKBONES", "COMPILE_MODES", "PROCESSES", "ModelConfig", "TrainConfig", "build_model", "Trainer", "eval_schedule",
    "Diffusion", "MaskedDiffusion", "UniformDiffusion", "Transformer", "TreeConv", "MemberRNG",
    "MemoryEstimate", "estimate_memory", "check_pack_size", "check_member_seeds",
]
