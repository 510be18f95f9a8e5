"""Detection confusion matrix, laid out as mmdetection's `tools/analysis_tools/confusion_matrix.py`.

Rows are ground-truth classes and columns predicted classes, each followed by "background": row
`C` counts false positives (a detection that matched no ground truth), column `C` missed ground
truth. Unlike mmdetection, which lets every detection above the IoU threshold count for a GT box,
matching here is one-to-one (`analysis.matching.greedy_match`): detections above the score threshold
are visited by decreasing score and each takes the unmatched GT box (of any class) it overlaps most
at IoU >= `iou_thr`; a second detection of an already matched box is a false positive (a duplicate). A detection that
matches no box but covers a crowd region (COCO `iscrowd`) is ignored, as COCO AP ignores it.

IoU is pycocotools' `mask.iou` on xywh boxes, the function COCOeval uses (crowd regions by the
fraction of the detection they cover), so this module needs no torch.
"""
from __future__ import annotations

import logging
from collections import defaultdict
from typing import Any, Dict, List, Mapping, Sequence

import numpy as np

from nanodet_ghost.analysis.matching import UNMATCHED, greedy_match, iou_xywh

logger = logging.getLogger(__name__)


def _xywh(items: Sequence[Mapping[str, Any]]) -> np.ndarray:
    return np.asarray([item["bbox"] for item in items], np.float64).reshape(-1, 4)


def confusion_matrix(
    gt: Mapping[str, Any],
    results: Sequence[Mapping[str, Any]],
    category_ids: Sequence[int],
    score_thr: float = 0.3,
    iou_thr: float = 0.5,
) -> np.ndarray:
    """Count detections against ground truth, one image at a time.

    Args:
        gt: COCO instances dict (`images`, `annotations` with `bbox` xywh, `category_id`,
            optional `iscrowd`).
        results: COCO bbox results `[{image_id, category_id, bbox xywh, score}]`.
        category_ids: label -> COCO category id; fixes the row / column order.
        score_thr: detections scoring below it are left out.
        iou_thr: the overlap a detection needs to match a box.

    Returns:
        int64 [C + 1, C + 1]: `m[i, j]` = GT class i (C: background) predicted as j (C: nothing).
        Ground truth and detections of categories outside `category_ids` are left out (counted in
        a logged warning).
    """
    label_of = {int(c): k for k, c in enumerate(category_ids)}
    background = len(category_ids)
    matrix = np.zeros((background + 1, background + 1), np.int64)
    gts: Dict[Any, List[Mapping[str, Any]]] = defaultdict(list)
    crowds: Dict[Any, List[Mapping[str, Any]]] = defaultdict(list)
    dets: Dict[Any, List[Mapping[str, Any]]] = defaultdict(list)
    unknown = 0
    for ann in gt.get("annotations", []):
        if int(ann["category_id"]) not in label_of:
            unknown += 1
        elif ann.get("iscrowd", 0):
            crowds[ann["image_id"]].append(ann)
        else:
            gts[ann["image_id"]].append(ann)
    for det in results:
        if int(det["category_id"]) not in label_of:
            unknown += 1
        elif float(det["score"]) >= score_thr:
            dets[det["image_id"]].append(det)
    if unknown:
        logger.warning("confusion matrix: %d boxes / detections of categories outside %s left out",
                       unknown, list(category_ids))
    for image_id in set(gts) | set(dets):
        image_gts, image_dets = gts.get(image_id, []), dets.get(image_id, [])
        image_dets = sorted(image_dets, key=lambda d: -float(d["score"]))  # stable on ties
        gt_labels = [label_of[int(a["category_id"])] for a in image_gts]
        ious = iou_xywh(_xywh(image_dets), _xywh(image_gts), crowd=False)
        crowd_ious = iou_xywh(_xywh(image_dets), _xywh(crowds.get(image_id, [])), crowd=True)
        matches = greedy_match(ious, iou_thr)
        for d, (det, g) in enumerate(zip(image_dets, matches)):
            det_label = label_of[int(det["category_id"])]
            if g != UNMATCHED:
                matrix[gt_labels[g], det_label] += 1
            elif crowd_ious.shape[1] == 0 or crowd_ious[d].max() < iou_thr:
                matrix[background, det_label] += 1
        for g in sorted(set(range(len(image_gts))) - set(matches.tolist())):
            matrix[gt_labels[g], background] += 1
    return matrix


def normalize_rows(matrix: np.ndarray) -> np.ndarray:
    """Each row divided by its sum (the share of a GT class that went to each column); all-zero
    rows stay zero."""
    matrix = np.asarray(matrix, np.float64)
    sums = matrix.sum(axis=1, keepdims=True)
    return np.divide(matrix, sums, out=np.zeros_like(matrix), where=sums > 0)
