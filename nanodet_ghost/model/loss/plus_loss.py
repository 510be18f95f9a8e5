"""NanoDet-Plus training objective: dynamic soft-label assignment, then QFL + DFL + GIoU.

With an auxiliary head (`AuxiliaryGuidance`), the assignment comes from the auxiliary head's
detached predictions and both heads are trained on it, each with its own QFL, DFL and GIoU; the
total is their sum. Without one, the head assigns from its own predictions.

Normalisation is NanoDet's (`NanoDetPlusHead._get_loss_from_assign`): QFL is divided by the mean
positive count over DDP ranks (at least 1); GIoU and DFL are weighted per positive by its max
predicted class score and divided by the mean of those weight sums (at least 1.0; 4x that for
DFL's four sides). Unlike NanoDet, which all-reduces a weight sum only on ranks that have
positives, the three normalisers `[num_pos, main weight sum, aux weight sum]` go through ONE
all-reduce issued on every rank at every call (`gfl_loss.reduce_normalisers`). (NanoDet's
`reduce_mean` all-reduces a temporary and returns its input, so NanoDet in fact normalises by this
rank's figures; single-process numbers are the same either way.)

Ignore regions: NanoDet-Plus treats them as background (`ignore_iof_thr = -1`). Here, as in
`GFLLoss`, a negative whose point lies inside an ignore region gets no classification loss; the
assignment itself does not see them, as in NanoDet.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from nanodet_ghost.model.assigner.atss import points_inside_boxes
from nanodet_ghost.model.assigner.dsl import DynamicSoftLabelAssigner
from nanodet_ghost.model.head.decode import box_to_distance, distance_to_box, grid_points
from nanodet_ghost.model.loss.gfl_loss import reduce_normalisers
from nanodet_ghost.model.loss.gfocal import distribution_focal_loss, giou_loss, quality_focal_loss


def _at_least_fp32(x: Tensor) -> Tensor:
    """fp32 for half-precision outputs (losses in fp32 under mixed precision); float64 stays."""
    return x if x.dtype == torch.float64 else x.float()


@dataclass
class SoftTargets:
    """The assignment of a batch, flattened over its images (P positives).

    Attributes:
        batch_index: `Tensor[P]` long, image of each positive.
        point_index: `Tensor[P]` long, its point.
        gt_boxes: `Tensor[P, 4]` xyxy input pixels, its ground truth.
        cls_targets: `Tensor[B, N, C]`, the soft label (IoU) at a positive's class, 0 elsewhere.
        cls_weights: `Tensor[B, N]`, 0 for negatives inside an ignore region, 1 otherwise.
    """

    batch_index: Tensor
    point_index: Tensor
    gt_boxes: Tensor
    cls_targets: Tensor
    cls_weights: Tensor

    def __len__(self) -> int:
        return int(self.point_index.numel())


@dataclass
class HeadSums:
    """One head's un-normalised losses: QFL, score-weighted GIoU and DFL sums, and the weight sum
    (detached)."""

    qfl: Tensor
    giou: Tensor
    dfl: Tensor
    weight_sum: Tensor


class NanoDetPlusLoss(nn.Module):
    """QFL (`qfl_weight`) + DFL (`dfl_weight`) + GIoU (`giou_weight`) on DSL assignments.

    Args:
        num_classes: C.
        strides: input-pixel stride of each head level.
        reg_max: the distributions have `reg_max + 1` bins.
        dsl_topk, dsl_iou_factor: `DynamicSoftLabelAssigner`'s `topk` and `iou_factor`.
        center_offset: points sit at `(cell + center_offset) * stride`; NanoDet-Plus uses 0.
    """

    def __init__(
        self,
        num_classes: int,
        strides: Sequence[int] = (8, 16, 32, 64),
        reg_max: int = 7,
        qfl_weight: float = 1.0,
        qfl_beta: float = 2.0,
        dfl_weight: float = 0.25,
        giou_weight: float = 2.0,
        dsl_topk: int = 13,
        dsl_iou_factor: float = 3.0,
        center_offset: float = 0.0,
    ) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.strides = list(strides)
        self.reg_max = reg_max
        self.qfl_weight = qfl_weight
        self.qfl_beta = qfl_beta
        self.dfl_weight = dfl_weight
        self.giou_weight = giou_weight
        self.center_offset = center_offset
        self.assigner = DynamicSoftLabelAssigner(dsl_topk, dsl_iou_factor)

    def decode(self, reg_logits: Tensor, points: Tensor, point_strides: Tensor) -> Tensor:
        """`reg_logits: [B, N, 4 * (reg_max + 1)]` -> boxes `Tensor[B, N, 4]` xyxy input pixels.

        The expected bin is a matrix product, as NanoDet's `Integral`: a multiply-and-sum rounds
        differently, and a last-bit change of a box can change a near-tied assignment.
        """
        probs = F.softmax(reg_logits.reshape(*reg_logits.shape[:-1], 4, self.reg_max + 1), dim=-1)
        bins = torch.linspace(0, self.reg_max, self.reg_max + 1, device=reg_logits.device, dtype=probs.dtype)
        distances = F.linear(probs, bins).reshape(*reg_logits.shape[:-1], 4)
        return distance_to_box(points, distances * point_strides[:, None])

    def assign(self, cls_logits: Tensor, boxes: Tensor, points: Tensor,
               targets: List[Dict[str, Tensor]]) -> SoftTargets:
        """DSL assignment of every image from detached predictions.

        Args:
            cls_logits: `Tensor[B, N, C]`; boxes: `Tensor[B, N, 4]` decoded, of the assigning head.
            points: `Tensor[N, 2]` input pixels.
            targets: per image `boxes: [G, 4]`, `labels: [G]`, optional `ignore: [M, 4]`.
        """
        cls_logits, boxes = cls_logits.detach(), boxes.detach()
        device = cls_logits.device
        cls_targets = torch.zeros_like(cls_logits)
        cls_weights = cls_logits.new_ones(cls_logits.shape[:2])
        none = torch.zeros(0, dtype=torch.long, device=device)
        # Seeded with empty tensors so that an empty batch (B = 0) gives no positives.
        batch_index, point_index, gt_boxes = [none], [none], [boxes.new_zeros(0, 4)]
        for b, target in enumerate(targets):
            gt = target["boxes"].to(device=device, dtype=boxes.dtype).reshape(-1, 4)
            labels = target["labels"].to(device=device, dtype=torch.long).reshape(-1)
            result = self.assigner.assign(cls_logits[b], points, boxes[b], gt, labels)
            pos = torch.nonzero(result.positive, as_tuple=False).squeeze(1)
            cls_targets[b, pos, result.labels[pos]] = result.ious[pos]
            ignore = target.get("ignore")
            if ignore is not None and ignore.numel() > 0:
                ignore = ignore.to(device=device, dtype=torch.float32).reshape(-1, 4)
                muted = points_inside_boxes(points, ignore).any(dim=1) & ~result.positive
                cls_weights[b, muted] = 0.0
            batch_index.append(torch.full_like(pos, b))
            point_index.append(pos)
            gt_boxes.append(gt[result.gt_indices[pos]])
        return SoftTargets(torch.cat(batch_index), torch.cat(point_index), torch.cat(gt_boxes),
                           cls_targets, cls_weights)

    def head_sums(self, cls_logits: Tensor, reg_logits: Tensor, boxes: Tensor, points: Tensor,
                  point_strides: Tensor, targets: SoftTargets) -> HeadSums:
        """One head's losses on `targets`, summed but not normalised.

        Args:
            cls_logits: `Tensor[B, N, C]`; reg_logits: `Tensor[B, N, 4 * (reg_max + 1)]`;
            boxes: `Tensor[B, N, 4]` decoded from `reg_logits`.
        """
        # Over [B * N, C] as NanoDet: laid out as [B, N, C], some elements take another (vector or
        # scalar) exp kernel in the backward pass, whose last bit can differ.
        qfl = quality_focal_loss(cls_logits.reshape(-1, self.num_classes),
                                 targets.cls_targets.reshape(-1, self.num_classes), self.qfl_beta).sum(dim=1)
        qfl = (qfl * targets.cls_weights.reshape(-1)).sum()
        if len(targets) == 0:
            zero = reg_logits.sum() * 0.0  # keeps the graph connected
            return HeadSums(qfl, zero, zero, zero.detach())
        b, p = targets.batch_index, targets.point_index
        gt = targets.gt_boxes
        weight = cls_logits[b, p].detach().sigmoid().max(dim=1).values
        giou = (giou_loss(boxes[b, p], gt) * weight).sum()
        # In bins, like NanoDet's targets: distances in pixels over the stride, below the last bin.
        pos_strides = point_strides[p][:, None]
        dist_target = (box_to_distance(points[p], gt, float("inf")) / pos_strides).clamp(0, self.reg_max - 0.1)
        dfl = distribution_focal_loss(reg_logits[b, p].reshape(-1, self.reg_max + 1), dist_target.reshape(-1))
        dfl = (dfl * weight.repeat_interleave(4)).sum()
        return HeadSums(qfl, giou, dfl, weight.sum())

    def normalise(self, sums: HeadSums, num_pos: Tensor, weight_sum: Tensor, prefix: str = "") -> Dict[str, Tensor]:
        """Divide `sums` by the rank-averaged normalisers (NanoDet's floors) and weight them."""
        bbox_avg = weight_sum.clamp(min=1.0)
        return {
            f"{prefix}loss_qfl": sums.qfl / num_pos.clamp(min=1.0) * self.qfl_weight,
            f"{prefix}loss_dfl": sums.dfl / (4.0 * bbox_avg) * self.dfl_weight,
            f"{prefix}loss_giou": sums.giou / bbox_avg * self.giou_weight,
        }

    def forward(self, raw: Tensor, targets: List[Dict[str, Tensor]], input_hw: Tuple[int, int],
                aux_raw: Optional[Tensor] = None) -> Dict[str, Tensor]:
        """
        Args:
            raw: `Tensor[B, N, C + 4 * (reg_max + 1)]` head output.
            targets: per image, `boxes: [G, 4]` xyxy input pixels, `labels: [G]` long and
                optionally `ignore: [M, 4]` xyxy ignore regions.
            input_hw: (H, W) of the network input.
            aux_raw: the auxiliary head's output, same shape as `raw`, or None.
        Returns:
            `loss` (total), `loss_qfl`, `loss_dfl`, `loss_giou`, `num_pos` (this rank's count, not
            differentiable) and, with `aux_raw`, `aux_loss_qfl`, `aux_loss_dfl`, `aux_loss_giou`
            (included in `loss`).
        """
        device = raw.device
        points, point_strides = grid_points(input_hw, self.strides, device, offset=self.center_offset)
        if raw.shape[1] != points.shape[0]:
            raise ValueError(
                f"head output has {raw.shape[1]} points but input {input_hw} with strides {self.strides} "
                f"gives {points.shape[0]}"
            )
        if aux_raw is not None and aux_raw.shape != raw.shape:
            raise ValueError(f"auxiliary head output {tuple(aux_raw.shape)} differs from the head's {tuple(raw.shape)}")
        raw = _at_least_fp32(raw)
        cls_logits, reg_logits = raw[..., : self.num_classes], raw[..., self.num_classes:]
        boxes = self.decode(reg_logits, points, point_strides)
        heads = [(cls_logits, reg_logits, boxes)]
        if aux_raw is not None:
            aux_raw = _at_least_fp32(aux_raw)
            aux_cls, aux_reg = aux_raw[..., : self.num_classes], aux_raw[..., self.num_classes:]
            heads.append((aux_cls, aux_reg, self.decode(aux_reg, points, point_strides)))

        soft_targets = self.assign(heads[-1][0], heads[-1][2], points, targets)
        sums = [self.head_sums(*head, points, point_strides, soft_targets) for head in heads]
        num_pos = torch.tensor(float(len(soft_targets)), device=device)
        aux_weight_sum = sums[1].weight_sum if len(sums) > 1 else raw.new_zeros(())
        mean_num_pos, mean_weight_sum, mean_aux_weight_sum = reduce_normalisers(
            torch.stack((num_pos.to(raw.dtype), sums[0].weight_sum, aux_weight_sum)))

        losses = self.normalise(sums[0], mean_num_pos, mean_weight_sum)
        if len(sums) > 1:
            losses.update(self.normalise(sums[1], mean_num_pos, mean_aux_weight_sum, prefix="aux_"))
        return {"loss": sum(losses.values()), **losses, "num_pos": num_pos}
