"""GhostNet backbone (Han et al., "GhostNet: More Features from Cheap Operations", CVPR 2020).

Layer table from Table 1 of the paper (1.0x). The module and parameter names follow the official
implementation (`conv_stem`, `bn1`, `blocks.{0..9}`), which timm's `ghostnet_100` shares, so an
ImageNet state dict loads as it is. The classifier (`conv_head`, `classifier`) is not built.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Dict, List, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from nanodet_ghost.model.backbone.dynamic_conv import DynamicConv2d
from nanodet_ghost.model.backbone.ghostnet_weights import load_imagenet_weights

# Per stage: blocks of (kernel, expansion channels, out channels, SE ratio, stride).
GHOSTNET_STAGES: Tuple[Tuple[Tuple[int, int, int, float, int], ...], ...] = (
    ((3, 16, 16, 0.0, 1),),
    ((3, 48, 24, 0.0, 2),),
    ((3, 72, 24, 0.0, 1),),
    ((5, 72, 40, 0.25, 2),),
    ((5, 120, 40, 0.25, 1),),
    ((3, 240, 80, 0.0, 2),),
    (
        (3, 200, 80, 0.0, 1),
        (3, 184, 80, 0.0, 1),
        (3, 184, 80, 0.0, 1),
        (3, 480, 112, 0.25, 1),
        (3, 672, 112, 0.25, 1),
    ),
    ((5, 672, 160, 0.25, 2),),
    (
        (5, 960, 160, 0.0, 1),
        (5, 960, 160, 0.25, 1),
        (5, 960, 160, 0.0, 1),
        (5, 960, 160, 0.25, 1),
    ),
)
FINAL_CONV_CHANNELS = 960  # stage 9: 1x1 conv + BN + act

ACTIVATIONS: Dict[str, type] = {
    "ReLU": nn.ReLU,
    "LeakyReLU": nn.LeakyReLU,
    "ReLU6": nn.ReLU6,
    "SiLU": nn.SiLU,
    "Hardswish": nn.Hardswish,
}


def make_divisible(value: float, divisor: int = 4, min_value: int | None = None) -> int:
    """Round `value` to the nearest multiple of `divisor`, never dropping more than 10 %."""
    min_value = min_value or divisor
    rounded = max(min_value, int(value + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * value:
        rounded += divisor
    return rounded


def _activation(name: str) -> nn.Module:
    if name not in ACTIVATIONS:
        raise ValueError(f"unknown activation '{name}', expected one of {sorted(ACTIVATIONS)}")
    return ACTIVATIONS[name](inplace=True) if name != "LeakyReLU" else nn.LeakyReLU(0.1, inplace=True)


class SqueezeExcite(nn.Module):
    """Channel attention with a hard-sigmoid gate."""

    def __init__(self, channels: int, se_ratio: float = 0.25, act: str = "ReLU") -> None:
        super().__init__()
        reduced = make_divisible(channels * se_ratio, 4)
        self.conv_reduce = nn.Conv2d(channels, reduced, 1, bias=True)
        self.act1 = _activation(act)
        self.conv_expand = nn.Conv2d(reduced, channels, 1, bias=True)

    def forward(self, x: Tensor) -> Tensor:
        gate = x.mean((2, 3), keepdim=True)
        gate = self.conv_expand(self.act1(self.conv_reduce(gate)))
        return x * F.hardsigmoid(gate)


class ConvBnAct(nn.Module):
    def __init__(self, in_chs: int, out_chs: int, kernel_size: int, stride: int = 1, act: str = "ReLU") -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_chs, out_chs, kernel_size, stride, kernel_size // 2, bias=False)
        self.bn1 = nn.BatchNorm2d(out_chs)
        self.act1 = _activation(act)

    def forward(self, x: Tensor) -> Tensor:
        return self.act1(self.bn1(self.conv(x)))


class GhostModule(nn.Module):
    """A primary conv makes `ceil(out/ratio)` maps; a cheap depthwise conv makes the rest.

    Each branch has its own BN, so the concatenation needs none. With `dynamic_experts` K > 0 the
    primary conv is a `DynamicConv2d` with K experts (K = 0: the plain `nn.Conv2d`, as always).
    `forward(x: Tensor[B, in_chs, H, W]) -> Tensor[B, out_chs, H / stride, W / stride]`.
    """

    def __init__(
        self,
        in_chs: int,
        out_chs: int,
        kernel_size: int = 1,
        ratio: int = 2,
        dw_size: int = 3,
        stride: int = 1,
        use_act: bool = True,
        act: str = "ReLU",
        dynamic_experts: int = 0,
    ) -> None:
        super().__init__()
        self.out_chs = out_chs
        init_chs = math.ceil(out_chs / ratio)
        cheap_chs = init_chs * (ratio - 1)
        self.concat_chs = init_chs + cheap_chs
        primary: nn.Module = (
            DynamicConv2d(in_chs, init_chs, kernel_size, stride, kernel_size // 2, dynamic_experts)
            if dynamic_experts else nn.Conv2d(in_chs, init_chs, kernel_size, stride, kernel_size // 2, bias=False))
        self.primary_conv = nn.Sequential(
            primary,
            nn.BatchNorm2d(init_chs),
            _activation(act) if use_act else nn.Identity(),
        )
        self.cheap_operation = nn.Sequential(
            nn.Conv2d(init_chs, cheap_chs, dw_size, 1, dw_size // 2, groups=init_chs, bias=False),
            nn.BatchNorm2d(cheap_chs),
            _activation(act) if use_act else nn.Identity(),
        )

    def forward(self, x: Tensor) -> Tensor:
        primary = self.primary_conv(x)
        cheap = self.cheap_operation(primary)
        out = torch.cat((primary, cheap), dim=1)
        # The slice is a no-op for every even out_chs (all of GhostNet 1.0x); left in, it is
        # traced into exported graphs, where runtimes copy or re-layout the tensor around it.
        return out if self.concat_chs == self.out_chs else out[:, : self.out_chs]


class GhostBottleneck(nn.Module):
    """ghost1 (expand) → [stride-2 depthwise conv + BN] → [SE] → ghost2 (project, linear) + shortcut."""

    def __init__(
        self,
        in_chs: int,
        mid_chs: int,
        out_chs: int,
        dw_kernel_size: int = 3,
        stride: int = 1,
        se_ratio: float = 0.0,
        act: str = "ReLU",
        dynamic_experts: int = 0,
    ) -> None:
        super().__init__()
        self.stride = stride
        self.ghost1 = GhostModule(in_chs, mid_chs, use_act=True, act=act, dynamic_experts=dynamic_experts)
        if stride > 1:
            pad = (dw_kernel_size - 1) // 2
            self.conv_dw = nn.Conv2d(mid_chs, mid_chs, dw_kernel_size, stride, pad, groups=mid_chs, bias=False)
            self.bn_dw = nn.BatchNorm2d(mid_chs)
        self.se = SqueezeExcite(mid_chs, se_ratio, act) if se_ratio > 0 else None
        self.ghost2 = GhostModule(mid_chs, out_chs, use_act=False, act=act, dynamic_experts=dynamic_experts)
        if in_chs == out_chs and stride == 1:
            self.shortcut = nn.Sequential()
        else:
            pad = (dw_kernel_size - 1) // 2
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_chs, in_chs, dw_kernel_size, stride, pad, groups=in_chs, bias=False),
                nn.BatchNorm2d(in_chs),
                nn.Conv2d(in_chs, out_chs, 1, bias=False),
                nn.BatchNorm2d(out_chs),
            )

    def forward(self, x: Tensor) -> Tensor:
        out = self.ghost1(x)
        if self.stride > 1:
            out = self.bn_dw(self.conv_dw(out))
        if self.se is not None:
            out = self.se(out)
        out = self.ghost2(out)
        return out + self.shortcut(x)


@dataclass(frozen=True)
class FeatureInfo:
    """What one tapped stage returns (as timm's `feature_info`)."""

    stage: int
    num_chs: int
    reduction: int


def kept_block_indices(depth: float) -> List[List[int]]:
    """For each stage of `GHOSTNET_STAGES`, the indices of the blocks a GhostNet of `depth` keeps.

    A stage of n blocks keeps `max(1, round(n * depth))` of them (Python's `round`, halves to even:
    5 blocks at 0.5 keep 2), never fewer than its stride-2 blocks, which it always keeps; the rest
    are its LAST blocks, so the stage ends with the block that sets its output channels.
    """
    if not (isinstance(depth, (int, float)) and 0 < depth <= 1):
        raise ValueError(f"depth must lie in (0, 1], got {depth}")
    kept = []
    for stage in GHOSTNET_STAGES:
        strided = [i for i, block in enumerate(stage) if block[4] > 1]
        others = [i for i in range(len(stage)) if i not in strided]
        extra = max(1, round(len(stage) * depth), len(strided)) - len(strided)
        kept.append(sorted(strided + others[len(others) - extra:]))
    return kept


class GhostNet(nn.Module):
    """GhostNet feature extractor.

    Args:
        width: channel multiplier (1.0 is the paper's GhostNet 1.0x; 0.5, 0.75, 1.3, ... round every
            channel count with `make_divisible(c * width, 4)` as the official code and timm do).
        depth: fraction of the GhostBottlenecks kept in each stage, in (0, 1]; see
            `kept_block_indices` (a stage keeps `max(1, round(n * depth))` blocks, its stride-2
            ones and otherwise its last ones). `kept_blocks[s]` lists the original indices of the
            blocks of stage s.
        out_stages: indices of `blocks` whose outputs are returned; 9 is the final 1x1 conv.
        activation: name of the activation (`ACTIVATIONS`).
        dynamic_experts: K > 0 makes every GhostModule's primary 1x1 conv a `DynamicConv2d` with K
            expert kernels; 0 (off) builds exactly the plain network (same modules and keys).
        pretrained: local path of an official-layout ImageNet GhostNet 1.0x state dict, a torch
            file (.pth, .ckpt) or a `.safetensors` file (timm's `ghostnet_100` has the same keys;
            never downloaded). With width 1.0, depth 1.0 and no dynamic experts it
            loads strictly. With depth < 1 every kept block loads from its source block
            (`blocks.6.0.*` <- `blocks.6.3.*`), every tensor whose shape fits is loaded and the rest
            keep their initialisation (logged at INFO, counted). With dynamic experts every expert
            kernel starts as the pretrained primary kernel; the routing layers keep their
            initialisation. ImageNet weights exist only for width 1.0: any other width raises
            `CheckpointMismatchError`. A file that is not a GhostNet 1.0x state dict raises it too,
            listing the offending keys.

    `forward(x: Tensor[B, 3, H, W]) -> tuple` of `Tensor[B, C_i, H / r_i, W / r_i]`, one per
    out stage; `feature_info` lists `(stage, num_chs, reduction)` for each, e.g. for 1.0x and
    (4, 6, 9): 40/112/960 channels at strides 8/16/32 (at any depth).
    """

    def __init__(
        self,
        width: float = 1.0,
        depth: float = 1.0,
        out_stages: Sequence[int] = (4, 6, 9),
        activation: str = "ReLU",
        dynamic_experts: int = 0,
        pretrained: str | None = None,
    ) -> None:
        super().__init__()
        if not (isinstance(width, (int, float)) and math.isfinite(width) and width > 0):
            raise ValueError(f"width must be > 0, got {width}")
        if isinstance(dynamic_experts, bool) or not isinstance(dynamic_experts, int) or dynamic_experts < 0 \
                or dynamic_experts == 1:
            raise ValueError(f"dynamic_experts must be 0 (off) or an integer >= 2, got {dynamic_experts}")
        out_stages = tuple(int(s) for s in out_stages)
        if not out_stages or any(s < 0 or s > len(GHOSTNET_STAGES) for s in out_stages):
            raise ValueError(f"out_stages must lie in 0..{len(GHOSTNET_STAGES)}, got {out_stages}")
        if list(out_stages) != sorted(set(out_stages)):
            raise ValueError(f"out_stages must be strictly increasing, got {out_stages}")
        self.out_stages = out_stages
        self.kept_blocks: List[List[int]] = kept_block_indices(depth)  # validates depth
        self.width, self.depth, self.dynamic_experts = width, depth, dynamic_experts

        stem_chs = make_divisible(16 * width, 4)
        self.conv_stem = nn.Conv2d(3, stem_chs, 3, 2, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(stem_chs)
        self.act1 = _activation(activation)

        stage_info: List[FeatureInfo] = []
        reduction, in_chs = 2, stem_chs
        blocks: List[nn.Module] = []
        for stage_idx, (stage, kept) in enumerate(zip(GHOSTNET_STAGES, self.kept_blocks)):
            layers = []
            for kernel, expansion, out, se_ratio, stride in (stage[i] for i in kept):
                out_chs = make_divisible(out * width, 4)
                mid_chs = make_divisible(expansion * width, 4)
                layers.append(GhostBottleneck(in_chs, mid_chs, out_chs, kernel, stride, se_ratio, activation,
                                              self.dynamic_experts))
                in_chs, reduction = out_chs, reduction * stride
            blocks.append(nn.Sequential(*layers))
            stage_info.append(FeatureInfo(stage_idx, in_chs, reduction))
        final_chs = make_divisible(FINAL_CONV_CHANNELS * width, 4)
        blocks.append(nn.Sequential(ConvBnAct(in_chs, final_chs, 1, act=activation)))
        stage_info.append(FeatureInfo(len(GHOSTNET_STAGES), final_chs, reduction))
        # Stages past the last tapped one are never used: don't build them.
        self.blocks = nn.Sequential(*blocks[: max(out_stages) + 1])
        self.feature_info: List[FeatureInfo] = [stage_info[s] for s in out_stages]

        self._init_weights()
        if pretrained:
            self.load_pretrained(pretrained)

    @property
    def out_channels(self) -> List[int]:
        return [f.num_chs for f in self.feature_info]

    @property
    def strides(self) -> List[int]:
        return [f.reduction for f in self.feature_info]

    def _init_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, DynamicConv2d):
                with torch.no_grad():
                    for expert in m.weight.split(m.out_channels):  # per expert: fans of one kernel
                        nn.init.kaiming_normal_(expert, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x: Tensor) -> Tuple[Tensor, ...]:
        x = self.act1(self.bn1(self.conv_stem(x)))
        outputs = []
        for idx, block in enumerate(self.blocks):
            x = block(x)
            if idx in self.out_stages:
                outputs.append(x)
        return tuple(outputs)

    def source_key(self, key: str) -> str:
        """The key of the full 1.0x network a tensor of this one comes from (`blocks.s.j.*` ->
        `blocks.s.kept_blocks[s][j].*`)."""
        parts = key.split(".", 3)
        if parts[0] == "blocks" and int(parts[1]) < len(self.kept_blocks):
            parts[2] = str(self.kept_blocks[int(parts[1])][int(parts[2])])
        return ".".join(parts)

    def load_pretrained(self, path: str) -> None:
        """Load an official ImageNet GhostNet 1.0x state dict from a local file (see the class doc and
        `ghostnet_weights.load_imagenet_weights`)."""
        load_imagenet_weights(self, path)
