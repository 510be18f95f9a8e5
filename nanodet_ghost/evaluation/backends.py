"""The COCOeval implementations `CocoEvaluator` can run (`evaluation.backend` in a config).

- "pycocotools" (default): the reference implementation, in Python.
- "faster_coco_eval": PyPI `faster-coco-eval` (`pip install 'nanodet_ghost[fast-eval]'`), the same
  matching and accumulation in C++. Its 12 stats and its `eval["precision"]`, `eval["recall"]`
  and `eval["scores"]` arrays ([T, R, K, A, M], [T, K, A, M], [T, R, K, A, M]) are pycocotools'
  (tests/evaluation/test_eval_backends.py), but it keeps no per-image records: its `evalImgs` is
  empty, so what reads them (`analysis.coco_curves.matched_detections`) needs pycocotools.

A backend takes the evaluator's pycocotools index of the ground truth once (`ground_truth`) and
scores bbox detections against what that returned (`run`), giving the accumulated and summarized
evaluation object and the summary text.
"""
from __future__ import annotations

import contextlib
import copy
import io
import logging
from typing import Any, Dict, List, Mapping, Tuple, Type

from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

logger = logging.getLogger(__name__)

DEFAULT_BACKEND = "pycocotools"


class PycocotoolsBackend:
    """pycocotools' `COCOeval`, the reference."""

    name = "pycocotools"

    def ground_truth(self, coco_gt: COCO) -> COCO:
        return coco_gt

    def run(self, coco_gt: COCO, dets: List[Dict[str, Any]]) -> Tuple[COCOeval, str]:
        """(accumulated and summarized `COCOeval`, summarize()'s text) of `dets` (modified by
        `loadRes`: pass a copy) against `coco_gt` (what `ground_truth` returned)."""
        log_io = io.StringIO()
        with contextlib.redirect_stdout(log_io):
            coco_dt = coco_gt.loadRes(dets)
            coco_eval = COCOeval(coco_gt, coco_dt, iouType="bbox")
            coco_eval.evaluate()
            coco_eval.accumulate()
        logger.debug("pycocotools: %s", log_io.getvalue().strip())
        summary_io = io.StringIO()
        with contextlib.redirect_stdout(summary_io):
            coco_eval.summarize()  # also fills coco_eval.stats
        return coco_eval, summary_io.getvalue().rstrip("\n")


class FasterCocoEvalBackend:
    """faster_coco_eval's `COCOeval_faster` over its own index of the ground truth."""

    name = "faster_coco_eval"

    def __init__(self) -> None:
        from nanodet_ghost.inference.backends import import_runtime

        # checked here, at build time; the module itself is not kept, so the evaluator pickles
        import_runtime("faster_coco_eval", "faster_coco_eval", "fast-eval",
                       "evaluation.backend=faster_coco_eval")

    def ground_truth(self, coco_gt: COCO) -> Any:
        """A `faster_coco_eval.COCO` over a copy of `coco_gt.dataset` (its evaluation marks the
        annotations it reads)."""
        import faster_coco_eval

        coco = faster_coco_eval.COCO()
        coco.dataset = copy.deepcopy(coco_gt.dataset)
        with contextlib.redirect_stdout(io.StringIO()):
            coco.createIndex()
        return coco

    def run(self, gt: Any, dets: List[Dict[str, Any]]) -> Tuple[Any, str]:
        """As `PycocotoolsBackend.run`; `gt` is what `ground_truth` returned."""
        import faster_coco_eval

        with contextlib.redirect_stdout(io.StringIO()):
            coco_dt = gt.loadRes(dets)
        coco_eval = faster_coco_eval.COCOeval_faster(gt, coco_dt, iouType="bbox",
                                                     print_function=logger.debug)
        coco_eval.evaluate()
        coco_eval.accumulate()
        lines: List[str] = []
        coco_eval.print_function = lines.append
        coco_eval.summarize()  # fills coco_eval.stats (numpy) and prints a line for each
        coco_eval.print_function = logger.debug
        # its lines go on past the 12 stats (AR at IoU 0.5 and 0.75), which pycocotools lacks
        return coco_eval, "\n".join(str(line) for line in lines[:len(coco_eval.stats)])


EVAL_BACKENDS: Mapping[str, Type[Any]] = {
    PycocotoolsBackend.name: PycocotoolsBackend,
    FasterCocoEvalBackend.name: FasterCocoEvalBackend,
}


def check_backend_name(name: str) -> str:
    """`name` when it is a key of `EVAL_BACKENDS`; else a ValueError listing them."""
    if name not in EVAL_BACKENDS:
        raise ValueError(f"evaluation.backend: {name!r} is not one of {sorted(EVAL_BACKENDS)}")
    return name


def build_backend(name: str) -> Any:
    """The backend called `name`.

    Raises:
        ValueError: an unknown name.
        MissingRuntimeError: faster_coco_eval asked for but not installed (one line naming the
            pip extra).
    """
    return EVAL_BACKENDS[check_backend_name(name)]()
