"""GFL training objective: ATSS assignment, then QFL + DFL + GIoU, normalised as in GFL/NanoDet.

`GFLLoss.forward` runs in three steps, each usable alone:
1. `assign`: ATSS per image -> the positives of the batch (`PositiveSamples`) and which negatives
   are muted by ignore regions.
2. `box_terms`: decode the positives' distributions, their IoU quality, and the un-normalised
   GIoU and DFL sums weighted by the predicted class score.
3. `reduce_normalisers`: the positive count and the weight sum averaged over DDP ranks, in one
   all-reduce that every rank issues on every call, whatever its batch holds (NanoDet-Plus's loss,
   `plus_loss.py`, reduces its three normalisers with it too).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

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


def reduce_normalisers(local: Tensor) -> Tensor:
    """Mean over DDP ranks of this rank's normalisers (`Tensor[K]` float, e.g. `[num_pos, weight_sum]`).

    Exactly one all-reduce per call. The loss calls it on every rank at every step, also when a
    rank has no positives, so the ranks never disagree on the number or order of collectives
    (a rank that skipped it would pair its next all-reduce with another rank's, or hang).
    Without a process group it returns `local` unchanged.
    """
    if dist.is_available() and dist.is_initialized():
        local = local.clone()
        dist.all_reduce(local)
        local = local / dist.get_world_size()
    return local


@dataclass
class PositiveSamples:
    """The positives of a batch, flattened over its images (P in total).

    Attributes:
        batch_index: `Tensor[P]` long, image of each positive.
        point_index: `Tensor[P]` long, its point (row of the head output).
        gt_boxes: `Tensor[P, 4]` xyxy input pixels, the assigned ground truth.
        labels: `Tensor[P]` long, the assigned class.
    """

    batch_index: Tensor
    point_index: Tensor
    gt_boxes: Tensor
    labels: Tensor

    def __len__(self) -> int:
        return int(self.point_index.numel())


@dataclass
class BoxTerms:
    """Un-normalised box losses of the positives.

    Attributes:
        quality: `Tensor[P]` IoU of the decoded box with its GT (detached): the QFL target.
        giou_sum: scalar, sum of the score-weighted GIoU losses.
        dfl_sum: scalar, sum of the score-weighted DFL losses over the 4 sides.
        weight_sum: scalar (detached), sum of the weights (max predicted class score).
    """

    quality: Tensor
    giou_sum: Tensor
    dfl_sum: Tensor
    weight_sum: Tensor


class GFLLoss(nn.Module):
    """QFL (weight `qfl_weight`) + DFL (`dfl_weight`) + GIoU (`giou_weight`).

    QFL is divided by the number of positives (at least 1). DFL and GIoU are weighted per
    positive by its predicted quality (max class score, detached) and divided by the sum of those
    weights, as in GFL. Both normalisers are averaged over DDP ranks. Anchors used for assignment
    are squares of `octave_base_scale * stride` centred on each point, and the points sit at
    `(cell + center_offset) * stride` (0.5: cell centres; the post-processor reads the same
    `center_offset` from whichever loss the model trains with).
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
        center_offset: float = 0.5,
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
        self.center_offset = center_offset
        self.assigner = ATSSAssigner(atss_topk)

    def anchors(self, points: Tensor, point_strides: Tensor) -> Tensor:
        """`Tensor[N, 4]` xyxy: the square of side `octave_base_scale * stride` at each point."""
        half = point_strides[:, None] * self.octave_base_scale / 2
        return torch.cat((points - half, points + half), dim=1)

    def assign(self, anchors: Tensor, level_counts: Sequence[int],
               targets: List[Dict[str, Tensor]]) -> Tuple[PositiveSamples, Tensor]:
        """ATSS per image.

        Args:
            anchors: `Tensor[N, 4]` xyxy input pixels.
            level_counts: points per stride level, in order.
            targets: per image `boxes: [G, 4]`, `labels: [G]`, optional `ignore: [M, 4]`.
        Returns:
            The positives, and `cls_weights: Tensor[B, N]`: 0 for negatives in ignore regions.
        """
        device = anchors.device
        cls_weights = torch.ones(len(targets), anchors.shape[0], device=device)
        none = torch.zeros(0, dtype=torch.long, device=device)
        # Seeded with empty tensors so that an empty batch (B = 0) gives no positives.
        batch_index, point_index, gt_boxes, labels = [none], [none], [anchors.new_zeros(0, 4)], [none]
        for b, target in enumerate(targets):
            boxes = target["boxes"].to(device=device, dtype=torch.float32).reshape(-1, 4)
            gt_labels = target["labels"].to(device=device, dtype=torch.long).reshape(-1)
            ignore = target.get("ignore")
            ignore = None if ignore is None else ignore.to(device=device, dtype=torch.float32).reshape(-1, 4)
            result = self.assigner.assign(anchors, level_counts, boxes, gt_labels, ignore)
            cls_weights[b, result.ignored] = 0.0
            pos = torch.nonzero(result.positive, as_tuple=False).squeeze(1)
            batch_index.append(torch.full_like(pos, b))
            point_index.append(pos)
            gt_boxes.append(boxes[result.gt_indices[pos]])
            labels.append(result.labels[pos])
        positives = PositiveSamples(torch.cat(batch_index), torch.cat(point_index),
                                    torch.cat(gt_boxes), torch.cat(labels))
        return positives, cls_weights

    def box_terms(self, cls_logits: Tensor, reg_logits: Tensor, points: Tensor, point_strides: Tensor,
                  positives: PositiveSamples) -> BoxTerms:
        """GIoU and DFL of the positives, summed with their score weights (not normalised).

        Args:
            cls_logits: `Tensor[B, N, C]`; reg_logits: `Tensor[B, N, 4 * (reg_max + 1)]`.
            points: `Tensor[N, 2]` input pixels; point_strides: `Tensor[N]`.
        """
        if len(positives) == 0:
            zero = reg_logits.sum() * 0.0  # keeps the graph connected
            return BoxTerms(cls_logits.new_zeros(0), zero, zero, zero.detach())
        b, p = positives.batch_index, positives.point_index
        gt = positives.gt_boxes
        pos_reg = reg_logits[b, p]  # [P, 4 * (reg_max + 1)]
        pos_points = points[p]
        pos_strides = point_strides[p][:, None]
        pred_boxes = distance_to_box(pos_points, distribution_to_distance(pos_reg, self.reg_max) * pos_strides)
        quality = aligned_box_iou(pred_boxes.detach(), gt).clamp(min=1e-6)
        weight = cls_logits[b, p].detach().sigmoid().max(dim=1).values
        giou_sum = (giou_loss(pred_boxes, gt) * weight).sum()
        dist_target = box_to_distance(pos_points / pos_strides, gt / pos_strides, self.reg_max - 0.01)
        dfl = distribution_focal_loss(pos_reg.reshape(-1, self.reg_max + 1), dist_target.reshape(-1))
        dfl_sum = (dfl * weight.repeat_interleave(4)).sum()
        return BoxTerms(quality, giou_sum, dfl_sum, weight.sum())

    def forward(self, raw: Tensor, targets: List[Dict[str, Tensor]], input_hw: Tuple[int, int],
                aux_raw: Optional[Tensor] = None) -> Dict[str, Tensor]:
        """
        Args:
            raw: `Tensor[B, N, C + 4 * (reg_max + 1)]` head output.
            targets: per image, `boxes: [G, 4]` xyxy input pixels, `labels: [G]` long and
                optionally `ignore: [M, 4]` xyxy ignore regions.
            input_hw: (H, W) of the network input.
            aux_raw: must be None: only `NanoDetPlusLoss` takes an auxiliary head's output (the
                argument exists so that `Detector` calls either loss the same way).
        Returns:
            `loss` (total), `loss_qfl`, `loss_dfl`, `loss_giou` and `num_pos` (this rank's count,
            not differentiable).
        """
        if aux_raw is not None:
            raise ValueError("GFLLoss got an auxiliary head output: an auxiliary head needs the dsl assigner "
                             "(NanoDetPlusLoss), not ATSS")
        num_points = raw.shape[1]
        device = raw.device
        points, point_strides = grid_points(input_hw, self.strides, device, offset=self.center_offset)
        if points.shape[0] != num_points:
            raise ValueError(
                f"head output has {num_points} points but input {input_hw} with strides {self.strides} "
                f"gives {points.shape[0]}"
            )
        level_counts = [h * w for h, w in featmap_sizes(input_hw, self.strides)]
        raw = raw.float()  # losses in fp32 under mixed precision
        cls_logits = raw[..., : self.num_classes]
        reg_logits = raw[..., self.num_classes:]

        positives, cls_weights = self.assign(self.anchors(points, point_strides), level_counts, targets)
        boxes = self.box_terms(cls_logits, reg_logits, points, point_strides, positives)
        num_pos = torch.tensor(float(len(positives)), device=device)
        mean_num_pos, mean_weight_sum = reduce_normalisers(torch.stack((num_pos, boxes.weight_sum.float())))

        cls_targets = torch.zeros_like(cls_logits)
        cls_targets[positives.batch_index, positives.point_index, positives.labels] = boxes.quality
        qfl = quality_focal_loss(cls_logits, cls_targets, self.qfl_beta).sum(dim=2) * cls_weights
        weight_sum = mean_weight_sum.clamp(min=1e-6)
        loss_qfl = qfl.sum() / mean_num_pos.clamp(min=1.0) * self.qfl_weight
        loss_dfl = boxes.dfl_sum / (4.0 * weight_sum) * self.dfl_weight
        loss_giou = boxes.giou_sum / weight_sum * self.giou_weight
        return {
            "loss": loss_qfl + loss_dfl + loss_giou,
            "loss_qfl": loss_qfl,
            "loss_dfl": loss_dfl,
            "loss_giou": loss_giou,
            "num_pos": num_pos,
        }
