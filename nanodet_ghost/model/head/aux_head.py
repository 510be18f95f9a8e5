"""NanoDet-Plus's Assign Guidance Module: an auxiliary neck and head used only in training.

The auxiliary head is larger than the deployed head (separate classification and regression
towers of 3x3 conv + GroupNorm), so its early predictions are better, and `NanoDetPlusLoss`
assigns targets from them instead of from the small head's own. It sees its own copy of the neck
concatenated with the main neck's features. Inference and export never run it
(`Detector.drop_training_parts`).
"""
from __future__ import annotations

import math
from typing import List, Sequence

import torch
from torch import Tensor, nn

_ACTIVATIONS = {"ReLU": nn.ReLU, "ReLU6": nn.ReLU6, "SiLU": nn.SiLU, "Hardswish": nn.Hardswish}


def _activation(name: str) -> nn.Module:
    if name == "LeakyReLU":
        return nn.LeakyReLU(0.1, inplace=True)  # NanoDet's slope
    if name not in _ACTIVATIONS:
        raise ValueError(f"unknown activation '{name}', expected LeakyReLU or one of {sorted(_ACTIVATIONS)}")
    return _ACTIVATIONS[name](inplace=True)


class ConvGNAct(nn.Module):
    """3x3 conv (no bias) + GroupNorm + activation: `Tensor[B, in, H, W] -> Tensor[B, out, H, W]`.

    Parameter names are NanoDet's (`conv`, `gn`), so a NanoDet-Plus `aux_head` state dict loads as is.
    """

    def __init__(self, in_channels: int, out_channels: int, num_groups: int, activation: str) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False)
        self.gn = nn.GroupNorm(num_groups, out_channels)
        self.act = _activation(activation)

    def forward(self, x: Tensor) -> Tensor:
        return self.act(self.gn(self.conv(x)))


class Scale(nn.Module):
    """Multiplies by one learnable scalar (initially 1)."""

    def __init__(self, value: float = 1.0) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.tensor(value, dtype=torch.float32))

    def forward(self, x: Tensor) -> Tensor:
        return x * self.scale


class AuxiliaryHead(nn.Module):
    """NanoDet's `SimpleConvHead`: towers shared across levels, a learnable scale per level on the
    regression output.

    Args:
        num_classes: C.
        in_channels: channels of every input level (twice the neck's: main and auxiliary neck).
        feat_channels: channels inside the towers (a multiple of `num_groups`).
        stacked_convs: conv + GroupNorm + activation layers per tower.
        strides: input-pixel stride of each level.
        reg_max: `reg_max + 1` bins per box side.
        num_groups: GroupNorm groups.
        activation: LeakyReLU (slope 0.1), ReLU, ReLU6, SiLU or Hardswish.

    `forward(feats)` takes one `Tensor[B, in_channels, H_i, W_i]` per level and returns
    `Tensor[B, N, C + 4 * (reg_max + 1)]` in the layout of `GFLHead`.
    """

    def __init__(
        self,
        num_classes: int,
        in_channels: int,
        feat_channels: int = 192,
        stacked_convs: int = 4,
        strides: Sequence[int] = (8, 16, 32, 64),
        reg_max: int = 7,
        num_groups: int = 32,
        activation: str = "LeakyReLU",
    ) -> None:
        super().__init__()
        if feat_channels % num_groups:
            raise ValueError(f"feat_channels ({feat_channels}) must be a multiple of num_groups ({num_groups})")
        self.num_classes = num_classes
        self.strides = list(strides)
        self.reg_max = reg_max
        self.cls_convs = nn.Sequential(*[
            ConvGNAct(in_channels if i == 0 else feat_channels, feat_channels, num_groups, activation)
            for i in range(stacked_convs)])
        self.reg_convs = nn.Sequential(*[
            ConvGNAct(in_channels if i == 0 else feat_channels, feat_channels, num_groups, activation)
            for i in range(stacked_convs)])
        self.gfl_cls = nn.Conv2d(feat_channels, num_classes, 3, padding=1)
        self.gfl_reg = nn.Conv2d(feat_channels, 4 * (reg_max + 1), 3, padding=1)
        self.scales = nn.ModuleList(Scale(1.0) for _ in self.strides)
        self._init_weights()

    def _init_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.normal_(m.weight, std=0.01)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
        # Every class starts at probability 0.01, as in the main head.
        nn.init.constant_(self.gfl_cls.bias, -math.log((1 - 0.01) / 0.01))

    def forward(self, feats: Sequence[Tensor]) -> Tensor:
        if len(feats) != len(self.strides):
            raise ValueError(f"AuxiliaryHead expects {len(self.strides)} levels, got {len(feats)}")
        outputs: List[Tensor] = []
        for feat, scale in zip(feats, self.scales):
            cls_logits = self.gfl_cls(self.cls_convs(feat))
            reg_logits = scale(self.gfl_reg(self.reg_convs(feat))).float()
            outputs.append(torch.cat((cls_logits, reg_logits), dim=1).flatten(2))
        return torch.cat(outputs, dim=2).permute(0, 2, 1)


class AuxiliaryGuidance(nn.Module):
    """The auxiliary neck and head (NanoDet-Plus's `aux_fpn` and `aux_head`).

    Args:
        neck: the auxiliary neck, a deep copy of the main neck made by the caller.
        head: the auxiliary head; its `in_channels` are twice the neck's output channels.
        detach_epoch: from this epoch on, the auxiliary branch no longer sends gradients into the
            backbone or the main neck.
    """

    def __init__(self, neck: nn.Module, head: AuxiliaryHead, detach_epoch: int = 10) -> None:
        super().__init__()
        self.neck = neck
        self.head = head
        self.detach_epoch = detach_epoch

    def forward(self, backbone_feats: Sequence[Tensor], neck_feats: Sequence[Tensor], epoch: int) -> Tensor:
        """
        Args:
            backbone_feats: the backbone's levels, as the main neck got them.
            neck_feats: the main neck's levels `Tensor[B, C_neck, H_i, W_i]`.
            epoch: the current (0-based) training epoch.
        Returns:
            The auxiliary head's output `Tensor[B, N, C + 4 * (reg_max + 1)]`.
        """
        if epoch >= self.detach_epoch:
            aux_feats = self.neck([f.detach() for f in backbone_feats])
            dual = [torch.cat((f.detach(), a), dim=1) for f, a in zip(neck_feats, aux_feats)]
        else:
            aux_feats = self.neck(backbone_feats)
            dual = [torch.cat((f, a), dim=1) for f, a in zip(neck_feats, aux_feats)]
        return self.head(dual)
