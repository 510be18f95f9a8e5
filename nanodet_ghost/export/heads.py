"""What an exported graph ends with: `raw`, `boxes` or `nms` (`tools/export.py --head`).

| head | outputs | left to the caller |
|---|---|---|
| raw | `output [B, N, C + 4(R+1)]`: sigmoid scores, then l/t/r/b distribution logits | decode, NMS, letterbox inverse |
| boxes | `boxes [B, N, 4]` xyxy input px (clipped), `scores [B, N, C]` sigmoid | NMS, letterbox inverse |
| nms | `detections [B, max_det, 6]` (x1, y1, x2, y2, score, class; zero rows after the last), `num_detections [B]` int64 | letterbox inverse |

The `boxes` head folds the integral over each side's distribution and the point grid of the
export's (static) input size into the graph. The `nms` head adds what `PostProcessor` does: score
threshold, the best `nms_pre` (point, class) pairs, class-aware NMS (`torchvision.ops.batched_nms`,
exported as ONNX `NonMaxSuppression`), the first `max_det`. Its thresholds are fixed in the graph
and recorded in the metadata; its batch is static (the loop over images is unrolled).
"""
from __future__ import annotations

from typing import Sequence, Tuple

import torch
from torch import Tensor, nn
from torchvision.ops import nms

from nanodet_ghost.inference.metadata import HEAD_OUTPUTS, HEADS  # noqa: F401  (re-exported for the tools)
from nanodet_ghost.model.head.decode import distance_to_box, distribution_to_distance, grid_points


class RawHead(nn.Module):
    """`images [B, 3, H, W]` → `[B, N, C + 4(R+1)]`: `detector(images)` with sigmoid on the first C
    channels. The detector's own forward is called; nothing in the model knows about export."""

    def __init__(self, detector: nn.Module) -> None:
        super().__init__()
        self.detector = detector
        self.num_classes = int(detector.num_classes)

    def forward(self, images: Tensor) -> Tensor:
        raw = self.detector(images)
        return torch.cat((raw[..., : self.num_classes].sigmoid(), raw[..., self.num_classes:]), dim=-1)


class BoxesHead(nn.Module):
    """`images [B, 3, H, W]` → `boxes [B, N, 4]` (xyxy input px, clipped to the input) and
    `scores [B, N, C]` (sigmoid), for the static input size `input_hw` (H, W)."""

    def __init__(self, detector: nn.Module, input_hw: Tuple[int, int], strides: Sequence[int], reg_max: int,
                 center_offset: float) -> None:
        super().__init__()
        self.detector = detector
        self.num_classes = int(detector.num_classes)
        self.reg_max = int(reg_max)
        self.input_hw = (int(input_hw[0]), int(input_hw[1]))
        points, point_strides = grid_points(self.input_hw, list(strides), offset=float(center_offset))
        self.register_buffer("points", points, persistent=False)  # [N, 2]
        self.register_buffer("point_strides", point_strides[:, None], persistent=False)  # [N, 1]

    def forward(self, images: Tensor) -> Tuple[Tensor, Tensor]:
        raw = self.detector(images)
        scores = raw[..., : self.num_classes].sigmoid()
        distances = distribution_to_distance(raw[..., self.num_classes:], self.reg_max) * self.point_strides
        return distance_to_box(self.points, distances, max_hw=self.input_hw), scores


class NmsHead(nn.Module):
    """`images [B, 3, H, W]` → `detections [B, max_det, 6]` and `num_detections [B]` (int64).

    Per image, as `PostProcessor`: the (point, class) pairs with score `> score_thr`, at most the
    `nms_pre` best, class-aware NMS at IoU `nms_iou` (torchvision's rules and coordinate-offset
    trick), the first `max_det` in decreasing score order; rows past `num_detections` are zero.
    """

    def __init__(self, boxes_head: BoxesHead, score_thr: float, nms_iou: float, nms_pre: int, max_det: int) -> None:
        super().__init__()
        self.boxes_head = boxes_head
        self.num_classes = boxes_head.num_classes
        self.score_thr, self.nms_iou = float(score_thr), float(nms_iou)
        self.nms_pre, self.max_det = int(nms_pre), int(max_det)
        self.num_candidates = int(boxes_head.points.shape[0]) * self.num_classes  # static: N * C

    def _one_image(self, boxes: Tensor, scores: Tensor) -> Tuple[Tensor, Tensor]:
        flat = scores.reshape(-1)  # [N * C], point-major as `nonzero` orders them
        top_scores, top_index = flat.topk(min(self.nms_pre, self.num_candidates))
        above = top_scores > self.score_thr
        top_scores, top_index = top_scores[above], top_index[above]
        points = torch.div(top_index, self.num_classes, rounding_mode="floor")
        labels = top_index - points * self.num_classes
        candidates = boxes[points]
        # torchvision's batched_nms trick: each class shifted beyond the others' boxes. The zero
        # keeps the max defined when nothing passed the threshold (boxes are clipped to >= 0).
        largest = torch.cat((candidates.reshape(-1), candidates.new_zeros(1))).max()
        offsets = labels.to(candidates.dtype) * (largest + 1)
        keep = nms(candidates + offsets[:, None], top_scores, self.nms_iou)[: self.max_det]
        found = torch.cat((candidates[keep], top_scores[keep, None], labels[keep, None].to(candidates.dtype)), dim=1)
        padded = torch.cat((found, found.new_zeros(self.max_det, 6)))[: self.max_det]
        return padded, torch.ones_like(keep).sum()

    def forward(self, images: Tensor) -> Tuple[Tensor, Tensor]:
        boxes, scores = self.boxes_head(images)
        per_image = [self._one_image(b, s) for b, s in zip(boxes.unbind(0), scores.unbind(0))]
        return torch.stack([d for d, _ in per_image]), torch.stack([n for _, n in per_image])


def export_head(detector: nn.Module, head: str, cfg, input_size: Sequence[int]) -> nn.Module:
    """The module to trace for `head` (one of `HEADS`): the detector with the head's ending.

    Args:
        cfg: the loaded config (`model.head` strides / reg_max / center_offset, `model.postprocess`).
        input_size: (W, H) of the export.
    """
    if head not in HEADS:
        raise ValueError(f"unknown head {head!r}, expected one of {list(HEADS)}")
    if head == "raw":
        return RawHead(detector).eval()
    model_head, post = cfg.model.head, cfg.model.postprocess
    boxes = BoxesHead(detector, (int(input_size[1]), int(input_size[0])), list(model_head.strides),
                      int(model_head.reg_max), float(model_head.center_offset))
    if head == "boxes":
        return boxes.eval()
    return NmsHead(boxes, post.score_thr, post.nms_iou, post.nms_pre, post.max_detections).eval()
