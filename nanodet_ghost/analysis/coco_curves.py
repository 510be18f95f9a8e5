"""Curves and tables read from pycocotools' own evaluation (numpy only, no plotting).

Every number here comes from an accumulated `COCOeval` (`CocoEvaluator.evaluate_results(...,
keep_eval=True).coco_eval`), so the figures agree with the printed COCO table by construction:

- `pr_curves`: `COCOeval.eval["precision"]` [T iou, R recall, K class, A area, M maxDets] at area
  "all" and 100 detections, the setting of stats[0] and stats[1].
- `confidence_curves`: precision, recall and F1 against a confidence threshold, from the per-image
  matches of `COCOeval.evalImgs` (the matching COCO AP itself uses).
- `ap_table`: AP@[.5:.95] and AP50 per class and per area range.

Classes are given in label order by `category_ids` (label -> COCO category id); a class the ground
truth has no box for gets NaN, as pycocotools leaves it undefined (-1).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, List, Sequence, Tuple

import numpy as np

AREAS = ("all", "small", "medium", "large")


@dataclass(frozen=True)
class PRCurves:
    """Interpolated precision against recall, as COCO computes AP.

    Attributes:
        recall: [R] the recall thresholds (`params.recThrs`, 101 points 0, 0.01, ..., 1).
        per_class: [K, R] precision at IoU 0.5 per class (label order); NaN rows for classes
            without ground truth.
        mean50: [R] mean over classes with ground truth, IoU 0.5.
        mean50_95: [R] mean over classes and the IoU thresholds 0.5:0.05:0.95.
        ap50: area under `mean50` by COCO's 101-point rule (the mean of its points) = stats[1].
        ap: area under `mean50_95` the same way = stats[0].
        class_ap50: [K] area under each class curve (NaN without ground truth).
    """

    recall: np.ndarray
    per_class: np.ndarray
    mean50: np.ndarray
    mean50_95: np.ndarray
    ap50: float
    ap: float
    class_ap50: np.ndarray


@dataclass(frozen=True)
class ConfidenceCurves:
    """Precision, recall and F1 at IoU 0.5 against a confidence threshold.

    Attributes:
        confidence: [S] thresholds, 0 to 1.
        precision, recall, f1: [K, S] per class (label order); NaN rows for classes without
            ground truth. Where no detection reaches a threshold, precision is 1 (nothing wrong
            was said) and recall and F1 are 0.
        mean_f1: [S] mean F1 over the classes with ground truth.
        best_threshold: the confidence of the largest `mean_f1` (the lowest one on a tie).
        best_f1: `mean_f1` there.
    """

    confidence: np.ndarray
    precision: np.ndarray
    recall: np.ndarray
    f1: np.ndarray
    mean_f1: np.ndarray
    best_threshold: float
    best_f1: float


def _index(values: Sequence[Any], wanted: Any, what: str) -> int:
    for i, v in enumerate(values):
        if v == wanted:
            return i
    raise ValueError(f"COCOeval parameters have no {what} {wanted!r} (have {list(values)})")


def _setting(coco_eval: Any, area: str = "all", max_dets: int = 100) -> Tuple[int, int, int]:
    """(index of IoU 0.5, of `area`, of `max_dets`) in the accumulated arrays."""
    params = coco_eval.params
    t50 = int(np.argmin(np.abs(np.asarray(params.iouThrs) - 0.5)))
    return (t50, _index(params.areaRngLbl, area, "area range"),
            _index(list(params.maxDets), max_dets, "maxDets"))


def _class_columns(coco_eval: Any, category_ids: Sequence[int]) -> List[int]:
    """Column k of COCOeval's K axis for each label, -1 where the category is not evaluated."""
    position = {int(c): k for k, c in enumerate(coco_eval.params.catIds)}
    return [position.get(int(c), -1) for c in category_ids]


def _precision(coco_eval: Any, category_ids: Sequence[int], area: str = "all") -> np.ndarray:
    """[T, R, K] precision at `area` and 100 detections, labels in order, NaN where undefined."""
    _, a, m = _setting(coco_eval, area)
    raw = np.asarray(coco_eval.eval["precision"], np.float64)[:, :, :, a, m]  # [T, R, K_eval]
    out = np.full(raw.shape[:2] + (len(category_ids),), np.nan)
    for label, k in enumerate(_class_columns(coco_eval, category_ids)):
        if k >= 0:
            out[:, :, label] = np.where(raw[:, :, k] > -1, raw[:, :, k], np.nan)
    return out


def _nanmean(x: np.ndarray, axis: Any = None) -> Any:
    """Mean over the defined (non-NaN) values; NaN where none are, without a RuntimeWarning."""
    valid = ~np.isnan(x)
    total = np.where(valid, x, 0.0).sum(axis=axis)
    count = valid.sum(axis=axis)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, total / np.maximum(count, 1), np.nan)


def pr_curves(coco_eval: Any, category_ids: Sequence[int]) -> PRCurves:
    """Precision-recall curves of an accumulated `COCOeval` (see `PRCurves`).

    COCO's AP50 is the mean of the defined entries of precision[IoU 0.5, :, :, all, 100]. A class
    with ground truth is defined at every recall point, so that mean equals the mean over the 101
    points of the class-averaged curve: the area returned is exactly what is plotted.
    """
    t50, _, _ = _setting(coco_eval)
    precision = _precision(coco_eval, category_ids)  # [T, R, K]
    per_class = precision[t50].T  # [K, R]
    mean50 = _nanmean(per_class, axis=0)
    mean50_95 = _nanmean(precision.transpose(2, 0, 1).reshape(-1, precision.shape[1]), axis=0)
    return PRCurves(
        recall=np.asarray(coco_eval.params.recThrs, np.float64),
        per_class=per_class,
        mean50=mean50,
        mean50_95=mean50_95,
        ap50=float(_nanmean(mean50)) if np.isfinite(mean50).any() else float("nan"),
        ap=float(_nanmean(mean50_95)) if np.isfinite(mean50_95).any() else float("nan"),
        class_ap50=_nanmean(per_class, axis=1),
    )


