"""Per-image predictions -> COCO bbox results (`[{image_id, category_id, bbox xywh, score}]`)."""
from __future__ import annotations

import operator
from typing import Any, Dict, List, Mapping, Sequence

import numpy as np

from nanodet_ghost.evaluation.jsonio import EvaluationInputError

# dict(boxes=[K, 4] xyxy original-image pixels, scores=[K], labels=[K] contiguous)
Prediction = Mapping[str, Any]


def _as_numpy(x: Any) -> np.ndarray:
    if hasattr(x, "detach"):  # a torch.Tensor, without importing torch
        x = x.detach().cpu().numpy()
    return np.asarray(x)


def _image_id(image_id: Any) -> int:
    try:
        return operator.index(image_id)  # int, numpy integer, 0-d integer tensor
    except TypeError:
        raise EvaluationInputError(
            f"image id {image_id!r} ({type(image_id).__name__}) is not an integer; COCO image ids "
            "are ints (meta['image_id'])"
        ) from None


def predictions_to_coco_results(
    predictions: Mapping[Any, Prediction], category_ids: Sequence[int]
) -> List[Dict[str, Any]]:
    """Turn per-image predictions into COCO bbox results.

    Args:
        predictions: `{image_id: dict(boxes=[K, 4] xyxy, scores=[K], labels=[K])}` in original-image
            pixels; numpy arrays, torch tensors or lists.
        category_ids: contiguous label -> COCO category id.

    Returns:
        `[{"image_id": int, "category_id": int, "bbox": [x, y, w, h], "score": float}]`, images in
        increasing id order, detections in their given order.

    Raises:
        EvaluationInputError: a non-integer image id, mismatched shapes or a label outside
            `range(len(category_ids))`.
    """
    cat_ids = [int(c) for c in category_ids]
    keyed = sorted(((_image_id(k), v) for k, v in predictions.items()), key=lambda kv: kv[0])
    results: List[Dict[str, Any]] = []
    for image_id, pred in keyed:
        boxes = _as_numpy(pred["boxes"]).astype(np.float64)
        scores = _as_numpy(pred["scores"]).astype(np.float64).reshape(-1)
        labels = _as_numpy(pred["labels"]).astype(np.int64).reshape(-1)
        if boxes.size == 0:
            boxes = boxes.reshape(0, 4)
        if boxes.ndim != 2 or boxes.shape[1] != 4 or not len(boxes) == len(scores) == len(labels):
            raise EvaluationInputError(
                f"image {image_id}: boxes {tuple(boxes.shape)}, scores {tuple(scores.shape)}, "
                f"labels {tuple(labels.shape)}; expected [K, 4], [K], [K]"
            )
        bad = labels[(labels < 0) | (labels >= len(cat_ids))]
        if bad.size:
            raise EvaluationInputError(
                f"image {image_id}: label {int(bad[0])} outside 0..{len(cat_ids) - 1} "
                f"(category_ids has {len(cat_ids)} entries)"
            )
        for (x1, y1, x2, y2), score, label in zip(boxes.tolist(), scores.tolist(), labels.tolist()):
            results.append({
                "image_id": image_id,
                "category_id": cat_ids[label],
                "bbox": [x1, y1, x2 - x1, y2 - y1],
                "score": float(score),
            })
    return results
