"""GFL training objective: ATSS assignment, then QFL + DFL + GIoU, normalised as in GFL/NanoDet."""
from __future__ import annotations

from typing import Dict, List, Sequence, Tuple

import torch
import torch.distributed as dist
from torch import Tensor, nn

from nanodet_ghost.model.assigner.atss import ATSSAssigner
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


def _mean_over_ranks(value: Tensor) -> Tensor:
    """Average a normaliser over DDP ranks so every rank divides by the same number."""
    if dist.is_available() and dist.is_initialized():
        value = value.clone()
        dist.all_reduce(value)
        value = value / dist.get_world_size()
    return value


class GFLLoss(nn.Module):
    """QFL (weight `qfl_weight`) + DFL (`dfl_weight`) + GIoU (`giou_weight`).

    QFL is divided by the number of positives (at least 1). DFL and GIoU are weighted per
    positive by its predicted quality (max class score, detached) and divided by the sum of those
    weights, as in GFL. Anchors used for assignment are squares of `octave_base_scale * stride`
    centred on each point.
    """

    def __init__(
        self,
        num_classes: int,
        strides: Sequence[int] = (8, 16, 32),
        reg_max: int = 7,
        qfl_weight: float = 1.0,
        qfl_beta: float = 2.0,
        dfl_weight: float = 0.25,
        giou_weight: float = 2.0,
        atss_topk: int = 9,
        octave_base_scale: float = 5.0,
    ) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.strides = list(strides)
        self.reg_max = reg_max
        self.qfl_weight = qfl_weight
        self.qfl_beta = qfl_beta
        self.dfl_weight = dfl_weight
        self.giou_weight = giou_weight
        self.octave_base_scale = octave_base_scale
        self.assigner = ATSSAssigner(atss_topk)

    def forward(self, raw: Tensor, targets: List[Dict[str, Tensor]], input_hw: Tuple[int, int]) -> Dict[str, Tensor]:
        """
        Args:
            raw: `Tensor[B, N, C + 4 * (reg_max + 1)]` head output.
            targets: per image, `boxes: [G, 4]` xyxy input pixels, `labels: [G]` long and
                optionally `ignore: [M, 4]` xyxy ignore regions.
            input_hw: (H, W) of the network input.
        Returns:
            `loss` (total), `loss_qfl`, `loss_dfl`, `loss_giou` and `num_pos` (not differentiable).
        """
        batch, num_points, _ = raw.shape
        device = raw.device
        points, point_strides = grid_points(input_hw, self.strides, device)
        if points.shape[0] != num_points:
            raise ValueError(
                f"head output has {num_points} points but input {input_hw} with strides {self.strides} "
                f"gives {points.shape[0]}"
            )
        half = point_strides[:, None] * self.octave_base_scale / 2
        anchors = torch.cat((points - half, points + half), dim=1)
        level_counts = [h * w for h, w in featmap_sizes(input_hw, self.strides)]

        raw = raw.float()  # losses in fp32 under mixed precision
        cls_logits = raw[..., : self.num_classes]
        reg_logits = raw[..., self.num_classes :]

        cls_targets = torch.zeros_like(cls_logits)
        cls_weights = torch.ones(batch, num_points, device=device)
        pos_batch, pos_point, pos_gt_boxes, pos_labels = [], [], [], []
        for b, target in enumerate(targets):
            gt_boxes = target["boxes"].to(device=device, dtype=torch.float32).reshape(-1, 4)
            gt_labels = target["labels"].to(device=device, dtype=torch.long).reshape(-1)
            ignore = target.get("ignore")
            ignore = None if ignore is None else ignore.to(device=device, dtype=torch.float32).reshape(-1, 4)
            result = self.assigner.assign(anchors, level_counts, gt_boxes, gt_labels, ignore)
            cls_weights[b, result.ignored] = 0.0
            pos = torch.nonzero(result.positive, as_tuple=False).squeeze(1)
            pos_batch.append(torch.full_like(pos, b))
            pos_point.append(pos)
            pos_gt_boxes.append(gt_boxes[result.gt_indices[pos]])
            pos_labels.append(result.labels[pos])
        pos_batch_t, pos_point_t = torch.cat(pos_batch), torch.cat(pos_point)
        pos_boxes_t, pos_labels_t = torch.cat(pos_gt_boxes), torch.cat(pos_labels)
        num_pos = pos_point_t.numel()

        zero = raw.sum() * 0.0  # keeps the graph connected when there are no positives
        if num_pos > 0:
            pos_reg = reg_logits[pos_batch_t, pos_point_t]  # [P, 4 * (reg_max + 1)]
            pos_points = points[pos_point_t]
            pos_strides = point_strides[pos_point_t][:, None]
            pred_boxes = distance_to_box(pos_points, distribution_to_distance(pos_reg, self.reg_max) * pos_strides)
            quality = aligned_box_iou(pred_boxes.detach(), pos_boxes_t).clamp(min=1e-6)
            cls_targets[pos_batch_t, pos_point_t, pos_labels_t] = quality

            weight = cls_logits[pos_batch_t, pos_point_t].detach().sigmoid().max(dim=1).values
            weight_sum = _mean_over_ranks(weight.sum()).clamp(min=1e-6)
            loss_giou = (giou_loss(pred_boxes, pos_boxes_t) * weight).sum() / weight_sum
            dist_target = box_to_distance(pos_points / pos_strides, pos_boxes_t / pos_strides, self.reg_max - 0.01)
            dfl = distribution_focal_loss(pos_reg.reshape(-1, self.reg_max + 1), dist_target.reshape(-1))
            loss_dfl = (dfl * weight.repeat_interleave(4)).sum() / (4.0 * weight_sum)
        else:
            loss_giou = zero
            loss_dfl = zero

        qfl = quality_focal_loss(cls_logits, cls_targets, self.qfl_beta).sum(dim=2) * cls_weights
        pos_normaliser = _mean_over_ranks(torch.tensor(float(num_pos), device=device)).clamp(min=1.0)
        loss_qfl = qfl.sum() / pos_normaliser

        loss_qfl = loss_qfl * self.qfl_weight
        loss_dfl = loss_dfl * self.dfl_weight
        loss_giou = loss_giou * self.giou_weight
        return {
            "loss": loss_qfl + loss_dfl + loss_giou,
            "loss_qfl": loss_qfl,
            "loss_dfl": loss_dfl,
            "loss_giou": loss_giou,
            "num_pos": torch.tensor(float(num_pos), device=device),
        }
