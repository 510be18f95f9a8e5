"""GhostPAN neck as in NanoDet-Plus: a PAN whose fusions are Ghost blocks on concatenations.

Per level a 1x1 conv + BN + act brings the backbone channels to `out_channels`. The top-down path
upsamples the coarser map (bilinear x2), concatenates it with the finer one and fuses the pair with
a Ghost block; the bottom-up path downsamples with a stride-2 depthwise-separable conv and fuses
likewise. Extra levels (stride x2 each) add a stride-2 conv of the reduced last input to a stride-2
conv of the last output.

Given the same weights, the outputs equal NanoDet's `GhostPAN(use_depthwise=True)` (the mapping
of parameter names is in tests/model/reference/nanodet_names.py). Configurations that fail in
NanoDet work here: `num_blocks > 1` (NanoDet feeds every block of a stack `2 * out_channels`),
`num_extra_level > 1` (NanoDet makes every extra level's in-conv from the last input, so the second
adds a stride-64 map to a stride-128 one: a shape error, or a silent broadcast on tiny maps; here
each in-conv takes the previous one's output) and odd widths (NanoDet's GhostModule returns one
channel too many; ours trims it). With the settings NanoDet can run the two are identical.
"""
from __future__ import annotations

from typing import List, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from nanodet_ghost.model.backbone.ghostnet import ConvBnAct, GhostBottleneck, _activation
from nanodet_ghost.model.head.gfl_head import DepthwiseSeparableConv


class ConvAct(nn.Module):
    """1x1 conv with bias + act, no BN (NanoDet's residual branch of a Ghost block has none).

    `forward(x: Tensor[B, in_channels, H, W]) -> Tensor[B, out_channels, H, W]`.
    """

    def __init__(self, in_channels: int, out_channels: int, activation: str = "LeakyReLU") -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, 1, bias=True)
        self.act = _activation(activation)

    def forward(self, x: Tensor) -> Tensor:
        return self.act(self.conv(x))


