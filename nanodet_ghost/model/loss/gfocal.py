"""Generalized Focal Loss terms (Li et al., NeurIPS 2020) as pure functions.

All return per-element losses (no reduction); the caller weights and normalises them.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor
from torchvision.ops import generalized_box_iou_loss


def quality_focal_loss(logits: Tensor, target_scores: Tensor, beta: float = 2.0) -> Tensor:
    """QFL: BCE against a soft target (the IoU of the box, 0 for other classes), scaled by
    `|target - sigmoid(logit)| ** beta` so that easy, well-scored anchors contribute little.

    Args:
        logits: `Tensor[N, C]` class logits.
        target_scores: `Tensor[N, C]` in [0, 1]: IoU at the GT class of a positive, 0 elsewhere.
    Returns:
        `Tensor[N, C]`.
    """
    scale = (target_scores - logits.sigmoid()).abs().pow(beta)
    return F.binary_cross_entropy_with_logits(logits, target_scores, reduction="none") * scale


def distribution_focal_loss(logits: Tensor, target: Tensor) -> Tensor:
    """DFL: cross-entropy towards the two bins around a continuous target, weighted by nearness.

    Args:
        logits: `Tensor[N, reg_max + 1]` per-side distribution logits.
        target: `Tensor[N]` distances in bins, in [0, reg_max) (clamp before calling).
    Returns:
        `Tensor[N]`.
    """
    left = target.floor().long()
    right = left + 1
    weight_left = right.to(target.dtype) - target
    weight_right = target - left.to(target.dtype)
    right = right.clamp(max=logits.shape[-1] - 1)
    # Two cross-entropies rather than one log-softmax gathered twice: the same values, and the
    # gradients round as NanoDet's do, bit for bit (tests/model/test_plus_loss.py compares them).
    return (F.cross_entropy(logits, left, reduction="none") * weight_left
            + F.cross_entropy(logits, right, reduction="none") * weight_right)


def giou_loss(pred_boxes: Tensor, target_boxes: Tensor) -> Tensor:
    """`1 - GIoU` for aligned xyxy pairs `[N, 4]` → `Tensor[N]` (torchvision's implementation)."""
    return generalized_box_iou_loss(pred_boxes, target_boxes, reduction="none")


def aligned_box_iou(boxes1: Tensor, boxes2: Tensor, eps: float = 1e-6) -> Tensor:
    """IoU of aligned xyxy pairs `[N, 4]` → `Tensor[N]`; `box_iou` would build an N x N matrix."""
    top_left = torch.max(boxes1[:, :2], boxes2[:, :2])
    bottom_right = torch.min(boxes1[:, 2:], boxes2[:, 2:])
    inter = (bottom_right - top_left).clamp(min=0).prod(dim=1)
    area1 = (boxes1[:, 2:] - boxes1[:, :2]).clamp(min=0).prod(dim=1)
    area2 = (boxes2[:, 2:] - boxes2[:, :2]).clamp(min=0).prod(dim=1)
    return inter / (area1 + area2 - inter).clamp(min=eps)
