"""The GFL objective as it was before `GFLLoss.forward` was split into assignment and box terms.

Frozen on purpose: `test_gfl_loss_refactor.py` checks that the refactored loss gives the same
numbers and gradients. Single process only (it has the DDP desynchronisation the split fixed).
"""
from __future__ import annotations

from typing import Dict, List, Tuple

import torch
from torch import Tensor

from nanodet_ghost.model.head.decode import (
    box_to_distance,
    distance_to_box,
    distribution_to_distance,
    featmap_sizes,
    grid_points,
)
from nanodet_ghost.model.loss.gfocal import (
    aligned_box_iou,
    distribution_focal_loss,
    giou_loss,
    quality_focal_loss,
)


def reference_gfl_loss(loss_fn, raw: Tensor, targets: List[Dict[str, Tensor]],
                       input_hw: Tuple[int, int]) -> Dict[str, Tensor]:
    """`GFLLoss.forward` as of commit 7a266b0, reading the settings from `loss_fn`."""
    batch, num_points, _ = raw.shape
    device = raw.device
    points, point_strides = grid_points(input_hw, loss_fn.strides, device)
    half = point_strides[:, None] * loss_fn.octave_base_scale / 2
    anchors = torch.cat((points - half, points + half), dim=1)
    level_counts = [h * w for h, w in featmap_sizes(input_hw, loss_fn.strides)]
    raw = raw.float()
    cls_logits = raw[..., : loss_fn.num_classes]
    reg_logits = raw[..., loss_fn.num_classes:]
    cls_targets = torch.zeros_like(cls_logits)
    cls_weights = torch.ones(batch, num_points, device=device)
    pos_batch, pos_point, pos_gt_boxes, pos_labels = [], [], [], []
    for b, target in enumerate(targets):
        gt_boxes = target["boxes"].to(device=device, dtype=torch.float32).reshape(-1, 4)
        gt_labels = target["labels"].to(device=device, dtype=torch.long).reshape(-1)
        ignore = target.get("ignore")
        ignore = None if ignore is None else ignore.to(device=device, dtype=torch.float32).reshape(-1, 4)
        result = loss_fn.assigner.assign(anchors, level_counts, gt_boxes, gt_labels, ignore)
        cls_weights[b, result.ignored] = 0.0
        pos = torch.nonzero(result.positive, as_tuple=False).squeeze(1)
        pos_batch.append(torch.full_like(pos, b))
        pos_point.append(pos)
        pos_gt_boxes.append(gt_boxes[result.gt_indices[pos]])
        pos_labels.append(result.labels[pos])
    pos_batch_t, pos_point_t = torch.cat(pos_batch), torch.cat(pos_point)
    pos_boxes_t, pos_labels_t = torch.cat(pos_gt_boxes), torch.cat(pos_labels)
    num_pos = pos_point_t.numel()
    zero = raw.sum() * 0.0
    if num_pos > 0:
        pos_reg = reg_logits[pos_batch_t, pos_point_t]
        pos_points = points[pos_point_t]
        pos_strides = point_strides[pos_point_t][:, None]
        pred_boxes = distance_to_box(pos_points, distribution_to_distance(pos_reg, loss_fn.reg_max) * pos_strides)
        quality = aligned_box_iou(pred_boxes.detach(), pos_boxes_t).clamp(min=1e-6)
        cls_targets[pos_batch_t, pos_point_t, pos_labels_t] = quality
        weight = cls_logits[pos_batch_t, pos_point_t].detach().sigmoid().max(dim=1).values
        weight_sum = weight.sum().clamp(min=1e-6)
        loss_giou = (giou_loss(pred_boxes, pos_boxes_t) * weight).sum() / weight_sum
        dist_target = box_to_distance(pos_points / pos_strides, pos_boxes_t / pos_strides, loss_fn.reg_max - 0.01)
        dfl = distribution_focal_loss(pos_reg.reshape(-1, loss_fn.reg_max + 1), dist_target.reshape(-1))
        loss_dfl = (dfl * weight.repeat_interleave(4)).sum() / (4.0 * weight_sum)
    else:
        loss_giou = zero
        loss_dfl = zero
    qfl = quality_focal_loss(cls_logits, cls_targets, loss_fn.qfl_beta).sum(dim=2) * cls_weights
    loss_qfl = qfl.sum() / torch.tensor(float(num_pos), device=device).clamp(min=1.0)
    loss_qfl = loss_qfl * loss_fn.qfl_weight
    loss_dfl = loss_dfl * loss_fn.dfl_weight
    loss_giou = loss_giou * loss_fn.giou_weight
    return {"loss": loss_qfl + loss_dfl + loss_giou, "loss_qfl": loss_qfl, "loss_dfl": loss_dfl,
            "loss_giou": loss_giou, "num_pos": torch.tensor(float(num_pos), device=device)}
