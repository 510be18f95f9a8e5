"""COCO bbox evaluation: pycocotools scoring with clear hints, DDP gathering, checkpoint runner.

Torch is imported lazily, so scoring a results file works on a machine without it.
"""
from nanodet_ghost.evaluation.coco import (
    STAT_NAMES,
    CocoEvalResult,
    CocoEvaluator,
    evaluate,
    evaluate_results_file,
    predictions_to_coco_results,
)
from nanodet_ghost.evaluation.distributed import gather_predictions, gather_unreadable
from nanodet_ghost.evaluation.jsonio import (
    EvaluationInputError,
    load_coco_results_file,
    save_coco_results,
    save_stats,
)
from nanodet_ghost.evaluation.runner import collect_predictions, evaluate_checkpoint

__all__ = [
    "STAT_NAMES",
    "CocoEvalResult",
    "CocoEvaluator",
    "EvaluationInputError",
    "collect_predictions",
    "evaluate",
    "evaluate_checkpoint",
    "evaluate_results_file",
    "gather_predictions",
    "gather_unreadable",
    "load_coco_results_file",
    "predictions_to_coco_results",
    "save_coco_results",
    "save_stats",
]
