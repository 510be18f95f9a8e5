"""The curves and tables agree with pycocotools' own numbers, on hand-made COCO results."""
from __future__ import annotations

import math

import numpy as np
import pytest

from analysis_helpers import CLASSES, make_gt, make_results
from nanodet_ghost.analysis.coco_curves import ap_table, confidence_curves, matched_detections, pr_curves
from nanodet_ghost.evaluation.coco import CocoEvaluator

CATEGORY_IDS = [1, 2, 3, 4]


def evaluate(gt, results):
    result = CocoEvaluator(gt, CATEGORY_IDS, list(CLASSES)).evaluate_results(results, keep_eval=True)
    assert result.coco_eval is not None
    return result


@pytest.fixture(scope="module", params=[(0, 1), (5, 6), (7, 8)], ids=lambda s: f"seeds{s}")
def scored(request):
    gt_seed, det_seed = request.param
    gt = make_gt(seed=gt_seed)
    return evaluate(gt, make_results(gt, seed=det_seed))


def test_keep_eval_is_off_by_default() -> None:
    gt = make_gt()
    assert CocoEvaluator(gt).evaluate_results(make_results(gt)).coco_eval is None


def test_pr_area_is_coco_ap50_and_ap(scored) -> None:
    curves = pr_curves(scored.coco_eval, CATEGORY_IDS)
    assert 0.0 < scored.stats[1] < 1.0  # a case where the area means something
    assert abs(curves.ap50 - scored.stats[1]) < 1e-9
    assert abs(curves.ap - scored.stats[0]) < 1e-9
    assert abs(np.mean(curves.mean50) - curves.ap50) < 1e-12  # the area is that of the plotted curve
    assert curves.recall.shape == (101,) and curves.mean50.shape == (101,)


def test_pr_per_class(scored) -> None:
    curves = pr_curves(scored.coco_eval, CATEGORY_IDS)
    assert np.isnan(curves.per_class[3]).all() and math.isnan(curves.class_ap50[3])  # fish: no GT
    for k in range(3):
        curve = curves.per_class[k]
        assert np.all(np.diff(curve) <= 1e-12)  # COCO's interpolated precision never rises
        assert curves.class_ap50[k] == pytest.approx(np.mean(curve), abs=1e-12)
    assert np.allclose(curves.mean50, curves.per_class[:3].mean(axis=0))


def test_ap_table_matches_the_evaluator(scored) -> None:
    table = ap_table(scored.coco_eval, CATEGORY_IDS)
    for k, name in enumerate(CLASSES):
        expected = scored.per_class_ap[name]
        assert (math.isnan(table["all"][k]) and math.isnan(expected)) or abs(table["all"][k] - expected) < 1e-12
    assert abs(table["all"][-1] - scored.stats[0]) < 1e-9
    assert abs(table["AP50"][-1] - scored.stats[1]) < 1e-9
    for i, area in enumerate(("small", "medium", "large")):
        stat = scored.stats[3 + i]
        assert (stat == -1 and math.isnan(table[area][-1])) or abs(table[area][-1] - stat) < 1e-9


def test_confidence_curves_end_at_coco_recall(scored) -> None:
    """At the lowest threshold every detection is kept: recall is COCO's own recall at IoU 0.5."""
    curves = confidence_curves(scored.coco_eval, CATEGORY_IDS)
    recall = scored.coco_eval.eval["recall"]  # [T, K, A, M]
    for k in range(3):
        assert curves.recall[k, 0] == pytest.approx(recall[0, k, 0, -1], abs=1e-12)
        assert curves.recall[k, 0] > 0
    assert np.isnan(curves.f1[3]).all()
    assert np.all(np.diff(curves.recall[:3], axis=1) <= 0)  # a higher threshold never finds more
    assert curves.best_f1 == pytest.approx(np.nanmax(curves.mean_f1))


def test_confidence_curves_by_hand() -> None:
    """One image, four cats; detections 0.9 hit, 0.8 miss, 0.7 hit, 0.6 a duplicate of the 0.9."""
    boxes = [[0, 0, 50, 50], [100, 0, 50, 50], [200, 0, 50, 50], [300, 0, 50, 50]]
    gt = dict(images=[dict(id=1, file_name="a.jpg", height=400, width=400)],
              annotations=[dict(id=i + 1, image_id=1, category_id=1, bbox=b, area=2500, iscrowd=0)
                           for i, b in enumerate(boxes)],
              categories=[dict(id=1, name="cat")])
    results = [dict(image_id=1, category_id=1, bbox=[1, 1, 50, 50], score=0.9),
               dict(image_id=1, category_id=1, bbox=[0, 300, 50, 50], score=0.8),
               dict(image_id=1, category_id=1, bbox=[101, 0, 50, 50], score=0.7),
               dict(image_id=1, category_id=1, bbox=[0, 0, 49, 49], score=0.6)]
    coco_eval = CocoEvaluator(gt).evaluate_results(results, keep_eval=True).coco_eval
    scores, tp, num_gt = matched_detections(coco_eval, [1])[0]
    assert num_gt == 4 and scores.tolist() == [0.9, 0.8, 0.7, 0.6] and tp.tolist() == [True, False, True, False]
    curves = confidence_curves(coco_eval, [1])

    def at(c):
        i = int(np.argmin(np.abs(curves.confidence - c)))
        return curves.precision[0, i], curves.recall[0, i], curves.f1[0, i]

    assert at(0.5) == pytest.approx((0.5, 0.5, 0.5))
    assert at(0.65) == pytest.approx((2 / 3, 0.5, 4 / 7))
    assert at(0.75) == pytest.approx((0.5, 0.25, 1 / 3))
    assert at(0.85) == pytest.approx((1.0, 0.25, 0.4))
    assert at(0.95) == pytest.approx((1.0, 0.0, 0.0))  # nothing kept: nothing wrong said
    assert 0.6 < curves.best_threshold <= 0.7 and curves.best_f1 == pytest.approx(4 / 7)
