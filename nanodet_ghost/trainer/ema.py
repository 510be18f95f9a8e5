"""Exponential moving average of the detector weights (validated, checkpointed and exported)."""
from __future__ import annotations

import copy
import math

import torch
from torch import nn


class ModelEMA(nn.Module):
    """Keeps `module`, an averaged copy of a model, inside the LightningModule's state dict so that
    checkpoints carry it and resume continues it exactly.

    The decay ramps up as `decay * (1 - exp(-updates / warmup))`: early weights change fast and an
    average over them would lag far behind.
    """

    def __init__(self, model: nn.Module, decay: float = 0.9998, warmup: int = 2000) -> None:
        super().__init__()
        self.module = copy.deepcopy(model).eval()
        for param in self.module.parameters():
            param.requires_grad_(False)
        self.decay = decay
        self.warmup = warmup
        self.register_buffer("updates", torch.zeros((), dtype=torch.long))

    def current_decay(self) -> float:
        return self.decay * (1.0 - math.exp(-float(self.updates) / self.warmup))

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        self.updates += 1
        decay = self.current_decay()
        live = model.state_dict()
        for name, averaged in self.module.state_dict().items():
            value = live[name].detach()
            if averaged.dtype.is_floating_point:
                averaged.mul_(decay).add_(value.to(averaged.dtype), alpha=1.0 - decay)
            else:
                averaged.copy_(value)

    def train(self, mode: bool = True) -> "ModelEMA":
        # The average is only ever evaluated; BN statistics must not move in it.
        super().train(False)
        return self
