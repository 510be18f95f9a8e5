"""COCO bbox evaluation with pycocotools (or faster_coco_eval), with loud hints instead of a silent
zero mAP.

Conventions:
- Predictions are per image: `{image_id: dict(boxes=[K, 4] xyxy original-image pixels, scores=[K],
  labels=[K] contiguous)}`, numpy arrays or torch tensors (torch is never imported here).
- `category_ids[label]` is the COCO category id of contiguous label `label` (a source's
  `category_ids`).
- Every image of the ground truth is evaluated (pycocotools' default `params.imgIds`), so an image
  without detections counts as missed, like cocoapi's demo over its 100 images.
- `stats` are pycocotools' 12 numbers at full precision (-1 where a range has no ground truth). When
  there is nothing to evaluate (no detections, or a ground truth with zero annotations) COCOeval is
  not run: stats are all 0.0 and the reason is in `warnings` (and logged).
- `per_class_ap[name]` is AP@[.5:.95] (area all, 100 detections) and is NaN for a class without
  ground truth, which pycocotools leaves undefined. Every class of `class_names` is present.
- The evaluator logs its warnings; the summary and the per-class table are returned, never logged
  at INFO: the caller reports them once (training: one line and the table per validation).
- `backend` picks the COCOeval implementation (`nanodet_ghost.evaluation.backends`): pycocotools,
  the reference, or faster_coco_eval, which gives the same numbers faster.
"""
from __future__ import annotations

import contextlib
import copy
import io
import logging
import math
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np
from pycocotools.coco import COCO

from nanodet_ghost.evaluation.backends import DEFAULT_BACKEND, build_backend
from nanodet_ghost.evaluation.conversion import Prediction, predictions_to_coco_results
from nanodet_ghost.evaluation.jsonio import (
    EvaluationInputError,
    PathLike,
    check_coco_gt,
    check_coco_results,
    load_coco_gt_file,
    load_coco_results_file,
)
from nanodet_ghost.evaluation.unreadable import refuse_unreadable, without_images

logger = logging.getLogger(__name__)

STAT_NAMES: Tuple[str, ...] = (
    "mAP", "AP50", "AP75", "AP_small", "AP_medium", "AP_large",
    "AR1", "AR10", "AR100", "AR_small", "AR_medium", "AR_large",
)
_STAT_LABELS = (  # pycocotools' summarize() wording for the default parameters
    "Average Precision  (AP) @[ IoU=0.50:0.95 | area=   all | maxDets=100 ]",
    "Average Precision  (AP) @[ IoU=0.50      | area=   all | maxDets=100 ]",
    "Average Precision  (AP) @[ IoU=0.75      | area=   all | maxDets=100 ]",
    "Average Precision  (AP) @[ IoU=0.50:0.95 | area= small | maxDets=100 ]",
    "Average Precision  (AP) @[ IoU=0.50:0.95 | area=medium | maxDets=100 ]",
    "Average Precision  (AP) @[ IoU=0.50:0.95 | area= large | maxDets=100 ]",
    "Average Recall     (AR) @[ IoU=0.50:0.95 | area=   all | maxDets=  1 ]",
    "Average Recall     (AR) @[ IoU=0.50:0.95 | area=   all | maxDets= 10 ]",
    "Average Recall     (AR) @[ IoU=0.50:0.95 | area=   all | maxDets=100 ]",
    "Average Recall     (AR) @[ IoU=0.50:0.95 | area= small | maxDets=100 ]",
    "Average Recall     (AR) @[ IoU=0.50:0.95 | area=medium | maxDets=100 ]",
    "Average Recall     (AR) @[ IoU=0.50:0.95 | area= large | maxDets=100 ]",
)

GroundTruth = Union[COCO, Mapping[str, Any], PathLike]
_Row = Tuple[str, float, float, float, int]  # name, AP, AP50, AP75, number of GT boxes


@dataclass(frozen=True)
class CocoEvalResult:
    """Outcome of one COCO bbox evaluation.

    Attributes:
        stats: the 12 COCOeval stats (order of `STAT_NAMES`), Python floats at full precision.
        per_class_ap: class name -> AP@[.5:.95]; NaN where the class has no ground truth.
        summary: the text COCOeval.summarize() prints.
        table: per-class table (AP, AP50, AP75, number of ground-truth boxes).
        warnings: what looked wrong (empty predictions, unknown ids, ...), also logged.
        num_images: images in the ground truth (all are evaluated).
        num_detections: detections scored.
        coco_eval: the accumulated `COCOeval` (its `eval` arrays, `evalImgs` and `params`) when
            asked for with `keep_eval=True` (the plots of `nanodet_ghost.analysis` read it);
            None otherwise, or when COCOeval was not run. With the faster_coco_eval backend it is
            a `COCOeval_faster`: the same `eval` arrays and `params`, but no `evalImgs`.
    """

    stats: Tuple[float, ...]
    per_class_ap: Dict[str, float]
    summary: str = ""
    table: str = ""
    warnings: Tuple[str, ...] = ()
    num_images: int = 0
    num_detections: int = 0
    coco_eval: Optional[Any] = field(default=None, repr=False, compare=False)

    @property
    def map(self) -> float:
        """AP@[.5:.95], the headline number."""
        return self.stats[0]

    def metrics(self, prefix: str = "") -> Dict[str, float]:
        """`{prefix + name: value}` for the 12 stats, e.g. for `LightningModule.log_dict`."""
        return {f"{prefix}{name}": float(v) for name, v in zip(STAT_NAMES, self.stats)}


