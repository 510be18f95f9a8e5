"""Dynamic soft-label assignment (NanoDet-Plus, after OTA and YOLOX's SimOTA).

Candidates are the points strictly inside at least one ground-truth box. Each (candidate, GT) pair
costs a soft-label classification term plus `iou_factor * -log(IoU)`; each GT takes its
`dynamic_k` cheapest candidates, `dynamic_k` being the (truncated) sum of its `topk` best IoUs,
and a point claimed by several GTs goes to its cheapest GT. A positive's soft label (the QFL
target) is the IoU of its predicted box with its GT.

The numbers are NanoDet's `DynamicSoftLabelAssigner`: the same IoU (union floored at 1e-6), the
same cost tensor and the same `torch.topk` calls wherever their outcome depends on tie-breaking,
so the assignment is identical point for point.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from nanodet_ghost.model.assigner.atss import points_inside_boxes

IOU_UNION_EPS = 1e-6  # NanoDet's bbox_overlaps floors the union here
IOU_LOG_EPS = 1e-7


@dataclass
class DSLAssignResult:
    """Assignment of N points to G ground-truth boxes.

    Attributes:
        gt_indices: `Tensor[N]` long, index of the assigned GT, -1 for negatives.
        labels: `Tensor[N]` long, class of the assigned GT, -1 for negatives.
        ious: `Tensor[N]` float, the soft label of a positive (IoU of its decoded box with its
            GT), 0 for negatives.
    """

    gt_indices: Tensor
    labels: Tensor
    ious: Tensor

    @property
    def positive(self) -> Tensor:
        return self.gt_indices >= 0


def pairwise_box_iou(boxes1: Tensor, boxes2: Tensor, eps: float = IOU_UNION_EPS) -> Tensor:
    """IoU of every pair, `[N, 4]` x `[G, 4]` xyxy -> `Tensor[N, G]`.

    `torchvision.ops.box_iou` computes the same products in the same order but divides by the raw
    union, which is 0/0 = NaN for a zero-area prediction against a zero-area box; NanoDet floors
    the union at `eps`, and so does this.
    """
    area1 = (boxes1[:, 2] - boxes1[:, 0]) * (boxes1[:, 3] - boxes1[:, 1])
    area2 = (boxes2[:, 2] - boxes2[:, 0]) * (boxes2[:, 3] - boxes2[:, 1])
    top_left = torch.max(boxes1[:, None, :2], boxes2[None, :, :2])
    bottom_right = torch.min(boxes1[:, None, 2:], boxes2[None, :, 2:])
    wh = (bottom_right - top_left).clamp(min=0)
    overlap = wh[..., 0] * wh[..., 1]
    union = area1[:, None] + area2[None, :] - overlap
    return overlap / union.clamp(min=eps)


class DynamicSoftLabelAssigner:
    """NanoDet-Plus's assigner.

    Args:
        topk: the best `topk` IoUs of a GT are summed into its dynamic k.
        iou_factor: weight of the `-log(IoU)` cost.
    """

    def __init__(self, topk: int = 13, iou_factor: float = 3.0) -> None:
        self.topk = topk
        self.iou_factor = iou_factor

    def cost_matrix(self, cls_logits: Tensor, ious: Tensor, gt_labels: Tensor) -> Tensor:
        """`cls_logits: [V, C]`, `ious: [V, G]`, `gt_labels: [G]` -> cost `Tensor[V, G]`.

        Built over the full `[V, G, C]` tensor and reduced over classes, as NanoDet does: the
        cheaper "negatives are GT-independent" factorisation sums in another order, and a last-bit
        difference can move a point across the dynamic-k cut.
        """
        num_valid, num_gt = ious.shape
        num_classes = cls_logits.shape[1]
        onehot = F.one_hot(gt_labels.long(), num_classes).float()
        soft_label = onehot[None] * ious[..., None]
        logits = cls_logits[:, None, :].expand(num_valid, num_gt, num_classes)
        scale = soft_label - logits.sigmoid()
        cls_cost = F.binary_cross_entropy_with_logits(logits, soft_label, reduction="none") * scale.abs().pow(2.0)
        iou_cost = -torch.log(ious + IOU_LOG_EPS)
        return cls_cost.sum(dim=-1) + iou_cost * self.iou_factor

    def dynamic_k_matching(self, cost: Tensor, ious: Tensor) -> Tensor:
        """`cost, ious: [V, G]` -> `Tensor[V]` long, the matched GT of each candidate or -1.

        The `dynamic_k` cheapest candidates of a GT are those whose cost is at most its k-th
        smallest cost, unless the (k+1)-th ties with it; only then does the choice depend on how
        `torch.topk` breaks ties, so only those GTs ask `torch.topk` exactly as NanoDet does.
        """
        num_valid, num_gt = cost.shape
        candidate_topk = min(self.topk, num_valid)
        top_ious = torch.topk(ious, candidate_topk, dim=0).values
        dynamic_ks = torch.clamp(top_ious.sum(0).int(), min=1).long()  # [G], at most V

        depth = min(int(dynamic_ks.max()) + 1, num_valid)
        sorted_cost = torch.topk(cost, depth, dim=0, largest=False).values  # ascending, [depth, G]
        kth = sorted_cost.gather(0, (dynamic_ks - 1)[None])[0]
        matching = cost <= kth[None]
        has_next = dynamic_ks < num_valid
        next_cost = sorted_cost.gather(0, dynamic_ks.clamp(max=depth - 1)[None])[0]
        for gt in torch.nonzero(has_next & (next_cost == kth), as_tuple=False).flatten().tolist():
            chosen = torch.topk(cost[:, gt], k=int(dynamic_ks[gt]), largest=False).indices
            matching[:, gt] = False
            matching[chosen, gt] = True

        conflicted = matching.sum(dim=1) > 1
        if conflicted.any():
            cheapest = torch.min(cost[conflicted], dim=1).indices
            matching[conflicted] = False
            matching[torch.nonzero(conflicted, as_tuple=False).flatten(), cheapest] = True
        return torch.where(matching.any(dim=1), matching.float().argmax(dim=1), -1)

    @torch.no_grad()
    def assign(self, cls_logits: Tensor, points: Tensor, decoded_boxes: Tensor, gt_boxes: Tensor,
               gt_labels: Tensor) -> DSLAssignResult:
        """
        Args:
            cls_logits: `Tensor[N, C]` class logits of the points (before sigmoid).
            points: `Tensor[N, 2]` (x, y) input pixels, the prior of each point.
            decoded_boxes: `Tensor[N, 4]` xyxy input pixels, the predicted box of each point.
            gt_boxes: `Tensor[G, 4]` xyxy input pixels.
            gt_labels: `Tensor[G]` class indices.
        Returns:
            The assignment; all negative without GT, points or candidates.
        """
        num_points, device = points.shape[0], points.device
        gt_indices = torch.full((num_points,), -1, dtype=torch.long, device=device)
        labels = torch.full_like(gt_indices, -1)
        soft = torch.zeros(num_points, dtype=decoded_boxes.dtype, device=device)
        if num_points == 0 or gt_boxes.shape[0] == 0:
            return DSLAssignResult(gt_indices, labels, soft)
        gt_boxes = gt_boxes.to(decoded_boxes.dtype)
        valid = points_inside_boxes(points, gt_boxes, eps=0.0).any(dim=1)
        valid_index = torch.nonzero(valid, as_tuple=False).flatten()
        if valid_index.numel() == 0:
            return DSLAssignResult(gt_indices, labels, soft)

        ious = pairwise_box_iou(decoded_boxes[valid_index], gt_boxes)
        cost = self.cost_matrix(cls_logits[valid_index], ious, gt_labels)
        matched = self.dynamic_k_matching(cost, ious)
        positive = matched >= 0
        rows, gts = torch.nonzero(positive, as_tuple=False).flatten(), matched[positive]
        gt_indices[valid_index[rows]] = gts
        labels[valid_index[rows]] = gt_labels.long()[gts]
        soft[valid_index[rows]] = ious[rows, gts]
        return DSLAssignResult(gt_indices, labels, soft)
