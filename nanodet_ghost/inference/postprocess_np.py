"""Decode + NMS in numpy: the torch-free twin of `nanodet_ghost.model.head.postprocess`.

Same semantics as `PostProcessor` (docs/contracts.md "Model"): points at `((x + 0.5) * s,
(y + 0.5) * s)`, softmax integral per side times the stride, boxes clipped to the input; per image
`score > thr`, top `nms_pre`, class-wise NMS with torchvision's rules (greedy in decreasing score,
suppress when IoU > threshold, result sorted by decreasing score), first `max_detections`, then
mapped back to the original image with the inverse warp matrix and clipped.

Only numpy here: `OnnxPredictor` imports this on machines without torch.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping, Optional, Sequence, Tuple

import numpy as np


@dataclass(frozen=True)
class PostprocessParams:
    """The `model.postprocess` settings (`PostprocessConfig`)."""

    score_thr: float = 0.05
    nms_iou: float = 0.6
    nms_pre: int = 1000
    max_detections: int = 100


def grid_points_np(input_hw: Tuple[int, int], strides: Sequence[int],
                   centre_offset: float = 0.5) -> Tuple[np.ndarray, np.ndarray]:
    """Cell centres of every level in the head's output order.

    Returns:
        points: float32 [N, 2] (x, y) input pixels, `((col + offset) * s, (row + offset) * s)`.
        point_strides: float32 [N].
    """
    height, width = int(input_hw[0]), int(input_hw[1])
    points, point_strides = [], []
    for s in strides:
        h, w = math.ceil(height / s), math.ceil(width / s)
        xs = (np.arange(w, dtype=np.float32) + centre_offset) * s
        ys = (np.arange(h, dtype=np.float32) + centre_offset) * s
        xx, yy = np.meshgrid(xs, ys)  # [h, w], row-major
        points.append(np.stack((xx.reshape(-1), yy.reshape(-1)), axis=1))
        point_strides.append(np.full(h * w, float(s), np.float32))
    return np.concatenate(points).astype(np.float32), np.concatenate(point_strides)


def softmax_integral(reg: np.ndarray, reg_max: int) -> np.ndarray:
    """`reg: [..., 4 * (reg_max + 1)]` distribution logits → `[..., 4]` expected bins (stride units)."""
    logits = reg.reshape(*reg.shape[:-1], 4, reg_max + 1).astype(np.float32)
    logits = logits - logits.max(axis=-1, keepdims=True)
    probs = np.exp(logits)
    probs /= probs.sum(axis=-1, keepdims=True)
    return probs @ np.arange(reg_max + 1, dtype=np.float32)


def decode_np(output: np.ndarray, num_classes: int, reg_max: int, strides: Sequence[int],
              input_hw: Tuple[int, int], centre_offset: float = 0.5) -> Tuple[np.ndarray, np.ndarray]:
    """Exported output `[B, N, C + 4(R+1)]` (class scores already sigmoid) → scores `[B, N, C]` and
    boxes `[B, N, 4]` xyxy input pixels, clipped to the input."""
    points, point_strides = grid_points_np(input_hw, strides, centre_offset)
    if output.shape[1] != len(points):
        raise ValueError(f"model output has {output.shape[1]} points, expected {len(points)} for input "
                         f"{tuple(input_hw)} and strides {list(strides)}")
    scores = output[..., :num_classes].astype(np.float32)
    dist = softmax_integral(output[..., num_classes:], reg_max) * point_strides[:, None]
    height, width = float(input_hw[0]), float(input_hw[1])
    boxes = np.stack((
        np.clip(points[:, 0] - dist[..., 0], 0, width),
        np.clip(points[:, 1] - dist[..., 1], 0, height),
        np.clip(points[:, 0] + dist[..., 2], 0, width),
        np.clip(points[:, 1] + dist[..., 3], 0, height),
    ), axis=-1).astype(np.float32)
    return scores, boxes


def nms_np(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float) -> np.ndarray:
    """Greedy NMS like `torchvision.ops.nms`: boxes float [K, 4] xyxy, scores [K] → kept indices
    (int64) in decreasing score order; a box is dropped when its IoU with a kept one is > threshold.
    Arithmetic in float32, as torchvision does for float32 boxes."""
    boxes = boxes.astype(np.float32, copy=False)
    order = np.argsort(-scores, kind="stable")
    x1, y1, x2, y2 = boxes[:, 0], boxes[:, 1], boxes[:, 2], boxes[:, 3]
    areas = (x2 - x1) * (y2 - y1)
    suppressed = np.zeros(len(boxes), bool)
    keep = []
    for pos, i in enumerate(order):
        if suppressed[i]:
            continue
        keep.append(i)
        rest = order[pos + 1:]
        rest = rest[~suppressed[rest]]
        if rest.size == 0:
            continue
        w = np.maximum(np.minimum(x2[i], x2[rest]) - np.maximum(x1[i], x1[rest]), np.float32(0))
        h = np.maximum(np.minimum(y2[i], y2[rest]) - np.maximum(y1[i], y1[rest]), np.float32(0))
        inter = w * h
        iou = inter / (areas[i] + areas[rest] - inter)
        suppressed[rest[iou > iou_threshold]] = True
    return np.asarray(keep, np.int64)


def batched_nms_np(boxes: np.ndarray, scores: np.ndarray, labels: np.ndarray,
                   iou_threshold: float) -> np.ndarray:
    """Class-wise NMS (`torchvision.ops.batched_nms`): kept indices sorted by decreasing score."""
    if len(boxes) == 0:
        return np.zeros(0, np.int64)
    keep_mask = np.zeros(len(boxes), bool)
    for label in np.unique(labels):
        idx = np.nonzero(labels == label)[0]
        keep_mask[idx[nms_np(boxes[idx], scores[idx], iou_threshold)]] = True
    kept = np.nonzero(keep_mask)[0]
    return kept[np.argsort(-scores[kept], kind="stable")]


def map_boxes_to_original_np(boxes: np.ndarray, warp_matrix: Any, orig_hw: Tuple[int, int]) -> np.ndarray:
    """xyxy boxes [K, 4] input pixels → original pixels through the inverse of the 3x3
    `warp_matrix` (original → input), clipped to `orig_hw` (h, w). Float64 maths, float32 out."""
    if len(boxes) == 0:
        return boxes.astype(np.float32)
    inverse = np.linalg.inv(np.asarray(warp_matrix, dtype=np.float64))
    b = boxes.astype(np.float64)
    xs = np.stack((b[:, 0], b[:, 2], b[:, 0], b[:, 2]), axis=1)
    ys = np.stack((b[:, 1], b[:, 1], b[:, 3], b[:, 3]), axis=1)
    pts = np.stack((xs, ys, np.ones_like(xs)), axis=-1) @ inverse.T  # [K, 4, 3]
    mapped = pts[..., :2] / pts[..., 2:3]
    out = np.concatenate((mapped.min(axis=1), mapped.max(axis=1)), axis=1)
    height, width = orig_hw
    out[:, 0::2] = out[:, 0::2].clip(0, width)
    out[:, 1::2] = out[:, 1::2].clip(0, height)
    return out.astype(np.float32)


def postprocess_image_np(scores: np.ndarray, boxes: np.ndarray, meta: Optional[Mapping[str, Any]],
                         params: PostprocessParams, score_thr: Optional[float] = None
                         ) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One image: scores [N, C] (sigmoid), boxes [N, 4] input px → (boxes [K, 4] original px
    float32, scores [K] float32, labels [K] int64), sorted by decreasing score.

    Without `warp_matrix` / `orig_hw` in `meta`, boxes stay in input pixels."""
    threshold = params.score_thr if score_thr is None else score_thr
    point_idx, labels = np.nonzero(scores > threshold)
    kept_scores = scores[point_idx, labels]
    if kept_scores.size > params.nms_pre:
        top = np.argsort(-kept_scores, kind="stable")[: params.nms_pre]
        point_idx, labels, kept_scores = point_idx[top], labels[top], kept_scores[top]
    kept_boxes = boxes[point_idx]
    keep = batched_nms_np(kept_boxes, kept_scores, labels, params.nms_iou)[: params.max_detections]
    kept_boxes, kept_scores, labels = kept_boxes[keep], kept_scores[keep], labels[keep]
    if meta is not None and "warp_matrix" in meta and "orig_hw" in meta:
        orig_hw = (int(meta["orig_hw"][0]), int(meta["orig_hw"][1]))
        kept_boxes = map_boxes_to_original_np(kept_boxes, meta["warp_matrix"], orig_hw)
    return kept_boxes.astype(np.float32), kept_scores.astype(np.float32), labels.astype(np.int64)
