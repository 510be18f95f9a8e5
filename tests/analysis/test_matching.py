"""greedy_match: the one-to-one matcher the confusion matrix and found_objects share."""
from __future__ import annotations

import numpy as np
import pytest

from nanodet_ghost.analysis.matching import UNMATCHED, greedy_match, iou_xywh


def test_visits_rows_in_order_and_takes_the_best_free_box() -> None:
    ious = np.array([[0.6, 0.9, 0.0],   # takes box 1 (its best)
                     [0.7, 0.8, 0.0],   # box 1 taken: box 0
                     [0.55, 0.95, 0.4],  # boxes 0 and 1 taken, box 2 below the threshold
                     [0.0, 0.0, 0.5]])  # box 2 exactly at the threshold
    assert greedy_match(ious, 0.5).tolist() == [1, 0, UNMATCHED, 2]
    assert greedy_match(ious, 0.85).tolist() == [1, UNMATCHED, UNMATCHED, UNMATCHED]


def test_allowed_restricts_the_candidates() -> None:
    ious = np.array([[0.9, 0.6], [0.9, 0.6]])
    allowed = np.array([[False, True], [True, True]])  # e.g. the first detection is of box 1's class
    assert greedy_match(ious, 0.5, allowed).tolist() == [1, 0]
    assert greedy_match(ious, 0.5).tolist() == [0, 1]


def test_ties_go_to_the_lower_index_and_empty_inputs() -> None:
    assert greedy_match(np.array([[0.7, 0.7]]), 0.5).tolist() == [0]
    assert greedy_match(np.zeros((0, 3)), 0.5).tolist() == []
    assert greedy_match(np.zeros((2, 0)), 0.5).tolist() == [UNMATCHED, UNMATCHED]


def test_bad_shapes_are_refused() -> None:
    with pytest.raises(ValueError, match=r"ious must be \[D, G\]"):
        greedy_match(np.zeros(3), 0.5)
    with pytest.raises(ValueError, match="allowed has shape"):
        greedy_match(np.zeros((2, 3)), 0.5, np.ones((3, 2), bool))


def test_iou_xywh_plain_and_crowd() -> None:
    det = np.array([[0.0, 0.0, 10.0, 10.0]])
    gt = np.array([[5.0, 0.0, 10.0, 10.0]])  # half of the detection, a third of the union
    assert iou_xywh(det, gt, crowd=False)[0, 0] == pytest.approx(1 / 3)
    assert iou_xywh(det, gt, crowd=True)[0, 0] == pytest.approx(1 / 2)
    assert iou_xywh(det[:0], gt, crowd=False).shape == (0, 1)
