"""Reading and writing the json files of COCO evaluation, with one-line errors that name the file.

Everything here raises `EvaluationInputError` (a `ValueError`) for bad input, so that a CLI can
print `str(err)` and exit without a stack trace.
"""
from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any, Dict, List, Mapping, Sequence, Union

PathLike = Union[str, os.PathLike]

_RESULT_KEYS = ("image_id", "category_id", "bbox", "score")
_GT_KEYS = ("images", "annotations", "categories")


class EvaluationInputError(ValueError):
    """Bad evaluation input (missing file, invalid json, wrong structure, unknown image ids).

    The message is one line and names the offending file where there is one.
    """


def load_json_file(path: PathLike, what: str = "json file") -> Any:
    """Load a json file.

    Args:
        path: the file.
        what: what the file is, for the message ("ground-truth file", "results file").

    Raises:
        EvaluationInputError: the file is missing, unreadable or not valid json; an invalid file's
            message gives the line, column and character offset of the first error.
    """
    p = Path(path)
    if not p.is_file():
        raise EvaluationInputError(f"{what} not found: {p}")
    try:
        with p.open("r", encoding="utf-8") as f:
            return json.load(f)
    except json.JSONDecodeError as exc:
        raise EvaluationInputError(
            f"{what} {p} is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno} "
            f"(char {exc.pos})"
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise EvaluationInputError(f"cannot read {what} {p}: {exc}") from None


def check_coco_gt(gt: Any, source: str = "ground truth") -> Dict[str, Any]:
    """Check that `gt` looks like a COCO instances dict (images, annotations, categories).

    Raises:
        EvaluationInputError: naming `source` and the missing key.
    """
    if not isinstance(gt, dict):
        raise EvaluationInputError(
            f"{source}: expected a COCO instances object, got {type(gt).__name__}"
        )
    for key in _GT_KEYS:
        if not isinstance(gt.get(key), list):
            raise EvaluationInputError(f"{source}: missing or non-list key '{key}'")
    return gt


def check_coco_results(results: Any, source: str = "results") -> List[Dict[str, Any]]:
    """Check that `results` is a list of COCO bbox results; return it.

    Each entry needs `image_id`, `category_id`, `bbox` (4 numbers, xywh) and `score`.

    Raises:
        EvaluationInputError: naming `source` and the index of the first bad entry.
    """
    if not isinstance(results, list):
        raise EvaluationInputError(
            f"{source}: expected a list of detections, got {type(results).__name__}"
        )
    for i, r in enumerate(results):
        if not isinstance(r, dict):
            raise EvaluationInputError(f"{source}: entry {i} is {type(r).__name__}, not an object")
        missing = [k for k in _RESULT_KEYS if k not in r]
        if missing:
            raise EvaluationInputError(f"{source}: entry {i} lacks key(s) {missing}")
        bbox = r["bbox"]
        if not isinstance(bbox, (list, tuple)) or len(bbox) != 4:
            raise EvaluationInputError(
                f"{source}: entry {i} has bbox {bbox!r}, expected [x, y, w, h]"
            )
    return results


def load_coco_gt_file(path: PathLike) -> Dict[str, Any]:
    """Load and check a COCO instances json (see `check_coco_gt`)."""
    return check_coco_gt(load_json_file(path, "ground-truth file"), f"ground-truth file {path}")


def load_coco_results_file(path: PathLike) -> List[Dict[str, Any]]:
    """Load and check a COCO bbox results json (see `check_coco_results`)."""
    return check_coco_results(load_json_file(path, "results file"), f"results file {path}")


def save_coco_results(results: Sequence[Mapping[str, Any]], path: PathLike) -> Path:
    """Write COCO results (a list of dicts) to `path`, creating parent folders."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    with p.open("w", encoding="utf-8") as f:
        json.dump(list(results), f)
    return p


def _finite_or_none(x: float) -> Union[float, None]:
    return None if math.isnan(x) else float(x)


def save_stats(stats: Sequence[float], per_class_ap: Mapping[str, float], path: PathLike) -> Path:
    """Write `{"stats": [12 floats], "per_class_ap": {name: float | null}}` to `path`.

    Floats keep full precision (json writes Python's round-trip `repr`); a NaN AP (class without
    ground truth) is written as `null`.
    """
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "stats": [float(s) for s in stats],
        "per_class_ap": {str(k): _finite_or_none(v) for k, v in per_class_ap.items()},
    }
    with p.open("w", encoding="utf-8") as f:
        json.dump(payload, f, indent=1, allow_nan=False)
    return p
