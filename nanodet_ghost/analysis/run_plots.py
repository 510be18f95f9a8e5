"""Every picture of a run or of an evaluation, in one call.

- `make_eval_plots`: from a COCO ground truth and COCO results: pr_curve.png, f1_curve.png,
  p_curve.png, r_curve.png, confusion_matrix.png, per_class_ap.png, ap_by_size.png, and
  val_predictions.jpg (test_predictions.jpg for the test split) when the images are at hand.
- `make_split_plots`: the same for a config's split and a results file (`tools/test.py --plots`).
- `make_run_plots`: after training, in `save_dir/plots/`: results.png from the CSV logs, and the
  evaluation plots of the final evaluation's `results_val.json`. (train_batch.jpg is written
  during training by `nanodet_ghost.trainer.plot_callbacks`.)

The confusion matrix and the prediction grid keep detections scoring at least the threshold of
the best mean F1 (`ConfidenceCurves.best_threshold`), or `DEFAULT_SCORE_THR` when the model finds
nothing right at any threshold.
"""
from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Union

import numpy as np

from nanodet_ghost.analysis import drawing, figures
from nanodet_ghost.analysis.coco_curves import ap_table, confidence_curves, pr_curves
from nanodet_ghost.analysis.confusion import confusion_matrix
from nanodet_ghost.analysis.training_log import read_training_log
from nanodet_ghost.data.image_io import ImageReadError
from nanodet_ghost.evaluation.coco import CocoEvaluator
from nanodet_ghost.evaluation.jsonio import load_coco_gt_file, load_coco_results_file

logger = logging.getLogger(__name__)

PathLike = Union[str, Path]
PLOTS_DIR = "plots"
DEFAULT_SCORE_THR = 0.3
NUM_PREDICTION_IMAGES = 8
PAIRS_PER_ROW = 2
CONFIDENCE_FILES = {"f1": "f1_curve.png", "precision": "p_curve.png", "recall": "r_curve.png"}


def _predictions_by_image(results: Sequence[Mapping[str, Any]], category_ids: Sequence[int]
                          ) -> Dict[int, Dict[str, np.ndarray]]:
    """image id -> dict(boxes [K, 4] xyxy, scores [K], labels [K]) from COCO results."""
    label_of = {int(c): k for k, c in enumerate(category_ids)}
    grouped: Dict[int, List[Mapping[str, Any]]] = {}
    for r in results:
        if int(r["category_id"]) in label_of:
            grouped.setdefault(int(r["image_id"]), []).append(r)
    out = {}
    for image_id, dets in grouped.items():
        xywh = np.asarray([d["bbox"] for d in dets], np.float64).reshape(-1, 4)
        out[image_id] = dict(boxes=np.concatenate([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], axis=1),
                             scores=np.asarray([d["score"] for d in dets], np.float32),
                             labels=np.asarray([label_of[int(d["category_id"])] for d in dets], np.int64))
    return out


def predictions_picture(source: Any, results: Sequence[Mapping[str, Any]], class_names: Sequence[str],
                        score_thr: float, num_images: int = NUM_PREDICTION_IMAGES) -> np.ndarray:
    """The first `num_images` images of a dataset source, ground truth beside predictions.

    Args:
        source: a dataset source (`load_image(i)`, `get_annotation(i)`, `category_ids`).
        results: COCO results on the source's image ids (original pixels).
    Returns:
        uint8 grid of `PAIRS_PER_ROW` (ground truth, predictions) pairs per row.
    """
    by_image = _predictions_by_image(results, source.category_ids)
    empty = dict(boxes=np.zeros((0, 4)), scores=np.zeros(0, np.float32), labels=np.zeros(0, np.int64))
    pairs = []
    for index in range(len(source)):
        if len(pairs) == num_images:
            break
        ann = source.get_annotation(index)
        try:
            img = source.load_image(index)
        except ImageReadError as exc:
            logger.warning("prediction grid: %s left out (%s)", ann["file_name"], exc)
            continue
        pred = by_image.get(int(ann["image_id"]), empty)
        pairs.append(drawing.gt_and_predictions(
            img, ann["boxes"], ann["labels"], pred["boxes"], pred["scores"], pred["labels"],
            class_names, score_thr, title=str(ann["file_name"])))
    if not pairs:
        raise ValueError("no readable image to draw in the prediction grid")
    return drawing.pairs_grid(pairs, PAIRS_PER_ROW)


def _save(fig: Any, path: Path, files: List[Path]) -> None:
    files.append(figures.save_figure(fig, path))