def matched_detections(coco_eval: Any, category_ids: Sequence[int], max_dets: int = 100
                       ) -> List[Tuple[np.ndarray, np.ndarray, int]]:
    """Per label: (scores [D] descending, true-positive flags [D] bool, number of GT boxes) at
    IoU 0.5, area "all", the top `max_dets` detections of each image.

    The same records and order as `COCOeval.accumulate`: detections matched to a crowd region
    (dtIgnore) are left out, ignored GT boxes are not counted. A label without evaluation
    records gives empty arrays and 0 GT boxes. Raises ValueError for an evaluation that kept no
    per-image records (faster_coco_eval's).
    """
    t50, a, _ = _setting(coco_eval, max_dets=max_dets)
    params = coco_eval.params
    num_images, num_areas = len(params.imgIds), len(params.areaRng)
    if not isinstance(coco_eval.evalImgs, list) or len(coco_eval.evalImgs) != (
            len(params.catIds) * num_areas * num_images):
        raise ValueError(f"{type(coco_eval).__name__} kept no per-image matches (evalImgs); the "
                         "confidence curves need pycocotools' COCOeval (evaluation backend "
                         "'pycocotools')")
    out = []
    for k in _class_columns(coco_eval, category_ids):
        records = [] if k < 0 else [
            e for e in coco_eval.evalImgs[k * num_areas * num_images + a * num_images:
                                          k * num_areas * num_images + (a + 1) * num_images]
            if e is not None]
        if not records:
            out.append((np.zeros(0), np.zeros(0, bool), 0))
            continue
        scores = np.concatenate([e["dtScores"][:max_dets] for e in records])
        order = np.argsort(-scores, kind="mergesort")  # COCO's own tie order
        matches = np.concatenate([e["dtMatches"][:, :max_dets] for e in records], axis=1)[t50, order]
        ignored = np.concatenate([e["dtIgnore"][:, :max_dets] for e in records], axis=1)[t50, order]
        num_gt = int(sum(np.count_nonzero(np.asarray(e["gtIgnore"]) == 0) for e in records))
        keep = ~ignored.astype(bool)
        out.append((scores[order][keep], (matches != 0)[keep], num_gt))
    return out


def confidence_curves(coco_eval: Any, category_ids: Sequence[int],
                      num_points: int = 1001) -> ConfidenceCurves:
    """P, R and F1 against the confidence threshold (see `ConfidenceCurves`).

    At a threshold c, the detections kept are those scoring >= c; precision and recall are the
    raw (not interpolated) values of COCO's matching at IoU 0.5 over them. `COCOeval.eval["scores"]`
    gives a score only at the 101 recall points, paired with interpolated precision, so it is not
    used: the per-image matches in `evalImgs` give the exact value at every threshold.
    """
    confidence = np.linspace(0.0, 1.0, num_points)
    k_count = len(category_ids)
    precision = np.full((k_count, num_points), np.nan)
    recall = np.full_like(precision, np.nan)
    for label, (scores, tp, num_gt) in enumerate(matched_detections(coco_eval, category_ids)):
        if num_gt == 0:
            continue
        ascending = np.argsort(scores, kind="mergesort")
        s_sorted, tp_sorted = scores[ascending], tp[ascending]
        # kept(c) = detections with score >= c = those from searchsorted(left) to the end
        first = np.searchsorted(s_sorted, confidence, side="left")
        tp_suffix = np.concatenate([np.cumsum(tp_sorted[::-1])[::-1], [0]])
        kept = len(scores) - first
        n_tp = tp_suffix[first]
        with np.errstate(invalid="ignore", divide="ignore"):
            precision[label] = np.where(kept > 0, n_tp / np.maximum(kept, 1), 1.0)
        recall[label] = n_tp / num_gt
    with np.errstate(invalid="ignore", divide="ignore"):
        f1 = np.where(precision + recall > 0, 2 * precision * recall / (precision + recall), 0.0)
    f1 = np.where(np.isnan(precision), np.nan, f1)
    mean_f1 = _nanmean(f1, axis=0)
    if np.isfinite(mean_f1).any():
        best = int(np.nanargmax(mean_f1))
        best_threshold, best_f1 = float(confidence[best]), float(mean_f1[best])
    else:
        best_threshold, best_f1 = float("nan"), float("nan")
    return ConfidenceCurves(confidence, precision, recall, f1, mean_f1, best_threshold, best_f1)


def ap_table(coco_eval: Any, category_ids: Sequence[int]) -> Dict[str, np.ndarray]:
    """Per area range ("all", "small", "medium", "large"): [K + 1] AP@[.5:.95] per label, then
    the mean over classes (COCO's stat for that range); NaN where undefined. Also "AP50": the
    same at IoU 0.5, area "all"."""
    t50, _, _ = _setting(coco_eval)
    table: Dict[str, np.ndarray] = {}
    for area in AREAS:
        precision = _precision(coco_eval, category_ids, area)  # [T, R, K]
        per_class = _nanmean(precision.transpose(2, 0, 1).reshape(len(category_ids), -1), axis=1)
        overall = _nanmean(precision)
        table[area] = np.append(per_class, overall)
        if area == "all":
            table["AP50"] = np.append(_nanmean(precision[t50].T, axis=1), _nanmean(precision[t50]))
    return table