class GhostBlocks(nn.Module):
    """`num_blocks` GhostBottlenecks (depthwise kernel `kernel_size`, stride 1), optionally plus a
    1x1 conv (with bias, no BN) + act of the input (`use_res`).

    `forward(x: Tensor[B, in_channels, H, W]) -> Tensor[B, out_channels, H, W]`.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        expand: float = 1.0,
        kernel_size: int = 5,
        num_blocks: int = 1,
        use_res: bool = False,
        activation: str = "LeakyReLU",
    ) -> None:
        super().__init__()
        mid_channels = int(out_channels * expand)
        if mid_channels < 1:
            raise ValueError(f"expand {expand} leaves no channels inside the Ghost blocks (out_channels {out_channels})")
        self.use_res = use_res
        if use_res:
            self.reduce_conv = ConvAct(in_channels, out_channels, activation)
        self.blocks = nn.Sequential(*(
            GhostBottleneck(in_channels if i == 0 else out_channels, mid_channels, out_channels,
                            dw_kernel_size=kernel_size, act=activation)
            for i in range(num_blocks)
        ))

    def forward(self, x: Tensor) -> Tensor:
        out = self.blocks(x)
        return out + self.reduce_conv(x) if self.use_res else out


class GhostPAN(nn.Module):
    """Path aggregation with Ghost blocks (NanoDet-Plus neck).

    Args:
        in_channels: channels of each input level, finest first (the backbone's `out_channels`).
        out_channels: channels of every output level.
        kernel_size: depthwise kernel of the Ghost blocks and of the stride-2 downsampling convs.
        expand: the Ghost blocks' hidden channels are `int(out_channels * expand)`.
        num_blocks: GhostBottlenecks per fusion.
        use_res: add a 1x1 conv (bias, no BN) + act of each fusion's input to the Ghost blocks' output.
        num_extra_level: extra outputs after the last input level, each at twice the stride.
        activation: activation name (`ACTIVATIONS` of the backbone; LeakyReLU has slope 0.1).

    `forward(feats)` takes `Tensor[B, in_channels[i], H_i, W_i]` per level, each level's size the
    ceiling of half the previous one (as stride-2 convs give), and returns a tuple of `num_levels`
    tensors `Tensor[B, out_channels, H_i, W_i]`: the input sizes, then for each extra level
    `ceil(H / 2) x ceil(W / 2)` of the level before.
    """

    def __init__(
        self,
        in_channels: Sequence[int],
        out_channels: int = 96,
        kernel_size: int = 5,
        expand: float = 1.0,
        num_blocks: int = 1,
        use_res: bool = False,
        num_extra_level: int = 0,
        activation: str = "LeakyReLU",
    ) -> None:
        super().__init__()
        self.in_channels = [int(c) for c in in_channels]
        if not self.in_channels or min(self.in_channels) < 1:
            raise ValueError(f"in_channels must be a non-empty list of positive counts, got {list(in_channels)}")
        if out_channels < 1:
            raise ValueError(f"out_channels must be >= 1, got {out_channels}")
        if kernel_size < 1 or kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be odd and positive, got {kernel_size}")
        if num_blocks < 1:
            raise ValueError(f"num_blocks must be >= 1, got {num_blocks}")
        if num_extra_level < 0:
            raise ValueError(f"num_extra_level must be >= 0, got {num_extra_level}")
        self.out_channels = int(out_channels)
        self.num_extra_level = int(num_extra_level)
        n = len(self.in_channels)

        def fusion() -> GhostBlocks:
            return GhostBlocks(2 * out_channels, out_channels, expand, kernel_size, num_blocks, use_res, activation)

        def stride2() -> DepthwiseSeparableConv:
            return DepthwiseSeparableConv(out_channels, out_channels, kernel_size, stride=2, activation=activation)

        self.reduce_layers = nn.ModuleList(ConvBnAct(c, out_channels, 1, act=activation) for c in self.in_channels)
        # top_down_blocks[0] fuses the two coarsest levels.
        self.top_down_blocks = nn.ModuleList(fusion() for _ in range(n - 1))
        self.downsamples = nn.ModuleList(stride2() for _ in range(n - 1))
        self.bottom_up_blocks = nn.ModuleList(fusion() for _ in range(n - 1))
        self.extra_lvl_in_conv = nn.ModuleList(stride2() for _ in range(num_extra_level))
        self.extra_lvl_out_conv = nn.ModuleList(stride2() for _ in range(num_extra_level))

    @property
    def num_levels(self) -> int:
        """Number of output levels: the inputs plus the extra ones."""
        return len(self.in_channels) + self.num_extra_level

    def forward(self, feats: Sequence[Tensor]) -> Tuple[Tensor, ...]:
        n = len(self.in_channels)
        if len(feats) != n:
            raise ValueError(f"GhostPAN expects {n} feature maps, got {len(feats)}")
        reduced: List[Tensor] = [layer(f) for layer, f in zip(self.reduce_layers, feats)]

        inner: List[Tensor] = [reduced[-1]]  # finest first once complete
        for k, idx in enumerate(range(n - 1, 0, -1)):
            fine = reduced[idx - 1]
            # An explicit size, not scale_factor=2: equal when sizes double, and odd sizes still fit.
            up = F.interpolate(inner[0], size=fine.shape[-2:], mode="bilinear", align_corners=False)
            inner.insert(0, self.top_down_blocks[k](torch.cat((up, fine), dim=1)))

        outs: List[Tensor] = [inner[0]]
        for idx in range(n - 1):
            down = self.downsamples[idx](outs[-1])
            outs.append(self.bottom_up_blocks[idx](torch.cat((down, inner[idx + 1]), dim=1)))

        extra_in = reduced[-1]
        for in_conv, out_conv in zip(self.extra_lvl_in_conv, self.extra_lvl_out_conv):
            # Chained so that every extra level is at twice the stride of the one before.
            extra_in = in_conv(extra_in)
            outs.append(extra_in + out_conv(outs[-1]))
        return tuple(outs)