def make_eval_plots(gt: Mapping[str, Any], results: Sequence[Mapping[str, Any]], out_dir: PathLike, *,
                    category_ids: Optional[Sequence[int]] = None,
                    class_names: Optional[Sequence[str]] = None,
                    source: Any = None, score_thr: Optional[float] = None,
                    predictions_file: str = "val_predictions.jpg") -> List[Path]:
    """Write the evaluation figures of `results` against `gt` into `out_dir`.

    Args:
        gt: COCO instances dict. results: COCO bbox results (xywh, original pixels).
        category_ids, class_names: label order and names (default: the GT's categories).
        source: the dataset source of `gt`; when given, `predictions_file` is drawn from it.
        score_thr: threshold of the confusion matrix and the prediction grid (default: the
            best mean F1's).
    Returns:
        the files written.
    """
    out_dir = Path(out_dir)
    evaluator = CocoEvaluator(gt, category_ids, class_names, strict=False)
    category_ids, class_names = evaluator.category_ids, evaluator.class_names
    result = evaluator.evaluate_results(results, source="results to plot", keep_eval=True)
    files: List[Path] = []
    coco_eval = result.coco_eval
    if coco_eval is None:  # nothing to evaluate: say why in place of each curve
        why = "; ".join(result.warnings) or "COCOeval was not run"
        for name in ("pr_curve.png", *CONFIDENCE_FILES.values(), "per_class_ap.png", "ap_by_size.png"):
            _save(figures.message_figure(name[:-4], why), out_dir / name, files)
        best = None
    else:
        _save(figures.pr_curve_figure(pr_curves(coco_eval, category_ids), class_names),
              out_dir / "pr_curve.png", files)
        conf = confidence_curves(coco_eval, category_ids)
        for which, name in CONFIDENCE_FILES.items():
            _save(figures.confidence_figure(conf, class_names, which), out_dir / name, files)
        table = ap_table(coco_eval, category_ids)
        _save(figures.per_class_ap_figure(table, class_names), out_dir / "per_class_ap.png", files)
        _save(figures.ap_by_size_figure(table, class_names, result.stats), out_dir / "ap_by_size.png", files)
        best = conf.best_threshold if conf.best_f1 > 0 else None
    if score_thr is None:
        score_thr = best if best is not None else DEFAULT_SCORE_THR
    matrix = confusion_matrix(gt, results, category_ids, score_thr=score_thr)
    _save(figures.confusion_matrix_figure(matrix, class_names, score_thr), out_dir / "confusion_matrix.png", files)
    if source is not None:
        path = out_dir / predictions_file
        drawing.write_image(path, predictions_picture(source, results, class_names, score_thr))
        files.append(path)
    return files


def make_split_plots(cfg: Any, split: str, results_file: PathLike, out_dir: PathLike) -> List[Path]:
    """Evaluation figures of a results file on the config's `data.<split>`, its images drawn in
    `<split>_predictions.jpg`."""
    from nanodet_ghost.data.loader import build_dataset

    source = build_dataset(cfg.data, split).source
    results = load_coco_results_file(results_file)
    return make_eval_plots(source.to_coco(), results, out_dir, category_ids=source.category_ids,
                           class_names=source.class_names, source=source,
                           predictions_file=f"{split}_predictions.jpg")


def make_file_plots(ann_file: PathLike, results_file: PathLike, out_dir: PathLike) -> List[Path]:
    """Evaluation figures of a results file against a COCO json (no images: no prediction grid)."""
    return make_eval_plots(load_coco_gt_file(ann_file), load_coco_results_file(results_file), out_dir)


def make_run_plots(save_dir: PathLike, cfg: Any, split: str = "val") -> List[Path]:
    """The figures of a finished run, in `save_dir/plots/`.

    results.png always (from the CSV logs); the evaluation figures when the final evaluation
    wrote `save_dir/results_<split>.json` (it is skipped with `--no-final-eval`).
    """
    start = time.perf_counter()
    save_dir = Path(save_dir)
    out_dir = save_dir / PLOTS_DIR
    files: List[Path] = []
    _save(figures.results_figure(read_training_log(save_dir)), out_dir / "results.png", files)
    results_file = save_dir / f"results_{split}.json"
    if results_file.is_file():
        files += make_split_plots(cfg, split, results_file, out_dir)
    else:
        logger.info("no %s: evaluation plots skipped (the final evaluation writes it)", results_file)
    logger.info("%d plots written to %s in %.1f s", len(files), out_dir, time.perf_counter() - start)
    return files
