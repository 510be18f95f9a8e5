"""Point grids and box decoding shared by the loss and the post-processor."""
from __future__ import annotations

import math
from typing import List, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor


def featmap_sizes(input_hw: Tuple[int, int], strides: Sequence[int]) -> List[Tuple[int, int]]:
    """Feature map (h, w) per stride: every stride-2 layer pads, so sizes round up."""
    height, width = input_hw
    return [(math.ceil(height / s), math.ceil(width / s)) for s in strides]


def grid_points(
    input_hw: Tuple[int, int], strides: Sequence[int], device: torch.device | None = None, offset: float = 0.5
) -> Tuple[Tensor, Tensor]:
    """Points of every level, in the head's output order.

    Args:
        offset: a point sits at `(cell + offset) * stride`: 0.5 is the cell centre (NanoDet's GFL
            head), 0 its top-left corner (NanoDet-Plus's priors).
    Returns:
        points: `Tensor[N, 2]` (x, y) in input pixels, `((col + offset) * s, (row + offset) * s)`.
        point_strides: `Tensor[N]` the stride of each point's level.
    """
    points, point_strides = [], []
    for (h, w), stride in zip(featmap_sizes(input_hw, strides), strides):
        ys = (torch.arange(h, device=device, dtype=torch.float32) + offset) * stride
        xs = (torch.arange(w, device=device, dtype=torch.float32) + offset) * stride
        yy, xx = torch.meshgrid(ys, xs, indexing="ij")
        points.append(torch.stack((xx.reshape(-1), yy.reshape(-1)), dim=1))
        point_strides.append(torch.full((h * w,), float(stride), device=device))
    return torch.cat(points), torch.cat(point_strides)


def distribution_to_distance(reg_logits: Tensor, reg_max: int) -> Tensor:
    """Expected value of each side's discrete distribution.

    Args:
        reg_logits: `Tensor[..., 4 * (reg_max + 1)]` logits, sides in l, t, r, b order.
    Returns:
        `Tensor[..., 4]` distances in units of the level's stride, in [0, reg_max].
    """
    shape = reg_logits.shape[:-1]
    probs = F.softmax(reg_logits.reshape(*shape, 4, reg_max + 1), dim=-1)
    bins = torch.arange(reg_max + 1, device=reg_logits.device, dtype=probs.dtype)
    return (probs * bins).sum(-1)


def distance_to_box(points: Tensor, distances: Tensor, max_hw: Tuple[int, int] | None = None) -> Tensor:
    """`points: [..., 2]` (x, y) and `distances: [..., 4]` (l, t, r, b) → xyxy boxes `[..., 4]`."""
    x1 = points[..., 0] - distances[..., 0]
    y1 = points[..., 1] - distances[..., 1]
    x2 = points[..., 0] + distances[..., 2]
    y2 = points[..., 1] + distances[..., 3]
    if max_hw is not None:
        x1, x2 = x1.clamp(0, max_hw[1]), x2.clamp(0, max_hw[1])
        y1, y2 = y1.clamp(0, max_hw[0]), y2.clamp(0, max_hw[0])
    return torch.stack((x1, y1, x2, y2), dim=-1)


def box_to_distance(points: Tensor, boxes: Tensor, max_distance: float) -> Tensor:
    """Inverse of `distance_to_box`, clamped to [0, max_distance] (for DFL targets)."""
    distances = torch.stack(
        (
            points[..., 0] - boxes[..., 0],
            points[..., 1] - boxes[..., 1],
            boxes[..., 2] - points[..., 0],
            boxes[..., 3] - points[..., 1],
        ),
        dim=-1,
    )
    return distances.clamp(0, max_distance)
