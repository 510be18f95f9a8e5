"""Optimizer and per-step learning-rate schedule (linear warmup, then cosine or multistep)."""
from __future__ import annotations

import math
from typing import Callable, List, Sequence

import torch
from torch import nn
from torch.optim.lr_scheduler import LambdaLR

OPTIMIZERS = {"SGD": torch.optim.SGD, "AdamW": torch.optim.AdamW}
SCHEDULES = ("cosine", "multistep")


def build_optimizer(
    model: nn.Module,
    name: str = "AdamW",
    lr: float = 1e-3,
    weight_decay: float = 0.05,
    momentum: float = 0.9,
    no_decay_norm_bias: bool = True,
) -> torch.optim.Optimizer:
    """`name` is "SGD" or "AdamW". Norm weights and biases skip weight decay when asked."""
    if name not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer '{name}', expected one of {sorted(OPTIMIZERS)}")
    decay, no_decay = [], []
    for param in model.parameters():
        if not param.requires_grad:
            continue
        (no_decay if no_decay_norm_bias and param.ndim <= 1 else decay).append(param)
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    extra = {"momentum": momentum, "nesterov": True} if name == "SGD" else {}
    return OPTIMIZERS[name](groups, lr=lr, **extra)


def lr_factor_fn(
    name: str,
    total_steps: int,
    steps_per_epoch: int,
    warmup_steps: int = 300,
    warmup_ratio: float = 0.1,
    min_lr_ratio: float = 0.05,
    milestones: Sequence[int] = (),
    gamma: float = 0.1,
) -> Callable[[int], float]:
    """Multiplier of the base learning rate at optimizer step `step` (0-based)."""
    if name not in SCHEDULES:
        raise ValueError(f"unknown scheduler '{name}', expected one of {SCHEDULES}")
    milestone_steps: List[int] = [m * max(steps_per_epoch, 1) for m in milestones]
    total_steps = max(total_steps, 1)

    def factor(step: int) -> float:
        if name == "cosine":
            progress = min(step / total_steps, 1.0)
            value = min_lr_ratio + (1.0 - min_lr_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))
        else:
            value = gamma ** sum(step >= m for m in milestone_steps)
        if step < warmup_steps:
            value *= warmup_ratio + (1.0 - warmup_ratio) * step / warmup_steps
        return value

    return factor


def build_scheduler(optimizer: torch.optim.Optimizer, total_steps: int, steps_per_epoch: int, **schedule) -> LambdaLR:
    """A `LambdaLR` stepped once per optimizer step (its state is checkpointed by Lightning)."""
    return LambdaLR(optimizer, lr_factor_fn(total_steps=total_steps, steps_per_epoch=steps_per_epoch, **schedule))
