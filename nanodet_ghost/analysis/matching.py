"""One-to-one greedy matching of detections to ground truth, as COCO matches them, and the IoU it uses.

Detections are visited in the order given (callers sort them by decreasing score); each takes the
still unmatched ground-truth box it overlaps most, among those it may match, at IoU >= `iou_thr`.
A later detection of an already matched box matches nothing (a duplicate). IoU is pycocotools'
`mask.iou` on xywh boxes, the function COCOeval uses, so this needs no torch.
"""
from __future__ import annotations

from typing import Optional

import numpy as np
from pycocotools import mask as mask_utils

UNMATCHED = -1


def iou_xywh(dets: np.ndarray, gts: np.ndarray, crowd: bool) -> np.ndarray:
    """[D, G] IoU of xywh boxes (crowd: intersection over the detection's area)."""
    if len(dets) == 0 or len(gts) == 0:
        return np.zeros((len(dets), len(gts)))
    return np.asarray(mask_utils.iou(dets, gts, [int(crowd)] * len(gts)), np.float64).reshape(
        len(dets), len(gts))


def greedy_match(ious: np.ndarray, iou_thr: float, allowed: Optional[np.ndarray] = None) -> np.ndarray:
    """int64 [D]: the ground-truth index each detection matched, or `UNMATCHED`.

    Args:
        ious: float [D, G], rows in the order the detections are visited (by decreasing score).
        iou_thr: the overlap a detection needs to match a box.
        allowed: bool [D, G], which boxes each detection may match (e.g. only its own class);
            default all. Ties in IoU go to the lower ground-truth index.
    """
    ious = np.asarray(ious, np.float64)
    if ious.ndim != 2:
        raise ValueError(f"ious must be [D, G], got shape {ious.shape}")
    if allowed is not None and np.shape(allowed) != ious.shape:
        raise ValueError(f"allowed has shape {np.shape(allowed)}, ious {ious.shape}")
    matches = np.full(ious.shape[0], UNMATCHED, np.int64)
    taken = np.zeros(ious.shape[1], bool)
    for d in range(ious.shape[0]):
        ok = ~taken & (ious[d] >= iou_thr)
        if allowed is not None:
            ok &= allowed[d]
        if ok.any():
            g = int(np.argmax(np.where(ok, ious[d], -np.inf)))
            matches[d], taken[g] = g, True
    return matches