def _sanitize_gt(gt: Dict[str, Any]) -> Dict[str, Any]:
    """Fill what COCOeval needs but a hand-made ground truth may lack (on a copy)."""
    anns = gt["annotations"]
    for ann in anns:
        ann.setdefault("iscrowd", 0)
        if "area" not in ann:
            ann["area"] = float(ann["bbox"][2]) * float(ann["bbox"][3])
    ids = [ann.get("id") for ann in anns]
    # pycocotools treats a matched ground-truth id of 0 as "unmatched": renumber non-positive ids.
    if any(not isinstance(i, int) or i <= 0 for i in ids) or len(set(ids)) != len(ids):
        logger.debug("ground truth annotation ids renumbered 1..%d (missing, <= 0 or repeated)",
                     len(anns))
        for i, ann in enumerate(anns):
            ann["id"] = i + 1
    return gt


def _build_coco(gt: GroundTruth) -> Tuple[COCO, str]:
    """A pycocotools COCO from a COCO object, a dict (copied) or a json path; and its name."""
    if isinstance(gt, COCO):
        return gt, "ground truth"
    if isinstance(gt, Mapping):
        data, name = copy.deepcopy(dict(check_coco_gt(dict(gt)))), "ground truth"
    else:
        data, name = load_coco_gt_file(gt), f"ground-truth file {gt}"
    coco = COCO()
    coco.dataset = _sanitize_gt(data)
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
    return coco, name


def _preview(ids: Any, n: int = 5) -> str:
    items = list(ids)
    try:
        items.sort()
    except TypeError:
        pass
    more = f", ... ({len(items)} in all)" if len(items) > n else ""
    return "[" + ", ".join(repr(i) for i in items[:n]) + more + "]"


def _fmt(x: float) -> str:
    return "    -" if math.isnan(x) else f"{x:.3f}"


