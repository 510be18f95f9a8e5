"""Decode the head output into boxes in original-image pixels, with torchvision's batched NMS."""
from __future__ import annotations

from typing import Any, Dict, List, Mapping, Sequence, Tuple

import numpy as np
import torch
from torch import Tensor, nn
from torchvision.ops import batched_nms

from nanodet_ghost.model.head.decode import distance_to_box, distribution_to_distance, grid_points


def map_boxes_to_original(boxes: Tensor, warp_matrix: Any, orig_hw: Tuple[int, int]) -> Tensor:
    """Map xyxy boxes from network-input pixels back to the original image.

    Args:
        boxes: `Tensor[K, 4]` xyxy in input pixels.
        warp_matrix: 3x3 matrix (array-like) that took the original image to the input.
        orig_hw: (height, width) of the original image; boxes are clipped to it.
    """
    if boxes.numel() == 0:
        return boxes
    inverse = torch.as_tensor(np.linalg.inv(np.asarray(warp_matrix, dtype=np.float64)), dtype=torch.float64,
                              device=boxes.device)
    x1, y1, x2, y2 = boxes.double().unbind(1)
    corners = torch.stack(
        (torch.stack((x1, y1), 1), torch.stack((x2, y1), 1), torch.stack((x1, y2), 1), torch.stack((x2, y2), 1)), 1
    )  # [K, 4, 2]
    homogeneous = torch.cat((corners, torch.ones_like(corners[..., :1])), dim=-1) @ inverse.T
    mapped = homogeneous[..., :2] / homogeneous[..., 2:3]
    height, width = orig_hw
    out = torch.cat((mapped.min(dim=1).values, mapped.max(dim=1).values), dim=1)
    out[:, 0::2] = out[:, 0::2].clamp(0, width)
    out[:, 1::2] = out[:, 1::2].clamp(0, height)
    return out.to(boxes.dtype)


class PostProcessor(nn.Module):
    """Score threshold → top `nms_pre` → decode those candidates → class-wise NMS → at most
    `max_detections` per image. Points lie at `(cell + center_offset) * stride`, as in training."""

    def __init__(
        self,
        num_classes: int,
        strides: Sequence[int] = (8, 16, 32),
        reg_max: int = 7,
        score_thr: float = 0.05,
        nms_iou: float = 0.6,
        nms_pre: int = 1000,
        max_detections: int = 100,
        center_offset: float = 0.5,
    ) -> None:
        super().__init__()
        self.center_offset = center_offset
        self.num_classes = num_classes
        self.strides = list(strides)
        self.reg_max = reg_max
        self.score_thr = score_thr
        self.nms_iou = nms_iou
        self.nms_pre = nms_pre
        self.max_detections = max_detections

    def decode(self, raw: Tensor, input_hw: Tuple[int, int]) -> Tuple[Tensor, Tensor]:
        """`raw: [B, N, C + 4(R+1)]` → scores `[B, N, C]` (sigmoid) and boxes `[B, N, 4]` xyxy input px."""
        points, point_strides = grid_points(input_hw, self.strides, raw.device, offset=self.center_offset)
        scores = raw[..., : self.num_classes].float().sigmoid()
        distances = distribution_to_distance(raw[..., self.num_classes :].float(), self.reg_max)
        boxes = distance_to_box(points, distances * point_strides[:, None], max_hw=input_hw)
        return scores, boxes

    @torch.no_grad()
    def forward(
        self,
        raw: Tensor,
        metas: Sequence[Mapping[str, Any]],
        input_hw: Tuple[int, int],
        score_thr: float | None = None,
    ) -> List[Dict[str, Tensor]]:
        """
        Args:
            raw: head output `[B, N, C + 4 * (reg_max + 1)]`.
            metas: per image, `warp_matrix` (3x3, original → input) and `orig_hw`; without them
                boxes stay in input pixels.
            input_hw: (H, W) of the network input.
        Returns:
            Per image `boxes: [K, 4]` xyxy original pixels, `scores: [K]`, `labels: [K]` long.
        """
        threshold = self.score_thr if score_thr is None else score_thr
        points, point_strides = grid_points(input_hw, self.strides, raw.device, offset=self.center_offset)
        all_scores = raw[..., : self.num_classes].float().sigmoid()
        results = []
        for image_raw, scores, meta in zip(raw, all_scores, metas):
            point_idx, labels = torch.nonzero(scores > threshold, as_tuple=True)
            kept_scores = scores[point_idx, labels]
            if kept_scores.numel() > self.nms_pre:
                kept_scores, order = kept_scores.topk(self.nms_pre)
                point_idx, labels = point_idx[order], labels[order]
            # Only the candidates are decoded: the softmax over every point's distributions
            # cost more than the rest of the post-processing together.
            distances = distribution_to_distance(image_raw[point_idx, self.num_classes:].float(), self.reg_max)
            kept_boxes = distance_to_box(points[point_idx], distances * point_strides[point_idx, None],
                                         max_hw=input_hw)
            keep = batched_nms(kept_boxes, kept_scores, labels, self.nms_iou)[: self.max_detections]
            kept_boxes, kept_scores, labels = kept_boxes[keep], kept_scores[keep], labels[keep]
            if meta is not None and "warp_matrix" in meta and "orig_hw" in meta:
                orig_hw = tuple(int(v) for v in meta["orig_hw"])
                kept_boxes = map_boxes_to_original(kept_boxes, meta["warp_matrix"], orig_hw)
            results.append({"boxes": kept_boxes, "scores": kept_scores, "labels": labels})
        return results
