"""The confusion matrix against hand counts."""
from __future__ import annotations

import logging

import numpy as np
import pytest

from nanodet_ghost.analysis.confusion import confusion_matrix, normalize_rows

CATS, DOGS = 1, 2


def gt_of(*anns):
    images = [dict(id=i, file_name=f"{i}.jpg", height=400, width=400) for i in (1, 2)]
    annotations = [dict(id=k + 1, image_id=img, category_id=cat, bbox=box, area=box[2] * box[3], iscrowd=crowd)
                   for k, (img, cat, box, crowd) in enumerate(anns)]
    return dict(images=images, annotations=annotations,
                categories=[dict(id=CATS, name="cat"), dict(id=DOGS, name="dog")])


def det(img, cat, box, score):
    return dict(image_id=img, category_id=cat, bbox=box, score=score)


def test_hand_count() -> None:
    """A hit, a duplicate of it, a dog called cat, a missed cat, a dog out of nothing, and a
    detection under the score threshold (which changes nothing)."""
    gt = gt_of((1, CATS, [0, 0, 100, 100], 0),
               (1, DOGS, [200, 0, 100, 100], 0),
               (2, CATS, [0, 200, 100, 100], 0))
    results = [det(1, CATS, [2, 2, 100, 100], 0.9),      # cat found
               det(1, CATS, [0, 4, 100, 100], 0.8),      # duplicate of that cat: a false positive
               det(1, CATS, [205, 0, 100, 100], 0.7),    # the dog, called cat: a confusion
               det(2, DOGS, [250, 250, 60, 60], 0.6),    # nothing there: a false positive
               det(2, CATS, [0, 200, 100, 100], 0.1)]    # would find the missed cat, but scores too low
    matrix = confusion_matrix(gt, results, [CATS, DOGS], score_thr=0.3)
    expected = np.array([[1, 0, 1],   # cat: found once, missed once
                         [1, 0, 0],   # dog: taken for a cat
                         [1, 1, 0]])  # background: the duplicate cat, the dog out of nothing
    np.testing.assert_array_equal(matrix, expected)
    # at a lower threshold the missed cat is found
    np.testing.assert_array_equal(confusion_matrix(gt, results, [CATS, DOGS], score_thr=0.05),
                                  [[2, 0, 0], [1, 0, 0], [1, 1, 0]])


def test_one_match_per_box_by_score_then_iou() -> None:
    """The best-scored detection takes the box it overlaps most; the next one must take another."""
    gt = gt_of((1, CATS, [0, 0, 100, 100], 0), (1, CATS, [60, 0, 100, 100], 0))
    results = [det(1, CATS, [55, 0, 100, 100], 0.9),  # IoU 0.9 with the second box, 0.29 with the first
               det(1, DOGS, [30, 0, 100, 100], 0.8)]  # IoU 0.54 with both; only the first is still free
    matrix = confusion_matrix(gt, results, [CATS, DOGS], score_thr=0.3)
    np.testing.assert_array_equal(matrix, [[1, 1, 0], [0, 0, 0], [0, 0, 0]])


def test_crowd_regions_and_iou_threshold() -> None:
    gt = gt_of((1, CATS, [0, 0, 100, 100], 0), (1, CATS, [200, 200, 150, 150], 1))
    results = [det(1, CATS, [210, 210, 60, 60], 0.9),  # inside the crowd region: ignored, as COCO does
               det(1, CATS, [50, 0, 100, 100], 0.8)]   # IoU 1/3 with the cat: below 0.5, a false positive
    matrix = confusion_matrix(gt, results, [CATS, DOGS], score_thr=0.3)
    np.testing.assert_array_equal(matrix, [[0, 0, 1], [0, 0, 0], [1, 0, 0]])
    loose = confusion_matrix(gt, results, [CATS, DOGS], score_thr=0.3, iou_thr=0.3)
    np.testing.assert_array_equal(loose, [[1, 0, 0], [0, 0, 0], [0, 0, 0]])


def test_unknown_categories_are_counted_in_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    gt = gt_of((1, CATS, [0, 0, 100, 100], 0), (1, 7, [0, 0, 10, 10], 0))
    with caplog.at_level(logging.WARNING):
        matrix = confusion_matrix(gt, [det(1, 9, [0, 0, 100, 100], 0.9)], [CATS, DOGS])
    np.testing.assert_array_equal(matrix, [[0, 0, 1], [0, 0, 0], [0, 0, 0]])
    assert "2 boxes / detections of categories outside [1, 2] left out" in caplog.text


def test_normalize_rows() -> None:
    shares = normalize_rows(np.array([[3, 1, 0], [0, 0, 0], [1, 1, 2]]))
    np.testing.assert_allclose(shares, [[0.75, 0.25, 0], [0, 0, 0], [0.25, 0.25, 0.5]])
