"""GFL head as in NanoDet: per level, shared cls/reg depthwise-separable convs and one output conv."""
from __future__ import annotations

import math
from typing import List, Sequence

import torch
from torch import Tensor, nn

from nanodet_ghost.model.backbone.ghostnet import _activation


class DepthwiseSeparableConv(nn.Module):
    """`kernel_size` depthwise conv (stride `stride`) + BN + act, then 1x1 pointwise conv + BN + act.

    The activation defaults to LeakyReLU(0.1). `forward(x: Tensor[B, in_channels, H, W])` returns
    `Tensor[B, out_channels, ceil(H / stride), ceil(W / stride)]`.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3, stride: int = 1,
                 activation: str = "LeakyReLU") -> None:
        super().__init__()
        self.depthwise = nn.Conv2d(in_channels, in_channels, kernel_size, stride, kernel_size // 2,
                                   groups=in_channels, bias=False)
        self.dw_norm = nn.BatchNorm2d(in_channels)
        self.pointwise = nn.Conv2d(in_channels, out_channels, 1, bias=False)
        self.pw_norm = nn.BatchNorm2d(out_channels)
        self.act = _activation(activation)

    def forward(self, x: Tensor) -> Tensor:
        x = self.act(self.dw_norm(self.depthwise(x)))
        return self.act(self.pw_norm(self.pointwise(x)))


class GFLHead(nn.Module):
    """Generalized Focal Loss head (NanoDet layout, classification and regression share convs).

    Args:
        num_classes: number of foreground classes C.
        in_channels: channels of every input level (the neck's `out_channels`).
        feat_channels: channels inside the tower.
        stacked_convs: depthwise-separable convs per level before the output conv.
        strides: input-pixel stride of each level.
        reg_max: the regression distribution has `reg_max + 1` bins per box side.
        kernel_size: depthwise kernel of the tower convs (NanoDet-Plus uses 5).

    With `kernel_size=5` and strides [8, 16, 32, 64] this is NanoDet-Plus's head (its
    `NanoDetPlusHead.forward`, not the ONNX path that applies the sigmoid).

    `forward(feats)` takes one `Tensor[B, in_channels, H_i, W_i]` per level and returns
    `Tensor[B, N, C + 4 * (reg_max + 1)]`, N = sum of H_i * W_i (level by level, row-major):
    class logits then the l, t, r, b distribution logits.
    """

    def __init__(
        self,
        num_classes: int,
        in_channels: int,
        feat_channels: int = 96,
        stacked_convs: int = 2,
        strides: Sequence[int] = (8, 16, 32),
        reg_max: int = 7,
        kernel_size: int = 3,
    ) -> None:
        super().__init__()
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        if kernel_size < 1 or kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be odd and positive, got {kernel_size}")
        self.num_classes = num_classes
        self.strides = list(strides)
        self.reg_max = reg_max
        self.kernel_size = kernel_size
        self.num_outputs = num_classes + 4 * (reg_max + 1)
        self.towers = nn.ModuleList()
        self.predictors = nn.ModuleList()
        for _ in self.strides:
            layers = [DepthwiseSeparableConv(in_channels if i == 0 else feat_channels, feat_channels, kernel_size)
                      for i in range(stacked_convs)]
            self.towers.append(nn.Sequential(*layers))
            self.predictors.append(nn.Conv2d(feat_channels, self.num_outputs, 1))
        self._init_weights()

    def _init_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.normal_(m.weight, std=0.01)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
        # Start every class at a prior probability of 0.01 so the many negatives don't swamp QFL.
        prior_bias = -math.log((1 - 0.01) / 0.01)
        for predictor in self.predictors:
            nn.init.constant_(predictor.bias[: self.num_classes], prior_bias)

    def forward(self, feats: Sequence[Tensor]) -> Tensor:
        if len(feats) != len(self.strides):
            raise ValueError(f"GFLHead expects {len(self.strides)} levels, got {len(feats)}")
        outputs: List[Tensor] = []
        for feat, tower, predictor in zip(feats, self.towers, self.predictors):
            out = predictor(tower(feat))
            outputs.append(out.flatten(2))
        return torch.cat(outputs, dim=2).permute(0, 2, 1)
