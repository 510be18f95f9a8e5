"""Builds NanoDet's GhostPAN and NanoDetPlusHead from a RangiLyu/nanodet checkout, from configs
written with nanodet_ghost's argument names, and fills them with random weights and BN statistics.

Used by make_neck_head_oracle.py and by the live test in tests/model/test_ghost_pan.py.
"""
from __future__ import annotations

import contextlib
import io
import math
import sys
from types import SimpleNamespace
from typing import Any, Mapping, Tuple

import torch
from torch import nn

NANODET_SRC_ENV = "NANODET_SRC"


def import_nanodet(src: str) -> Tuple[type, type]:
    """(GhostPAN, NanoDetPlusHead) of the nanodet checkout at `src` (raises ImportError)."""
    if src not in sys.path:
        sys.path.insert(0, src)
    from nanodet.model.fpn.ghost_pan import GhostPAN
    from nanodet.model.head.nanodet_plus_head import NanoDetPlusHead

    return GhostPAN, NanoDetPlusHead


def build_nanodet_neck(ghost_pan_cls: type, cfg: Mapping[str, Any]) -> nn.Module:
    """NanoDet's GhostPAN for our `GhostPAN(**cfg)`; NanoDet-Plus uses depthwise downsampling."""
    return ghost_pan_cls(use_depthwise=True, **cfg)


def build_nanodet_head(head_cls: type, cfg: Mapping[str, Any]) -> nn.Module:
    """NanoDetPlusHead for our `GFLHead(**cfg)` (BN, LeakyReLU, depthwise-separable towers)."""
    # The head builds its losses in __init__; their weights do not matter for `forward`.
    ns = SimpleNamespace
    loss = ns(loss_qfl=ns(beta=2.0, loss_weight=1.0), loss_dfl=ns(loss_weight=0.25),
              loss_bbox=ns(loss_weight=2.0))
    with contextlib.redirect_stdout(io.StringIO()):  # it prints when initialised
        return head_cls(
            num_classes=cfg["num_classes"], loss=loss, input_channel=cfg["in_channels"],
            feat_channels=cfg["feat_channels"], stacked_convs=cfg["stacked_convs"],
            kernel_size=cfg["kernel_size"], strides=list(cfg["strides"]), reg_max=cfg["reg_max"],
            activation="LeakyReLU",
        )


@torch.no_grad()
def randomize_(module: nn.Module, generator: torch.Generator) -> None:
    """Random convs (std 1/sqrt(fan_in), so activations stay near unit scale), BN affine and
    running statistics, and a non-zero `num_batches_tracked`, in place."""
    def normal(t: torch.Tensor, std: float, mean: float = 0.0) -> None:
        t.copy_(torch.randn(t.shape, generator=generator) * std + mean)

    def uniform(t: torch.Tensor, low: float, high: float) -> None:
        t.copy_(torch.rand(t.shape, generator=generator) * (high - low) + low)

    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            normal(m.weight, 1.0 / math.sqrt(m.weight[0].numel()))
            if m.bias is not None:
                normal(m.bias, 0.1)
        elif isinstance(m, nn.BatchNorm2d):
            uniform(m.weight, 0.5, 1.5)
            normal(m.bias, 0.2)
            normal(m.running_mean, 0.2)
            uniform(m.running_var, 0.5, 2.0)
            m.num_batches_tracked.fill_(int(torch.randint(1, 100, (1,), generator=generator)))
