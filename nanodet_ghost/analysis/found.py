"""Which ground-truth objects a prediction found, and a picture of it: the quickstart's visible check.

An object counts as found when a detection of its class, scoring at least `score_thr`, overlaps it
at IoU >= `iou_thr`. Matching is one-to-one, as in COCO (`analysis.matching.greedy_match`, as the
confusion matrix matches): detections are visited by decreasing score and each takes the unmatched
object of its class that it overlaps most. IoU is pycocotools', so this needs no torch.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, List, Sequence

import cv2
import numpy as np

from nanodet_ghost.analysis import drawing
from nanodet_ghost.analysis.matching import UNMATCHED, greedy_match, iou_xywh
from nanodet_ghost.inference.visualize import make_palette

MISSED_COLOR = (255, 255, 255)


@dataclass
class FoundImage:
    """One image's ground truth and detections (xyxy, its own pixels) and `found` [G] bool."""

    name: str
    image: np.ndarray
    gt_boxes: np.ndarray
    gt_labels: np.ndarray
    boxes: np.ndarray
    scores: np.ndarray
    labels: np.ndarray
    found: np.ndarray


def _xywh(boxes: np.ndarray) -> np.ndarray:
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    return np.concatenate([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]], axis=1)


def found_objects(gt_boxes: np.ndarray, gt_labels: np.ndarray, boxes: np.ndarray, scores: np.ndarray,
                  labels: np.ndarray, iou_thr: float = 0.5, score_thr: float = 0.3) -> np.ndarray:
    """bool [G]: which ground-truth boxes (xyxy [G, 4], labels [G]) a detection found.

    Args:
        boxes, scores, labels: detections, xyxy [D, 4], [D], [D].
    """
    gt_labels = np.asarray(gt_labels, np.int64).reshape(-1)
    labels = np.asarray(labels, np.int64).reshape(-1)
    scores = np.asarray(scores, np.float64).reshape(-1)
    found = np.zeros(len(gt_labels), bool)
    keep = np.flatnonzero(scores >= score_thr)
    keep = keep[np.argsort(-scores[keep], kind="stable")]
    if not len(keep) or not len(gt_labels):
        return found
    iou = iou_xywh(_xywh(np.asarray(boxes)[keep]), _xywh(gt_boxes), crowd=False)
    matches = greedy_match(iou, iou_thr, allowed=labels[keep, None] == gt_labels[None, :])
    found[matches[matches != UNMATCHED]] = True
    return found


def find_in_first_images(source: Any, predictor: Any, num_images: int = 4, iou_thr: float = 0.5,
                         score_thr: float = 0.3) -> List[FoundImage]:
    """Predictions on the first `num_images` images of a dataset source (not chosen ones), each with
    the objects they found.

    Args:
        source: a dataset source (`load_image(i)`, `get_annotation(i)`).
        predictor: anything with `predict(image, score_thr=...)` returning `Detections`.
    """
    items = []
    for index in range(min(num_images, len(source))):
        ann, img = source.get_annotation(index), source.load_image(index)
        dets = predictor.predict(img, score_thr=score_thr)
        found = found_objects(ann["boxes"], ann["labels"], dets.boxes, dets.scores, dets.labels,
                              iou_thr=iou_thr, score_thr=score_thr)
        items.append(FoundImage(str(ann["file_name"]), img, ann["boxes"], ann["labels"], dets.boxes,
                                dets.scores, dets.labels, found))
    return items


def found_cell(item: FoundImage, class_names: Sequence[str], score_thr: float) -> np.ndarray:
    """The image with its detections >= `score_thr` and the missed objects outlined in white,
    captioned "name: found k of n"."""
    fitted, matrix = drawing.fit_to_cell(item.image)
    missed = drawing.map_boxes(np.asarray(item.gt_boxes)[~item.found], matrix)
    for x1, y1, x2, y2 in np.round(missed).astype(int):
        cv2.rectangle(fitted, (x1, y1), (x2, y2), MISSED_COLOR, 1, cv2.LINE_4)
    keep = np.asarray(item.scores) >= score_thr
    cell = drawing.draw_labelled_boxes(fitted, drawing.map_boxes(item.boxes, matrix)[keep], item.labels[keep],
                                       class_names, scores=item.scores[keep],
                                       palette=make_palette(len(class_names)))
    return drawing.caption(cell, f"{item.name}: found {int(item.found.sum())} of {len(item.found)}"
                                 " (missed: white)")


def found_grid(items: List[FoundImage], class_names: Sequence[str], score_thr: float, cols: int = 2) -> np.ndarray:
    """`found_cell` of each image, `cols` to a row."""
    return drawing.tile_images([found_cell(item, class_names, score_thr) for item in items], cols=cols)
