"""Decode + NMS, and mapping boxes back through a keep-ratio letterbox."""
import math

import numpy as np
import torch

from nanodet_ghost.model.head.decode import grid_points
from nanodet_ghost.model.head.postprocess import PostProcessor, map_boxes_to_original

NUM_CLASSES, REG_MAX = 4, 7
STRIDES = (8, 16, 32)
INPUT_HW = (320, 320)


def side_logits(distance_in_bins: float) -> torch.Tensor:
    """Logits whose softmax puts mass on the two bins around `distance`, with that expectation."""
    logits = torch.full((REG_MAX + 1,), -1e4)
    left = math.floor(distance_in_bins)
    frac = distance_in_bins - left
    logits[left] = math.log(1 - frac) if frac < 1 else -1e4
    if frac > 0:
        logits[left + 1] = math.log(frac)
    return logits


def raw_with_one_box(point_index: int, distances_px, stride: int, label: int) -> torch.Tensor:
    points, _ = grid_points(INPUT_HW, STRIDES)
    raw = torch.full((1, points.shape[0], NUM_CLASSES + 4 * (REG_MAX + 1)), -10.0)
    raw[0, :, NUM_CLASSES:] = 0.0
    raw[0, point_index, label] = 5.0
    raw[0, point_index, NUM_CLASSES:] = torch.cat([side_logits(d / stride) for d in distances_px])
    return raw


def test_letterbox_box_maps_back_to_original_non_square():
    # A 640x480 (w x h) image letterboxed into 320x320: scale 0.5, 40 px of padding top and bottom.
    warp = np.array([[0.5, 0.0, 0.0], [0.0, 0.5, 40.0], [0.0, 0.0, 1.0]])
    known_box = np.array([100.0, 50.0, 300.0, 250.0])  # original pixels -> input (50, 65, 150, 165)
    col, row = 12, 14  # stride-8 cell with centre (100, 116)
    raw = raw_with_one_box(row * 40 + col, (50.0, 51.0, 50.0, 49.0), 8, label=2)
    post = PostProcessor(NUM_CLASSES, STRIDES, REG_MAX)
    (result,) = post(raw, [{"warp_matrix": warp, "orig_hw": (480, 640)}], INPUT_HW)
    assert result["labels"].tolist() == [2]
    assert torch.allclose(result["boxes"][0].double(), torch.from_numpy(known_box), atol=1e-3)
    assert result["scores"][0] > 0.99


def test_boxes_are_clipped_to_original_image():
    warp = np.array([[0.5, 0.0, 0.0], [0.0, 0.5, 40.0], [0.0, 0.0, 1.0]])
    inside_padding = torch.tensor([[0.0, 20.0, 330.0, 300.0]])  # reaches into the letterbox bars
    mapped = map_boxes_to_original(inside_padding, warp, (480, 640))
    assert mapped.tolist() == [[0.0, 0.0, 640.0, 480.0]]


def test_nms_threshold_and_max_detections():
    points, _ = grid_points(INPUT_HW, STRIDES)
    raw = torch.full((1, points.shape[0], NUM_CLASSES + 4 * (REG_MAX + 1)), -10.0)
    raw[0, :, NUM_CLASSES:] = 0.0  # every box: centre +/- 3.5 strides
    raw[0, :, 0] = torch.linspace(0, 4, points.shape[0])
    post = PostProcessor(NUM_CLASSES, STRIDES, REG_MAX, score_thr=0.3, nms_iou=0.6, max_detections=7)
    (result,) = post(raw, [{}], INPUT_HW)
    assert len(result["boxes"]) == 7
    assert (result["scores"] > 0.3).all()
    assert (result["scores"][:-1] >= result["scores"][1:]).all()
    from torchvision.ops import box_iou
    overlap = box_iou(result["boxes"], result["boxes"]).fill_diagonal_(0)
    assert overlap.max() <= 0.6 + 1e-6


def test_empty_prediction_has_right_shapes():
    points, _ = grid_points(INPUT_HW, STRIDES)
    raw = torch.full((2, points.shape[0], NUM_CLASSES + 4 * (REG_MAX + 1)), -10.0)
    results = PostProcessor(NUM_CLASSES, STRIDES, REG_MAX)(raw, [{}, {}], INPUT_HW)
    for r in results:
        assert r["boxes"].shape == (0, 4) and r["scores"].shape == (0,) and r["labels"].shape == (0,)


def test_decoding_only_the_candidates_matches_decoding_every_point():
    """The score threshold is applied before decoding; the result must equal the reference that
    decodes every point first (`PostProcessor.decode`), then selects."""
    from torchvision.ops import batched_nms

    points, _ = grid_points(INPUT_HW, STRIDES)
    torch.manual_seed(3)
    raw = torch.randn(2, points.shape[0], NUM_CLASSES + 4 * (REG_MAX + 1)) * 2.0
    raw[..., :NUM_CLASSES] -= 3.0  # a few hundred candidates per image above 0.05
    post = PostProcessor(NUM_CLASSES, STRIDES, REG_MAX, score_thr=0.05, nms_pre=300, max_detections=50)
    metas = [{}, {"warp_matrix": np.array([[0.5, 0, 0], [0, 0.5, 40.0], [0, 0, 1]]), "orig_hw": (480, 640)}]
    got = post(raw, metas, INPUT_HW)
    all_scores, all_boxes = post.decode(raw, INPUT_HW)
    for scores, boxes, meta, result in zip(all_scores, all_boxes, metas, got):
        point_idx, labels = torch.nonzero(scores > 0.05, as_tuple=True)
        kept = scores[point_idx, labels]
        assert kept.numel() > 300  # the nms_pre cut is exercised
        kept, order = kept.topk(300)
        point_idx, labels = point_idx[order], labels[order]
        keep = batched_nms(boxes[point_idx], kept, labels, 0.6)[:50]
        expected = boxes[point_idx][keep]
        if meta:
            expected = map_boxes_to_original(expected, meta["warp_matrix"], meta["orig_hw"])
        assert torch.equal(result["labels"], labels[keep])
        assert torch.allclose(result["scores"], kept[keep])
        assert torch.allclose(result["boxes"], expected, atol=1e-4)
