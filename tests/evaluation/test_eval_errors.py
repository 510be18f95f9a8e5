"""Loud, clear behaviour on empty / mismatched / malformed input (API and CLI)."""
from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from typing import Any, Dict, List

import numpy as np
import pytest

from nanodet_ghost.cli import EXIT_DATA
from nanodet_ghost.evaluation import (
    CocoEvaluator,
    EvaluationInputError,
    evaluate,
    evaluate_results_file,
)

from eval_helpers import CATEGORY_IDS, CLASS_NAMES, perfect_predictions, run_cli, tiny_gt, write


def test_perfect_predictions_and_per_class_nan() -> None:
    result = evaluate(tiny_gt(), perfect_predictions(), CATEGORY_IDS, CLASS_NAMES)
    assert result.stats[0] == 1.0 and result.stats[1] == 1.0
    assert result.per_class_ap["cat"] == pytest.approx(1.0, abs=1e-12)
    assert result.per_class_ap["dog"] == pytest.approx(1.0, abs=1e-12)
    assert math.isnan(result.per_class_ap["bird"])
    assert result.warnings == ()


@pytest.mark.parametrize("predictions", [{}, {1: dict(boxes=np.zeros((0, 4)), scores=np.zeros(0),
                                                      labels=np.zeros(0, int))}])
def test_no_predictions_gives_zeros_and_warning(predictions, caplog) -> None:
    with caplog.at_level(logging.WARNING):
        result = evaluate(tiny_gt(), predictions, CATEGORY_IDS, CLASS_NAMES)
    assert result.stats == (0.0,) * 12
    assert result.num_detections == 0
    assert any("no detections" in w for w in result.warnings)
    assert "no detections" in caplog.text
    assert result.per_class_ap["cat"] == 0.0 and math.isnan(result.per_class_ap["bird"])
    assert len(result.summary.splitlines()) == 12


def test_zero_annotation_ground_truth_is_flagged(caplog) -> None:
    with caplog.at_level(logging.WARNING):
        result = evaluate(tiny_gt(with_annotations=False), perfect_predictions(), CATEGORY_IDS)
    assert result.stats == (0.0,) * 12
    assert "zero annotations" in caplog.text and "zero annotations" in result.warnings[0]


def test_unknown_image_ids_strict_and_lenient(caplog) -> None:
    preds = perfect_predictions()
    preds[1234] = preds.pop(1)
    with pytest.raises(EvaluationInputError, match=r"1 of 2 image ids are not in the ground "
                                                   r"truth: \[1234\]; its image ids are \[1, 2\]"):
        evaluate(tiny_gt(), preds, CATEGORY_IDS)
    with caplog.at_level(logging.WARNING):
        result = evaluate(tiny_gt(), preds, CATEGORY_IDS, strict=False)
    assert "dropped" in caplog.text
    assert 0.0 < result.stats[0] < 1.0  # image 1's cat is now missed


def test_all_unknown_image_ids_say_none_match() -> None:
    preds = {i + 100: p for i, p in perfect_predictions().items()}
    with pytest.raises(EvaluationInputError, match="none match"):
        evaluate(tiny_gt(), preds, CATEGORY_IDS)
    result = evaluate(tiny_gt(), preds, CATEGORY_IDS, strict=False)
    assert result.stats == (0.0,) * 12 and any("none match" in w for w in result.warnings)


def test_unmapped_labels_are_flagged(caplog) -> None:
    # contiguous labels used as category ids: the classic silent zero mAP
    with caplog.at_level(logging.WARNING):
        result = evaluate(tiny_gt(), perfect_predictions(), [0, 1, 2], CLASS_NAMES)
    assert "are not categories" in caplog.text
    assert "mAP is 0.0" in caplog.text
    assert result.stats[0] <= 0.0


def test_invalid_json_names_file_and_position(tmp_path: Path) -> None:
    gt = write(tmp_path / "gt.json", tiny_gt())
    bad = tmp_path / "bad.json"
    bad.write_text('[{"image_id": 1, "category_id": 3,\n "bbox": [1, 2, 3, 4] "score": 0.5}]')
    with pytest.raises(EvaluationInputError, match=r"bad\.json is not valid JSON: .* line 2 "
                                                   r"column 23 \(char 57\)"):
        evaluate_results_file(gt, bad)
    proc = run_cli("--ann", str(gt), "--results", str(bad), cwd=tmp_path)
    assert proc.returncode == EXIT_DATA
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and str(bad) in lines[0] and "line 2 column 23" in lines[0]


def test_malformed_results_entry(tmp_path: Path) -> None:
    gt = write(tmp_path / "gt.json", tiny_gt())
    res = write(tmp_path / "r.json", [{"image_id": 1, "category_id": 3, "bbox": [1, 2, 3]}])
    with pytest.raises(EvaluationInputError, match=r"r\.json: entry 0 lacks key\(s\) \['score'\]"):
        evaluate_results_file(gt, res)
    with pytest.raises(EvaluationInputError, match="ground-truth file not found"):
        evaluate_results_file(tmp_path / "missing.json", res)


def test_cli_unknown_ids_missing_file_and_empty(tmp_path: Path) -> None:
    gt = write(tmp_path / "gt.json", tiny_gt())
    unknown = write(tmp_path / "u.json",
                    [{"image_id": 55, "category_id": 3, "bbox": [1, 2, 3, 4], "score": 0.5}])
    proc = run_cli("--ann", str(gt), "--results", str(unknown), cwd=tmp_path)
    assert proc.returncode == EXIT_DATA and "Traceback" not in proc.stderr
    assert proc.stderr.strip().count("\n") == 0
    assert str(unknown) in proc.stderr and "[55]" in proc.stderr and "none match" in proc.stderr

    proc = run_cli("--ann", str(tmp_path / "nope.json"), "--results", str(unknown), cwd=tmp_path)
    assert proc.returncode == EXIT_DATA and "Traceback" not in proc.stderr
    assert "ground-truth file not found" in proc.stderr and "nope.json" in proc.stderr

    empty = write(tmp_path / "empty.json", [])
    stats = tmp_path / "s.json"
    proc = run_cli("--ann", str(gt), "--results", str(empty), "--stats-out", str(stats),
                   cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "no detections" in proc.stderr
    written = json.loads(stats.read_text())
    assert written == {"stats": [0.0] * 12,
                       "per_class_ap": {"cat": 0.0, "dog": 0.0, "bird": None}}


def test_evaluator_rejects_mismatched_names() -> None:
    with pytest.raises(ValueError, match="2 class names for 3 category ids"):
        CocoEvaluator(tiny_gt(), CATEGORY_IDS, CLASS_NAMES[:2])


def _results(preds: Dict[int, Dict[str, np.ndarray]]) -> List[Dict[str, Any]]:
    from nanodet_ghost.evaluation import predictions_to_coco_results

    return predictions_to_coco_results(preds, CATEGORY_IDS)


def test_results_path_equals_predictions_path() -> None:
    evaluator = CocoEvaluator(tiny_gt(), CATEGORY_IDS, CLASS_NAMES)
    a = evaluator.evaluate(perfect_predictions())
    b = evaluator.evaluate_results(_results(perfect_predictions()))
    assert a.stats == b.stats
