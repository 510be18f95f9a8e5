"""DynamicSoftLabelAssigner: the same assignment and soft labels as NanoDet's.

- against plus_oracle.npz (NanoDet's results, written by reference/make_plus_oracle.py);
- on tied costs, against a per-GT loop that asks `torch.topk` what NanoDet asks it;
- live against $NANODET_SRC, ties included (skipped without it);
- contracts: no GT, no points, no candidate.
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from nanodet_ghost.model.assigner.dsl import DynamicSoftLabelAssigner, pairwise_box_iou
from nanodet_ghost.model.head.decode import grid_points

sys.path.insert(0, str(Path(__file__).resolve().parent / "reference"))
from nanodet_plus_run import nanodet_or_skip, run_dsl_case  # noqa: E402
from plus_cases import DSL_CASES, DSL_HW, dsl_inputs  # noqa: E402

ORACLE = Path(__file__).resolve().parent / "reference" / "plus_oracle.npz"
SOFT_TOL = 1e-6


def oracle_inputs(oracle, case: str) -> dict:
    points, _ = grid_points(DSL_HW, (8, 16, 32), offset=0.0)
    get = lambda name: torch.from_numpy(oracle[f"dsl.{case}.{name}"])  # noqa: E731
    return {"cls_logits": get("cls_logits"), "points": points, "decoded_boxes": get("decoded_boxes"),
            "gt_boxes": get("gt_boxes").reshape(-1, 4), "gt_labels": get("gt_labels").long()}


def assign(inputs: dict, assigner: DynamicSoftLabelAssigner | None = None):
    assigner = assigner or DynamicSoftLabelAssigner()
    return assigner.assign(inputs["cls_logits"], inputs["points"], inputs["decoded_boxes"], inputs["gt_boxes"],
                           inputs["gt_labels"])


@pytest.mark.parametrize("case", DSL_CASES)
def test_matches_nanodet_oracle(case):
    with np.load(ORACLE) as oracle:
        inputs = oracle_inputs(oracle, case)
        expected_gt = torch.from_numpy(oracle[f"dsl.{case}.gt_indices"]).long()
        expected_soft = torch.from_numpy(oracle[f"dsl.{case}.soft"])
    result = assign(inputs)
    assert torch.equal(result.gt_indices, expected_gt)
    positive = expected_gt >= 0
    assert torch.equal(result.labels[positive], inputs["gt_labels"][expected_gt[positive]])
    assert (result.labels[~positive] == -1).all()
    torch.testing.assert_close(result.ious, expected_soft, rtol=0, atol=SOFT_TOL)


def loop_matching(cost: torch.Tensor, ious: torch.Tensor, topk: int = 13) -> torch.Tensor:
    """NanoDet's dynamic-k matching, one `torch.topk` per GT (the reference for the vectorised one)."""
    matching = torch.zeros_like(cost)
    top = torch.topk(ious, min(topk, ious.shape[0]), dim=0).values
    ks = torch.clamp(top.sum(0).int(), min=1)
    for gt in range(cost.shape[1]):
        matching[torch.topk(cost[:, gt], k=int(ks[gt]), largest=False).indices, gt] = 1.0
    multi = matching.sum(1) > 1
    if multi.any():
        cheapest = torch.min(cost[multi], dim=1).indices
        matching[multi] = 0.0
        matching[torch.nonzero(multi).flatten(), cheapest] = 1.0
    return torch.where(matching.sum(1) > 0, matching.argmax(1), -1)


def tied_inputs(seed: int, num_points: int) -> tuple:
    """Cost and IoU matrices with many exact ties at every GT's dynamic-k cut."""
    g = torch.Generator().manual_seed(seed)
    num_gt = int(torch.randint(1, 8, (1,), generator=g))
    ious = torch.randint(0, 3, (num_points, num_gt), generator=g).float() * 0.25
    cost = torch.randint(0, 4, (num_points, num_gt), generator=g).float()
    return cost, ious


