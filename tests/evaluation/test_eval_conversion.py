"""predictions_to_coco_results: xyxy -> xywh, contiguous labels -> original category ids."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from nanodet_ghost.evaluation import EvaluationInputError, predictions_to_coco_results

CATEGORY_IDS = [1, 3, 90]


def test_hand_computed_case() -> None:
    predictions = {
        np.int64(7): dict(boxes=np.array([[10.0, 20.0, 50.0, 80.0]], np.float32),
                          scores=np.array([0.75], np.float32), labels=np.array([2])),
        3: dict(boxes=torch.tensor([[0.5, 1.5, 2.5, 4.0], [100.0, 200.0, 101.0, 260.0]]),
                scores=torch.tensor([0.5, 0.25]), labels=torch.tensor([0, 1])),
        torch.tensor(9): dict(boxes=torch.zeros(0, 4), scores=torch.zeros(0),
                              labels=torch.zeros(0, dtype=torch.long)),
    }
    results = predictions_to_coco_results(predictions, CATEGORY_IDS)
    assert results == [
        {"image_id": 3, "category_id": 1, "bbox": [0.5, 1.5, 2.0, 2.5], "score": 0.5},
        {"image_id": 3, "category_id": 3, "bbox": [100.0, 200.0, 1.0, 60.0], "score": 0.25},
        {"image_id": 7, "category_id": 90, "bbox": [10.0, 20.0, 40.0, 60.0], "score": 0.75},
    ]
    for r in results:
        assert type(r["image_id"]) is int and type(r["category_id"]) is int
        assert type(r["score"]) is float and all(type(v) is float for v in r["bbox"])


def test_label_out_of_range_is_named() -> None:
    pred = {5: dict(boxes=np.zeros((1, 4)), scores=np.ones(1), labels=np.array([3]))}
    with pytest.raises(EvaluationInputError, match=r"image 5: label 3 outside 0\.\.2"):
        predictions_to_coco_results(pred, CATEGORY_IDS)


def test_bad_shapes_and_ids() -> None:
    pred = {5: dict(boxes=np.zeros((2, 4)), scores=np.ones(1), labels=np.zeros(2, int))}
    with pytest.raises(EvaluationInputError, match="image 5"):
        predictions_to_coco_results(pred, CATEGORY_IDS)
    pred = {"a.jpg": dict(boxes=np.zeros((0, 4)), scores=np.ones(0), labels=np.zeros(0, int))}
    with pytest.raises(EvaluationInputError, match="not an integer"):
        predictions_to_coco_results(pred, CATEGORY_IDS)
