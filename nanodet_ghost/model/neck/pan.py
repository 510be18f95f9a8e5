"""PAN neck as in NanoDet: 1x1 laterals, then a top-down and a bottom-up pass of resize + add.

No convolutions besides the laterals: the fusions are parameter-free, which keeps the neck at
about 0.1 M parameters.
"""
from __future__ import annotations

from typing import List, Sequence, Tuple

import torch.nn.functional as F
from torch import Tensor, nn


class PAN(nn.Module):
    """Path aggregation over the backbone's feature maps.

    Args:
        in_channels: channels of each input level, finest first (from the backbone's
            `feature_info`, e.g. [40, 112, 960]).
        out_channels: channels of every output level.

    `forward(feats)` takes `Tensor[B, in_channels[i], H_i, W_i]` per level and returns a tuple of
    `Tensor[B, out_channels, H_i, W_i]` with the same spatial sizes.

    `num_extra_level` is always 0 (no levels beyond the inputs); it and `num_levels` mirror
    `GhostPAN`'s so that callers can treat the two necks alike.
    """

    def __init__(self, in_channels: Sequence[int], out_channels: int = 96) -> None:
        super().__init__()
        self.in_channels = list(in_channels)
        self.out_channels = out_channels
        self.num_extra_level = 0
        self.lateral_convs = nn.ModuleList(nn.Conv2d(c, out_channels, 1, bias=True) for c in self.in_channels)
        for conv in self.lateral_convs:
            nn.init.xavier_uniform_(conv.weight)
            nn.init.zeros_(conv.bias)

    @property
    def num_levels(self) -> int:
        """Number of output levels (= input levels)."""
        return len(self.in_channels) + self.num_extra_level

    def forward(self, feats: Sequence[Tensor]) -> Tuple[Tensor, ...]:
        if len(feats) != len(self.lateral_convs):
            raise ValueError(f"PAN expects {len(self.lateral_convs)} feature maps, got {len(feats)}")
        laterals: List[Tensor] = [conv(f) for conv, f in zip(self.lateral_convs, feats)]
        for i in range(len(laterals) - 1, 0, -1):
            laterals[i - 1] = laterals[i - 1] + F.interpolate(
                laterals[i], size=laterals[i - 1].shape[-2:], mode="bilinear", align_corners=False
            )
        for i in range(len(laterals) - 1):
            laterals[i + 1] = laterals[i + 1] + F.interpolate(
                laterals[i], size=laterals[i + 1].shape[-2:], mode="bilinear", align_corners=False
            )
        return tuple(laterals)
