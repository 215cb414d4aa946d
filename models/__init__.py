"""Discrete diffusion models (masked and uniform) on token strings, their backbones, and the training loop.

Models see only token tensors (n, d) long in [0, v); they never import `rhm`.
"""
from .backbones import Transformer, TreeConv
from .config import BACKBONES, PROCESSES, ModelConfig, TrainConfig
from .diffusion import Diffusion, MaskedDiffusion, UniformDiffusion, build_model
from .train import Trainer, eval_schedule

__all__ = [
    "BACKBONES", "PROCESSES", "ModelConfig", "TrainConfig", "build_model", "Trainer", "eval_schedule",
    "Diffusion", "MaskedDiffusion", "UniformDiffusion", "Transformer", "TreeConv",
]
