"""found_objects: which ground truth the drawn detections found (the quickstart's visible check)."""
from __future__ import annotations

import numpy as np

from nanodet_ghost.analysis.drawing import grid_size
from nanodet_ghost.analysis.found import FoundImage, found_grid, found_objects

GT = np.array([[10, 10, 50, 50], [60, 60, 100, 100], [10, 60, 40, 90]], np.float32)
GT_LABELS = np.array([0, 1, 0])


def test_found_needs_class_iou_and_score() -> None:
    boxes = np.array([[12, 10, 52, 50],  # class 0 on GT 0, IoU 0.9: found
                      [60, 60, 100, 100],  # class 0 on a class-1 object: wrong class
                      [10, 60, 40, 90]],  # right, but below the score threshold
                     np.float32)
    found = found_objects(GT, GT_LABELS, boxes, np.array([0.9, 0.8, 0.2]), np.array([0, 0, 0]))
    assert found.tolist() == [True, False, False]
    assert found_objects(GT, GT_LABELS, boxes, np.array([0.9, 0.8, 0.2]), np.array([0, 0, 0]),
                         score_thr=0.1).tolist() == [True, False, True]


def test_found_is_one_to_one_and_respects_iou_threshold() -> None:
    # two detections on GT 0: the second cannot also find it; a shifted box at IoU ~0.43 misses GT 1
    boxes = np.array([[10, 10, 50, 50], [11, 11, 51, 51], [76, 60, 116, 100]], np.float32)
    found = found_objects(GT, GT_LABELS, boxes, np.array([0.9, 0.95, 0.9]), np.array([0, 0, 1]))
    assert found.tolist() == [True, False, False]
    assert found_objects(GT, GT_LABELS, boxes, np.array([0.9, 0.95, 0.9]), np.array([0, 0, 1]),
                         iou_thr=0.4).tolist() == [True, True, False]


def test_found_with_nothing() -> None:
    empty = np.zeros((0, 4), np.float32)
    assert found_objects(GT, GT_LABELS, empty, np.zeros(0), np.zeros(0)).tolist() == [False] * 3
    assert found_objects(empty, np.zeros(0), GT, np.ones(3), GT_LABELS).tolist() == []


def test_found_grid_is_two_by_two() -> None:
    img = np.full((120, 160, 3), 90, np.uint8)
    item = FoundImage("a.jpg", img, GT, GT_LABELS, GT[:1], np.array([0.9], np.float32), np.array([0]),
                      np.array([True, False, False]))
    grid = found_grid([item] * 4, ["a", "b"], 0.3)
    assert grid.shape[:2] == grid_size(4, cols=2)[::-1]