@pytest.mark.parametrize("num_points", [20, 150, 1000])  # both of torch.topk's CPU algorithms
def test_tied_costs_pick_what_torch_topk_picks(num_points):
    assigner = DynamicSoftLabelAssigner()
    tied_cuts = 0
    for seed in range(30):
        cost, ious = tied_inputs(seed, num_points)
        assert torch.equal(assigner.dynamic_k_matching(cost, ious), loop_matching(cost, ious)), f"seed {seed}"
        top = torch.topk(ious, min(13, num_points), dim=0).values
        ks = torch.clamp(top.sum(0).int(), min=1).long()
        ordered = torch.sort(cost, dim=0).values
        tied_cuts += int((ordered.gather(0, ks[None] - 1) == ordered.gather(0, ks[None])).sum())
    assert tied_cuts > 0  # the cases do put ties at the cut, where tie-breaking decides


def test_pairwise_iou_floors_the_union_like_nanodet():
    point = torch.tensor([[5.0, 5.0, 5.0, 5.0]])  # zero-area box against zero-area box: 0 / 0
    assert pairwise_box_iou(point, point).item() == 0.0
    boxes = torch.tensor([[0.0, 0.0, 10.0, 10.0], [5.0, 5.0, 15.0, 20.0]])
    from torchvision.ops import box_iou
    assert torch.equal(pairwise_box_iou(boxes, boxes), box_iou(boxes, boxes))


def test_no_ground_truth_no_points_no_candidate():
    inputs = dsl_inputs("random", 0)
    assigner = DynamicSoftLabelAssigner()
    no_gt = assign({**inputs, "gt_boxes": torch.zeros(0, 4), "gt_labels": torch.zeros(0, dtype=torch.long)})
    assert (no_gt.gt_indices == -1).all() and (no_gt.labels == -1).all() and (no_gt.ious == 0).all()
    assert no_gt.gt_indices.shape == (inputs["points"].shape[0],)
    empty = assigner.assign(torch.zeros(0, 4), torch.zeros(0, 2), torch.zeros(0, 4), inputs["gt_boxes"],
                            inputs["gt_labels"])
    assert empty.gt_indices.shape == (0,) and empty.ious.shape == (0,)
    # Between the stride-8 points and smaller than a stride: no candidate anywhere.
    lonely = assign({**inputs, "gt_boxes": torch.tensor([[1.0, 1.0, 7.0, 7.0]]), "gt_labels": torch.tensor([2])})
    assert not lonely.positive.any()


def test_every_positive_is_a_candidate_with_its_iou_as_soft_label():
    inputs = dsl_inputs("overlapping", 3)
    result = assign(inputs)
    pos = result.positive
    assert pos.any()
    inside = ((inputs["points"][:, None, :] > inputs["gt_boxes"][None, :, :2])
              & (inputs["points"][:, None, :] < inputs["gt_boxes"][None, :, 2:])).all(-1).any(1)
    assert inside[pos].all()
    ious = pairwise_box_iou(inputs["decoded_boxes"][pos], inputs["gt_boxes"])
    assert torch.equal(result.ious[pos], ious[torch.arange(int(pos.sum())), result.gt_indices[pos]])


def nanodet_like_cases():
    """Random cases of every kind, and cases whose costs tie (equal scores, equal boxes)."""
    for i, case in enumerate(DSL_CASES):
        for seed in range(4):
            yield f"{case}-{seed}", dsl_inputs(case, 1000 * i + seed)
    for seed in range(6):
        inputs = dsl_inputs("overlapping", 50 + seed)
        n = inputs["points"].shape[0]
        inputs["cls_logits"] = torch.full((n, 4), -3.0)
        inputs["decoded_boxes"] = torch.tensor([[20.0, 10.0, 60.0, 50.0]]).expand(n, 4).clone()
        yield f"tied-{seed}", inputs


def test_matches_nanodet_live():
    nd = nanodet_or_skip()
    for name, inputs in nanodet_like_cases():
        expected_gt, expected_soft = run_dsl_case(nd, inputs)
        result = assign(inputs)
        assert torch.equal(result.gt_indices, expected_gt), name
        torch.testing.assert_close(result.ious, expected_soft, rtol=0, atol=SOFT_TOL, msg=name)