class CocoEvaluator:
    """COCO bbox evaluator over a fixed ground truth (build once, call every validation epoch).

    Args:
        gt: a COCO instances dict (e.g. a source's `to_coco()`, copied, never modified), a path to a
            json file, or a `pycocotools.coco.COCO`.
        category_ids: contiguous label -> COCO category id; default: the ground truth's category
            ids, sorted.
        class_names: names for `category_ids`; default: the ground truth's category names.
        strict: predictions on image ids absent from the ground truth raise `EvaluationInputError`;
            with `strict=False` they are dropped with a logged error.
        strict_images: images that could not be read (`unreadable=` of `evaluate`) raise
            `EvaluationInputError`; by default they are dropped with their ground truth.
        backend: "pycocotools" (the reference) or "faster_coco_eval" (`evaluation.backend`).

    Raises:
        EvaluationInputError: unreadable / malformed ground truth.
        ValueError: `category_ids` and `class_names` differ in length, or an unknown `backend`.
        MissingRuntimeError: `backend="faster_coco_eval"` without faster_coco_eval installed.
    """

    def __init__(
        self,
        gt: GroundTruth,
        category_ids: Optional[Sequence[int]] = None,
        class_names: Optional[Sequence[str]] = None,
        strict: bool = True,
        strict_images: bool = False,
        backend: str = DEFAULT_BACKEND,
    ) -> None:
        self.backend = build_backend(str(backend))
        self.coco_gt, self.gt_name = _build_coco(gt)
        self._backend_gt: Any = None  # the backend's index of coco_gt, built on first use
        self.strict = strict
        self.strict_images = strict_images
        categories = self.coco_gt.dataset["categories"]
        gt_names = {int(c["id"]): str(c.get("name", c["id"])) for c in categories}
        if category_ids is None:
            category_ids = sorted(gt_names)
        self.category_ids = [int(c) for c in category_ids]
        if class_names is None:
            class_names = [gt_names.get(c, str(c)) for c in self.category_ids]
        if len(class_names) != len(self.category_ids):
            raise ValueError(
                f"{len(class_names)} class names for {len(self.category_ids)} category ids"
            )
        self.class_names = [str(n) for n in class_names]
        missing = [c for c in self.category_ids if c not in gt_names]
        if missing:
            logger.warning("category ids %s are not categories of the %s: their AP is NaN",
                           _preview(missing), self.gt_name)
        self._img_ids = set(self.coco_gt.getImgIds())
        self._num_gt: Dict[int, int] = {}
        for ann in self.coco_gt.dataset["annotations"]:
            if not ann.get("iscrowd", 0):
                cid = int(ann["category_id"])
                self._num_gt[cid] = self._num_gt.get(cid, 0) + 1

    def evaluate(self, predictions: Mapping[Any, Prediction],
                 unreadable: Optional[Mapping[int, str]] = None) -> CocoEvalResult:
        """Score per-image predictions (see `predictions_to_coco_results`); `unreadable` as in
        `evaluate_results`."""
        results = predictions_to_coco_results(predictions, self.category_ids)
        return self.evaluate_results(results, source="predictions", unreadable=unreadable)

    def without_images(self, unreadable: Mapping[int, str]) -> "CocoEvaluator":
        """An evaluator whose ground truth lacks the images of `unreadable` (`{image_id:
        "file_name: problem"}`) and their boxes; logs one line. Raises `EvaluationInputError`
        with `strict_images`."""
        if self.strict_images:
            refuse_unreadable(unreadable)
        gt, _, _ = without_images(self.coco_gt.dataset, unreadable)
        return CocoEvaluator(gt, self.category_ids, self.class_names, strict=self.strict,
                             backend=self.backend.name)

    def evaluate_results(
        self, results: Sequence[Mapping[str, Any]], source: str = "results", *,
        keep_eval: bool = False, unreadable: Optional[Mapping[int, str]] = None,
    ) -> CocoEvalResult:
        """Score COCO bbox results (`[{image_id, category_id, bbox xywh, score}]`).

        Args:
            results: the detections; not modified.
            source: how messages name them (e.g. "results file R.json").
            keep_eval: keep the `COCOeval` in `result.coco_eval` (off by default: its per-image
                records are large on a big validation set).
            unreadable: `{image_id: "file_name: problem"}` of images that could not be read;
                they and their ground truth are left out of the score (`without_images`).

        Raises:
            EvaluationInputError: malformed results, or (strict) image ids unknown to the ground
                truth; the message names `source`, the ground truth and example ids.
        """
        if unreadable:
            return self.without_images(unreadable).evaluate_results(
                results, source, keep_eval=keep_eval)
        results = check_coco_results(list(results), source)
        warns: List[str] = []

        def warn(msg: str, level: int = logging.WARNING) -> None:
            logger.log(level, msg)
            warns.append(msg)

        if not self.coco_gt.dataset["annotations"]:
            warn(f"the {self.gt_name} has zero annotations ({len(self._img_ids)} images): mAP is "
                 "undefined, stats set to 0; check the annotation file, the class list and the "
                 "dataset's to_coco()", logging.ERROR)
            return self._empty(warns, len(results))
        if not results:
            warn(f"{source}: no detections at all on {len(self._img_ids)} images: stats set to 0 "
                 "(is the score threshold too high, or the model untrained?)")
            return self._empty(warns, 0)
        results = self._check_image_ids(results, source, warn)
        if not results:
            return self._empty(warns, 0)
        self._check_category_ids(results, source, warn)

        if self._backend_gt is None:
            self._backend_gt = self.backend.ground_truth(self.coco_gt)
        dets = [dict(r, bbox=[float(v) for v in r["bbox"]]) for r in results]  # loadRes mutates
        coco_eval, summary = self.backend.run(self._backend_gt, dets)
        stats = tuple(float(s) for s in coco_eval.stats)
        if stats[0] <= 0.0:
            warn(f"mAP is {stats[0]} with {len(results)} detections: check that boxes are xyxy "
                 "in original-image pixels, labels map to the right category ids and image ids "
                 "are the ground truth's")
        per_class, rows = self._per_class(coco_eval)
        table = self._table(rows)
        # The summary and the table are the caller's to report, once, at its level: a line per
        # validation in training, the whole summary in a final evaluation or tools/test.py.
        logger.debug("COCO bbox evaluation of %d images, %d detections: mAP %.4f", len(self._img_ids),
                     len(results), stats[0])
        return CocoEvalResult(stats, per_class, summary, table, tuple(warns),
                              len(self._img_ids), len(results),
                              coco_eval if keep_eval else None)

    def _check_image_ids(
        self, results: List[Dict[str, Any]], source: str, warn: Callable[..., None]
    ) -> List[Dict[str, Any]]:
        pred_ids = {r["image_id"] for r in results}
        unknown = {i for i in pred_ids if i not in self._img_ids}
        if not unknown:
            return results
        msg = (f"{source}: {len(unknown)} of {len(pred_ids)} image ids are not in the "
               f"{self.gt_name}: {_preview(unknown)}; its image ids are {_preview(self._img_ids)}")
        if unknown == pred_ids:
            msg += (" (none match: predictions must be keyed by the ground truth's image id, "
                    "meta['image_id'] from the same annotation file)")
        if self.strict:
            raise EvaluationInputError(msg)
        warn(msg + "; those detections are dropped", logging.ERROR)
        return [r for r in results if r["image_id"] in self._img_ids]

    def _check_category_ids(
        self, results: List[Dict[str, Any]], source: str, warn: Callable[..., None]
    ) -> None:
        gt_cats = set(self.coco_gt.getCatIds())
        pred_cats = {r["category_id"] for r in results}
        unknown = {c for c in pred_cats if c not in gt_cats}
        if unknown:
            level = logging.ERROR if unknown == pred_cats else logging.WARNING
            warn(f"{source}: category ids {_preview(unknown)} are not categories of the "
                 f"{self.gt_name} (ids {_preview(gt_cats)}); COCOeval ignores those detections "
                 "(are contiguous labels mapped through category_ids?)", level)

    def _per_class(self, coco_eval: Any) -> Tuple[Dict[str, float], List[_Row]]:
        precision = coco_eval.eval["precision"]  # [T iou, R recall, K cat, A area, M maxDets]
        iou_thrs = coco_eval.params.iouThrs
        t50 = int(np.argmin(np.abs(iou_thrs - 0.5)))
        t75 = int(np.argmin(np.abs(iou_thrs - 0.75)))
        cat_index = {int(c): k for k, c in enumerate(coco_eval.params.catIds)}

        def mean_valid(p: np.ndarray) -> float:
            valid = p[p > -1]
            return float(np.mean(valid)) if valid.size else math.nan

        per_class: Dict[str, float] = {}
        rows = []
        for cid, name in zip(self.category_ids, self.class_names):
            k = cat_index.get(cid)
            if k is None or self._num_gt.get(cid, 0) == 0:
                ap = ap50 = ap75 = math.nan
            else:
                ap = mean_valid(precision[:, :, k, 0, -1])
                ap50 = mean_valid(precision[t50, :, k, 0, -1])
                ap75 = mean_valid(precision[t75, :, k, 0, -1])
            per_class[name] = ap
            rows.append((name, ap, ap50, ap75, self._num_gt.get(cid, 0)))
        return per_class, rows

    @staticmethod
    def _table(rows: Sequence[_Row]) -> str:
        width = max([5] + [len(r[0]) for r in rows])
        lines = [f"{'class':<{width}}     AP   AP50   AP75    #gt"]
        for name, ap, ap50, ap75, n in rows:
            lines.append(f"{name:<{width}}  {_fmt(ap)}  {_fmt(ap50)}  {_fmt(ap75)}  {n:>5d}")
        return "\n".join(lines)

    def _empty(self, warns: List[str], num_detections: int) -> CocoEvalResult:
        stats = tuple(0.0 for _ in STAT_NAMES)
        rows: List[_Row] = []
        for cid, name in zip(self.category_ids, self.class_names):
            n = self._num_gt.get(cid, 0)
            ap = 0.0 if n else math.nan
            rows.append((name, ap, ap, ap, n))
        summary = "\n".join(f" {label} = {0.0:0.3f}" for label in _STAT_LABELS)
        return CocoEvalResult(stats, {r[0]: r[1] for r in rows}, summary, self._table(rows),
                              tuple(warns), len(self._img_ids), num_detections)


def evaluate(
    gt: GroundTruth,
    predictions: Mapping[Any, Prediction],
    category_ids: Optional[Sequence[int]] = None,
    class_names: Optional[Sequence[str]] = None,
    *,
    strict: bool = True,
    backend: str = DEFAULT_BACKEND,
) -> CocoEvalResult:
    """One-shot `CocoEvaluator(gt, category_ids, class_names, strict, backend=backend)
    .evaluate(predictions)`."""
    return CocoEvaluator(gt, category_ids, class_names, strict=strict,
                         backend=backend).evaluate(predictions)


def evaluate_results_file(
    ann_file: PathLike, results_file: PathLike, *, strict: bool = True,
    backend: str = DEFAULT_BACKEND,
) -> CocoEvalResult:
    """Score an existing COCO bbox results json against a COCO instances json (no model).

    Raises:
        EvaluationInputError: missing or invalid files, or results on unknown image ids (strict);
            one-line messages naming the file.
    """
    evaluator = CocoEvaluator(ann_file, strict=strict, backend=backend)
    results = load_coco_results_file(results_file)
    return evaluator.evaluate_results(results, source=f"results file {results_file}")
