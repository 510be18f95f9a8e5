"""The numpy post-processing is the twin of the PyTorch one (same inputs → same detections)."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torchvision.ops import batched_nms, nms

from nanodet_ghost.inference.postprocess_np import (
    PostprocessParams,
    batched_nms_np,
    decode_np,
    grid_points_np,
    nms_np,
    postprocess_image_np,
    postprocess_output_np,
)
from nanodet_ghost.model.head.decode import grid_points
from nanodet_ghost.model.head.postprocess import PostProcessor


def _random_boxes(rng: np.random.Generator, n: int, size: float = 100.0) -> np.ndarray:
    xy = rng.uniform(0, size, (n, 2))
    wh = rng.uniform(5, 40, (n, 2))
    return np.concatenate((xy, xy + wh), axis=1).astype(np.float32)


@pytest.mark.parametrize("iou", [0.3, 0.5, 0.6, 0.9])
def test_nms_matches_torchvision(iou: float) -> None:
    rng = np.random.default_rng(0)
    for _ in range(5):
        boxes, scores = _random_boxes(rng, 300), rng.random(300).astype(np.float32)
        labels = rng.integers(0, 4, 300)
        expected = nms(torch.from_numpy(boxes), torch.from_numpy(scores), iou).numpy()
        np.testing.assert_array_equal(nms_np(boxes, scores, iou), expected)
        expected = batched_nms(torch.from_numpy(boxes), torch.from_numpy(scores), torch.from_numpy(labels), iou)
        np.testing.assert_array_equal(batched_nms_np(boxes, scores, labels, iou), expected.numpy())


def test_many_boxes_and_early_stop_match_torchvision() -> None:
    """Over 1000 boxes torchvision switches to one NMS per class; `max_keep` gives a prefix."""
    rng = np.random.default_rng(1)
    boxes, scores = _random_boxes(rng, 1500, 300.0), rng.random(1500).astype(np.float32)
    labels = rng.integers(0, 6, 1500)
    expected = batched_nms(torch.from_numpy(boxes), torch.from_numpy(scores), torch.from_numpy(labels), 0.5).numpy()
    np.testing.assert_array_equal(batched_nms_np(boxes, scores, labels, 0.5), expected)
    np.testing.assert_array_equal(batched_nms_np(boxes, scores, labels, 0.5, max_keep=7), expected[:7])
    small = slice(0, 400)
    expected = batched_nms(torch.from_numpy(boxes[small]), torch.from_numpy(scores[small]),
                           torch.from_numpy(labels[small]), 0.5).numpy()
    np.testing.assert_array_equal(batched_nms_np(boxes[small], scores[small], labels[small], 0.5, 10), expected[:10])


def test_nms_edge_cases() -> None:
    assert nms_np(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), 0.5).shape == (0,)
    boxes = np.array([[0, 0, 10, 10], [0, 0, 10, 10], [0, 0, 0, 0]], np.float32)  # duplicate, empty
    np.testing.assert_array_equal(nms_np(boxes, np.array([0.5, 0.9, 0.7], np.float32), 0.6), [1, 2])


def test_grid_points_match_torch() -> None:
    for hw in [(320, 320), (416, 416), (96, 160), (100, 70)]:
        points, strides = grid_points(hw, (8, 16, 32))
        points_np, strides_np = grid_points_np(hw, (8, 16, 32))
        np.testing.assert_array_equal(points_np, points.numpy())
        np.testing.assert_array_equal(strides_np, strides.numpy())


@pytest.mark.parametrize("nms_pre,max_det,thr", [(1000, 100, 0.05), (50, 20, 0.2), (1000, 100, 0.9)])
def test_postprocess_matches_torch(nms_pre: int, max_det: int, thr: float) -> None:
    num_classes, reg_max, input_hw = 5, 7, (128, 160)
    torch.manual_seed(0)
    n = sum(-(-input_hw[0] // s) * -(-input_hw[1] // s) for s in (8, 16, 32))
    raw = torch.randn(2, n, num_classes + 4 * (reg_max + 1)) * 2
    raw[..., :num_classes] -= 2.0
    metas = [dict(orig_hw=(480, 640), warp_matrix=np.array([[0.25, 0, 0], [0, 0.25, 4], [0, 0, 1]], np.float32)),
             dict(orig_hw=(200, 100), warp_matrix=np.array([[0.64, 0, 48], [0, 0.64, 0], [0, 0, 1]], np.float32))]
    post = PostProcessor(num_classes, (8, 16, 32), reg_max, score_thr=thr, nms_pre=nms_pre, max_detections=max_det)
    expected = post(raw, metas, input_hw)
    exported = torch.cat((raw[..., :num_classes].sigmoid(), raw[..., num_classes:]), dim=-1).numpy()
    scores, boxes = decode_np(exported, num_classes, reg_max, (8, 16, 32), input_hw)
    params = PostprocessParams(score_thr=thr, nms_iou=0.6, nms_pre=nms_pre, max_detections=max_det)
    for k in range(2):
        full = postprocess_image_np(scores[k], boxes[k], metas[k], params)
        direct = postprocess_output_np(exported[k], num_classes, reg_max, (8, 16, 32), input_hw, metas[k], params)
        e = expected[k]
        for b, s, lab in (full, direct):
            assert len(s) == len(e["scores"]) and (thr >= 0.9 or len(s) > 0)
            np.testing.assert_array_equal(lab, e["labels"].numpy())
            np.testing.assert_array_equal(s, e["scores"].numpy())
            np.testing.assert_allclose(b, e["boxes"].numpy(), atol=1e-3)


def test_decode_rejects_wrong_point_count() -> None:
    with pytest.raises(ValueError, match="points"):
        decode_np(np.zeros((1, 10, 37), np.float32), 5, 7, (8, 16, 32), (64, 64))
