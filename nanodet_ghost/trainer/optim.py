"""Optimizer and per-step learning-rate schedule (linear warmup, then cosine or multistep)."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

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


@dataclass
class LRSchedule:
    """Multiplier of the base learning rate at optimizer step `step` (0-based): linear warmup over
    `warmup_steps`, times a cosine from 1 down to `min_lr_ratio` that reaches the floor on the last
    step (`total_steps - 1`), or a step decay by `gamma` at each epoch in `milestones`.

    `total_steps` may change during training: `TimeBudget` resizes the plan when it knows how
    many epochs fit, and the schedule continues from the current step on the new length.
    """

    name: str
    total_steps: int
    steps_per_epoch: int
    warmup_steps: int = 300
    warmup_ratio: float = 0.1
    min_lr_ratio: float = 0.05
    milestones: Sequence[int] = ()
    gamma: float = 0.1

    def __post_init__(self) -> None:
        if self.name not in SCHEDULES:
            raise ValueError(f"unknown scheduler '{self.name}', expected one of {SCHEDULES}")

    def __call__(self, step: int) -> float:
        if self.name == "cosine":
            progress = min(step / max(self.total_steps - 1, 1), 1.0)
            value = self.min_lr_ratio + (1.0 - self.min_lr_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))
        else:
            value = self.gamma ** sum(step >= m * max(self.steps_per_epoch, 1) for m in self.milestones)
        if step < self.warmup_steps:
            value *= self.warmup_ratio + (1.0 - self.warmup_ratio) * step / self.warmup_steps
        return value


class PlannedLR(LambdaLR):
    """`LambdaLR` over one `LRSchedule` that checkpoints the step, not the plan.

    The schedule's length comes from the config (and the time budget) of the run that loads the
    checkpoint, so `--resume train.max_epochs=60` stretches the cosine to the new end instead of
    keeping the old one. `LambdaLR` would otherwise save and restore the schedule's attributes.
    """

    def __init__(self, optimizer: torch.optim.Optimizer, schedule: LRSchedule) -> None:
        self.schedule = schedule
        super().__init__(optimizer, schedule)

    def state_dict(self) -> dict:
        state = super().state_dict()
        state["lr_lambdas"] = [None] * len(state["lr_lambdas"])
        state.pop("schedule", None)
        return state

    def load_state_dict(self, state_dict: dict) -> None:
        state_dict = dict(state_dict, lr_lambdas=[None] * len(self.lr_lambdas))
        state_dict.pop("schedule", None)
        super().load_state_dict(state_dict)


def build_scheduler(optimizer: torch.optim.Optimizer, total_steps: int, steps_per_epoch: int, **schedule) -> PlannedLR:
    """A `PlannedLR` stepped once per optimizer step (its step is checkpointed by Lightning)."""
    return PlannedLR(optimizer, LRSchedule(total_steps=total_steps, steps_per_epoch=steps_per_epoch, **schedule))
