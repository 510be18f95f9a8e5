"""An independent, image-by-image statement of the GFL objective, as `GFLLoss` computed it before
its forward was split into assignment and box terms (commit 7a266b0).

`test_gfl_loss_refactor.py` checks that `GFLLoss` gives the same numbers and gradients. Single
process only: the normalisers are this batch's own.
"""
from __future__ import annotations

from typing import Dict, List, Tuple

import torch
from torch import Tensor

import nanodet_ghost.model.head.decode as decode
import nanodet_ghost.model.loss.gfocal as gfocal


def _image_terms(loss_fn, cls_logits: Tensor, reg_logits: Tensor, target: Dict[str, Tensor],
                 points: Tensor, strides: Tensor, anchors: Tensor, level_counts: List[int]):
    """(sum of weighted QFL over all points, GIoU sum, DFL sum, weight sum, positives) of one image."""
    boxes = target["boxes"].float().reshape(-1, 4)
    labels = target["labels"].long().reshape(-1)
    ignore = target.get("ignore")
    result = loss_fn.assigner.assign(anchors, level_counts, boxes, labels,
                                     None if ignore is None else ignore.float().reshape(-1, 4))
    positive = result.gt_indices >= 0
    qfl_target = torch.zeros_like(cls_logits)
    giou_sum = dfl_sum = weight_sum = cls_logits.sum() * 0.0
    if positive.any():
        gt = boxes[result.gt_indices[positive]]
        reg = reg_logits[positive]
        stride = strides[positive][:, None]
        distances = decode.distribution_to_distance(reg, loss_fn.reg_max) * stride
        predicted = decode.distance_to_box(points[positive], distances)
        iou = gfocal.aligned_box_iou(predicted.detach(), gt).clamp(min=1e-6)
        qfl_target[positive.nonzero().squeeze(1), result.labels[positive]] = iou
        score = cls_logits[positive].detach().sigmoid().max(dim=1).values
        giou_sum = (gfocal.giou_loss(predicted, gt) * score).sum()
        bins = decode.box_to_distance(points[positive] / stride, gt / stride, loss_fn.reg_max - 0.01)
        side_losses = gfocal.distribution_focal_loss(reg.reshape(-1, loss_fn.reg_max + 1), bins.reshape(-1))
        dfl_sum = (side_losses.reshape(-1, 4).sum(dim=1) * score).sum()
        weight_sum = score.sum()
    mute = (~result.ignored).float()[:, None]
    qfl = (gfocal.quality_focal_loss(cls_logits, qfl_target, loss_fn.qfl_beta) * mute).sum()
    return qfl, giou_sum, dfl_sum, weight_sum, int(positive.sum())


def reference_gfl_loss(loss_fn, raw: Tensor, targets: List[Dict[str, Tensor]],
                       input_hw: Tuple[int, int]) -> Dict[str, Tensor]:
    """QFL / max(P, 1), GIoU / W and DFL / 4W summed over images, with P positives and W the sum of
    their detached max class scores, each term times its weight from `loss_fn`."""
    points, strides = decode.grid_points(input_hw, loss_fn.strides, raw.device)
    half = strides[:, None] * loss_fn.octave_base_scale / 2
    anchors = torch.cat((points - half, points + half), dim=1)
    level_counts = [h * w for h, w in decode.featmap_sizes(input_hw, loss_fn.strides)]
    raw = raw.float()
    per_image = [_image_terms(loss_fn, raw[b, :, :loss_fn.num_classes], raw[b, :, loss_fn.num_classes:],
                              target, points, strides, anchors, level_counts)
                 for b, target in enumerate(targets)]
    qfl, giou, dfl, weight = (torch.stack([terms[i] for terms in per_image]).sum() for i in range(4))
    num_pos = sum(terms[4] for terms in per_image)
    weight = weight.clamp(min=1e-6)
    loss_qfl = qfl / max(num_pos, 1) * loss_fn.qfl_weight
    loss_giou = giou / weight * loss_fn.giou_weight
    loss_dfl = dfl / (4.0 * weight) * loss_fn.dfl_weight
    return {"loss": loss_qfl + loss_dfl + loss_giou, "loss_qfl": loss_qfl, "loss_dfl": loss_dfl,
            "loss_giou": loss_giou, "num_pos": torch.tensor(float(num_pos), device=raw.device)}
