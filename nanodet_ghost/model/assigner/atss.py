"""Adaptive Training Sample Selection (Zhang et al., CVPR 2020), as used by GFL and NanoDet."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

import torch
from torch import Tensor
from torchvision.ops import box_iou

INSIDE_EPS = 0.01  # a point on a GT's border is not inside it


@dataclass
class AssignResult:
    """Assignment of N anchors to G ground-truth boxes.

    Attributes:
        gt_indices: `Tensor[N]` long, index of the assigned GT, -1 for negatives.
        labels: `Tensor[N]` long, class of the assigned GT, -1 for negatives.
        ignored: `Tensor[N]` bool, negatives whose centre lies in an ignore region; excluded
            from the classification loss.
    """

    gt_indices: Tensor
    labels: Tensor
    ignored: Tensor

    @property
    def positive(self) -> Tensor:
        return self.gt_indices >= 0


def points_inside_boxes(points: Tensor, boxes: Tensor, eps: float = INSIDE_EPS) -> Tensor:
    """`points: [N, 2]`, `boxes: [G, 4]` xyxy → `[N, G]` bool, strictly inside by `eps`."""
    x, y = points[:, 0, None], points[:, 1, None]
    deltas = torch.stack((x - boxes[:, 0], y - boxes[:, 1], boxes[:, 2] - x, boxes[:, 3] - y), dim=-1)
    return deltas.min(dim=-1).values > eps


class ATSSAssigner:
    """Per GT: take the `topk` anchors closest to its centre on each level, keep those whose IoU
    reaches the candidates' mean + std and whose centre lies inside the GT; an anchor claimed by
    several GTs goes to the one it overlaps most.
    """

    def __init__(self, topk: int = 9) -> None:
        self.topk = topk

    @torch.no_grad()
    def assign(
        self,
        anchors: Tensor,
        num_level_anchors: Sequence[int],
        gt_boxes: Tensor,
        gt_labels: Tensor,
        ignore_boxes: Optional[Tensor] = None,
    ) -> AssignResult:
        """
        Args:
            anchors: `Tensor[N, 4]` xyxy, level by level.
            num_level_anchors: anchors per level, summing to N.
            gt_boxes: `Tensor[G, 4]` xyxy (valid, positive-size boxes).
            gt_labels: `Tensor[G]` long.
            ignore_boxes: `Tensor[M, 4]` xyxy regions (e.g. COCO `iscrowd`), never positives.
        """
        num_anchors, device = anchors.shape[0], anchors.device
        gt_indices = torch.full((num_anchors,), -1, dtype=torch.long, device=device)
        labels = torch.full_like(gt_indices, -1)
        centers = (anchors[:, :2] + anchors[:, 2:]) / 2
        num_gts = gt_boxes.shape[0]

        if num_gts > 0:
            overlaps = box_iou(anchors, gt_boxes)  # [N, G]
            gt_centers = (gt_boxes[:, :2] + gt_boxes[:, 2:]) / 2
            distances = torch.cdist(centers, gt_centers)  # [N, G]
            candidates = []
            start = 0
            for count in num_level_anchors:
                k = min(self.topk, count)
                _, idx = distances[start : start + count].topk(k, dim=0, largest=False)
                candidates.append(idx + start)
                start += count
            candidate_idx = torch.cat(candidates, dim=0)  # [K, G]
            gt_range = torch.arange(num_gts, device=device)
            candidate_iou = overlaps[candidate_idx, gt_range]  # [K, G]
            std = candidate_iou.std(dim=0) if candidate_iou.shape[0] > 1 else torch.zeros_like(candidate_iou[0])
            threshold = candidate_iou.mean(dim=0) + std
            is_pos = candidate_iou >= threshold
            inside = points_inside_boxes(centers, gt_boxes)[candidate_idx, gt_range]
            is_pos &= inside

            chosen = torch.full_like(overlaps, -1.0)
            pos_anchor, pos_gt = candidate_idx[is_pos], gt_range.expand_as(candidate_idx)[is_pos]
            chosen[pos_anchor, pos_gt] = overlaps[pos_anchor, pos_gt]
            best_iou, best_gt = chosen.max(dim=1)
            positive = best_iou >= 0
            gt_indices[positive] = best_gt[positive]
            labels[positive] = gt_labels[best_gt[positive]]

        ignored = torch.zeros(num_anchors, dtype=torch.bool, device=device)
        if ignore_boxes is not None and ignore_boxes.numel() > 0:
            ignored = points_inside_boxes(centers, ignore_boxes).any(dim=1) & (gt_indices < 0)
        return AssignResult(gt_indices=gt_indices, labels=labels, ignored=ignored)
