"""ATSS on small hand-built grids."""
import torch
from torchvision.ops import box_iou

from nanodet_ghost.model.assigner.atss import ATSSAssigner


def grid(size: int, stride: int, anchor: float):
    """Anchors of side `anchor` centred on a size x size grid of cells of `stride` pixels."""
    centers = [((x + 0.5) * stride, (y + 0.5) * stride) for y in range(size) for x in range(size)]
    half = anchor / 2
    return torch.tensor([[cx - half, cy - half, cx + half, cy + half] for cx, cy in centers])


def test_four_central_anchors_are_positive():
    anchors = grid(4, 8, 40)  # centres 4, 12, 20, 28
    gt = torch.tensor([[8.0, 8.0, 24.0, 24.0]])
    result = ATSSAssigner(topk=4).assign(anchors, [16], gt, torch.tensor([3]))
    # The 4 closest anchors (centres at 12/20) have equal IoU, so std 0 and all reach the mean.
    assert sorted(torch.nonzero(result.positive).flatten().tolist()) == [5, 6, 9, 10]
    assert (result.labels[result.positive] == 3).all()
    assert (result.labels[~result.positive] == -1).all()


def test_centre_must_lie_inside_gt():
    anchors = grid(4, 8, 40)
    tiny = torch.tensor([[13.0, 13.0, 19.0, 19.0]])  # the nearest centres (12, 20) lie outside
    result = ATSSAssigner(topk=4).assign(anchors, [16], tiny, torch.tensor([0]))
    assert not result.positive.any()


def test_threshold_is_mean_plus_std():
    level1 = grid(4, 8, 40)
    level2 = grid(2, 16, 80)
    anchors = torch.cat((level1, level2))
    gt = torch.tensor([[2.0, 2.0, 30.0, 30.0]])
    # Candidates: 4 level-1 anchors with IoU 784/1600 = 0.49 and 4 level-2 with 784/6400 = 0.1225.
    # mean 0.30625, unbiased std 0.19644 -> threshold 0.5027 > 0.49: no positive at all.
    result = ATSSAssigner(topk=4).assign(anchors, [16, 4], gt, torch.tensor([0]))
    assert not result.positive.any()
    # On level 1 alone the 4 candidates are equal, so they all pass.
    result = ATSSAssigner(topk=4).assign(level1, [16], gt, torch.tensor([0]))
    assert result.positive.sum() == 4


def test_overlapping_gts_go_to_highest_iou():
    anchors = grid(4, 8, 16)
    gts = torch.tensor([[8.0, 8.0, 24.0, 24.0], [6.0, 6.0, 34.0, 34.0]])
    result = ATSSAssigner(topk=4).assign(anchors, [16], gts, torch.tensor([0, 1]))
    iou = box_iou(anchors, gts)
    assert result.positive.any()
    for idx in torch.nonzero(result.positive).flatten().tolist():
        assert result.gt_indices[idx] == iou[idx].argmax()


def test_no_gt_gives_all_negative():
    anchors = grid(4, 8, 40)
    result = ATSSAssigner().assign(anchors, [16], torch.zeros(0, 4), torch.zeros(0, dtype=torch.long))
    assert not result.positive.any() and not result.ignored.any()


def test_ignore_regions_are_never_positive():
    anchors = grid(4, 8, 40)
    crowd = torch.tensor([[0.0, 0.0, 32.0, 16.0]])  # top half
    gt = torch.tensor([[8.0, 8.0, 24.0, 24.0]])
    result = ATSSAssigner(topk=4).assign(anchors, [16], gt, torch.tensor([1]), ignore_boxes=crowd)
    assert not (result.ignored & result.positive).any()
    # Top-half anchors that are not positive are ignored; the bottom half stays negative.
    top_half = torch.arange(16) < 8
    assert result.ignored[top_half & ~result.positive].all()
    assert not result.ignored[~top_half].any()


def test_zero_size_gt_is_never_assigned():
    anchors = grid(4, 8, 40)
    gt = torch.tensor([[12.0, 12.0, 12.0, 20.0]])
    result = ATSSAssigner(topk=4).assign(anchors, [16], gt, torch.tensor([0]))
    assert not result.positive.any()
