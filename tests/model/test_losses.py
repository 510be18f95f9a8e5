"""QFL, DFL and GIoU against hand-computed values, including degenerate boxes."""
import math

import torch

from nanodet_ghost.model.loss.gfocal import (
    aligned_box_iou,
    distribution_focal_loss,
    giou_loss,
    quality_focal_loss,
)


def test_qfl_hand_values():
    logits = torch.tensor([[0.0, 0.0, 0.0, math.log(3.0)]])
    target = torch.tensor([[0.0, 1.0, 0.5, 0.75]])
    loss = quality_focal_loss(logits, target, beta=2.0)
    # sigmoid(0) = 0.5: BCE = ln 2 for targets 0 and 1, scaled by |t - 0.5|^2 = 0.25;
    # target 0.5 and sigmoid(ln 3) = 0.75 with target 0.75 are perfect: scale 0.
    expected = torch.tensor([[math.log(2) * 0.25, math.log(2) * 0.25, 0.0, 0.0]])
    assert torch.allclose(loss, expected, atol=1e-7)


def test_qfl_beta_changes_focus():
    logits = torch.tensor([[2.0]])
    target = torch.tensor([[0.0]])
    s = torch.sigmoid(torch.tensor(2.0))
    bce = -math.log(1 - s)
    assert torch.allclose(quality_focal_loss(logits, target, beta=1.0), torch.tensor([[bce * s]]))
    assert torch.allclose(quality_focal_loss(logits, target, beta=2.0), torch.tensor([[bce * s * s]]))


def test_dfl_hand_values():
    uniform = torch.zeros(1, 8)
    # Uniform over 8 bins: each bin has log-prob -ln 8, whatever the split 0.7 / 0.3.
    assert torch.allclose(distribution_focal_loss(uniform, torch.tensor([2.3])), torch.tensor([math.log(8)]))
    peaked = torch.full((1, 8), -1e4)
    peaked[0, 2] = peaked[0, 3] = 0.0  # p2 = p3 = 0.5
    # target 2.5 -> 0.5 * -ln 0.5 + 0.5 * -ln 0.5 = ln 2; target 2.0 -> all weight on bin 2: ln 2.
    assert torch.allclose(distribution_focal_loss(peaked.repeat(2, 1), torch.tensor([2.5, 2.0])),
                          torch.tensor([math.log(2), math.log(2)]), atol=1e-6)


def test_dfl_at_upper_edge_is_finite():
    logits = torch.zeros(1, 8, requires_grad=True)
    loss = distribution_focal_loss(logits, torch.tensor([7.0 - 0.01]))
    loss.sum().backward()
    assert torch.isfinite(loss).all() and torch.isfinite(logits.grad).all()


def test_giou_hand_values():
    pred = torch.tensor([[0.0, 0.0, 2.0, 2.0], [0.0, 0.0, 1.0, 1.0], [0.0, 0.0, 2.0, 2.0]])
    gt = torch.tensor([[1.0, 1.0, 3.0, 3.0], [2.0, 0.0, 3.0, 1.0], [0.0, 0.0, 2.0, 2.0]])
    # overlap: IoU 1/7, hull 9, union 7 -> GIoU = 1/7 - 2/9; disjoint: IoU 0, hull 3, union 2 -> -1/3.
    expected = torch.tensor([1 - (1 / 7 - 2 / 9), 1 + 1 / 3, 0.0])
    assert torch.allclose(giou_loss(pred, gt), expected, atol=1e-6)


def test_giou_degenerate_boxes_are_finite():
    point = torch.tensor([[1.0, 1.0, 1.0, 1.0]], requires_grad=True)
    gt = torch.tensor([[0.0, 0.0, 2.0, 2.0]])
    loss = giou_loss(point, gt)
    assert torch.allclose(loss, torch.tensor([1.0]), atol=1e-6)  # IoU 0, hull == union
    both = giou_loss(point, point.detach())
    both.sum().backward()
    assert torch.isfinite(both).all() and torch.isfinite(point.grad).all()


def test_aligned_iou():
    a = torch.tensor([[0.0, 0.0, 2.0, 2.0], [0.0, 0.0, 0.0, 0.0]])
    b = torch.tensor([[1.0, 1.0, 3.0, 3.0], [0.0, 0.0, 1.0, 1.0]])
    assert torch.allclose(aligned_box_iou(a, b), torch.tensor([1 / 7, 0.0]))
