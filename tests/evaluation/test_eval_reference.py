"""The evaluator reproduces pycocotools' published numbers on cocoapi's 100-image demo exactly."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from nanodet_ghost.evaluation import CocoEvaluator, evaluate_results_file, load_coco_results_file
from nanodet_ghost.paths import REPO_ROOT

GT = "instances_val2014_100.json"
RESULTS = "instances_val2014_fakebbox100_results.json"
TOL = 1e-12


def _expected(root: Path) -> list:
    return json.loads((root / "expected_stats_pycocotools.json").read_text())["bbox"]


def _assert_stats(stats, expected) -> float:
    assert len(stats) == len(expected) == 12
    diff = max(abs(a - b) for a, b in zip(stats, expected))
    assert diff <= TOL, f"max |stat - expected| = {diff}"
    return diff


def test_results_file_api_matches_published_stats(coco_eval_reference_root: Path) -> None:
    root = coco_eval_reference_root
    result = evaluate_results_file(root / GT, root / RESULTS)
    _assert_stats(result.stats, _expected(root))
    assert result.stats[0] == pytest.approx(0.5045806987249628, abs=TOL)
    assert result.warnings == ()
    assert result.num_images == 100 and result.num_detections == len(
        json.loads((root / RESULTS).read_text()))
    assert "maxDets=100 ] = 0.505" in result.summary
    assert result.metrics("val/")["val/mAP"] == result.stats[0]
    # per-class AP: every GT category listed, NaN exactly where the class has no GT box
    gt = json.loads((root / GT).read_text())
    with_gt = {a["category_id"] for a in gt["annotations"] if not a.get("iscrowd", 0)}
    names = {c["id"]: c["name"] for c in gt["categories"]}
    assert set(result.per_class_ap) == set(names.values())
    for cid, name in names.items():
        ap = result.per_class_ap[name]
        assert (ap != ap) == (cid not in with_gt), name
    assert result.per_class_ap["person"] == pytest.approx(0.533, abs=5e-4)
    assert result.table.splitlines()[0].startswith("class")


def test_dict_ground_truth_is_not_modified(coco_eval_reference_root: Path) -> None:
    root = coco_eval_reference_root
    gt = json.loads((root / GT).read_text())
    snapshot = json.dumps(gt, sort_keys=True)
    results = load_coco_results_file(root / RESULTS)
    evaluator = CocoEvaluator(gt)
    first = evaluator.evaluate_results(results)
    second = evaluator.evaluate_results(results)  # reusable, e.g. once per validation epoch
    _assert_stats(first.stats, _expected(root))
    assert second.stats == first.stats
    assert json.dumps(gt, sort_keys=True) == snapshot
    assert "segmentation" not in results[0]  # loadRes works on copies


def test_cli_matches_published_stats(coco_eval_reference_root: Path, tmp_path: Path) -> None:
    root = coco_eval_reference_root
    stats_out = tmp_path / "stats.json"
    proc = subprocess.run(
        [sys.executable, str(REPO_ROOT / "tools" / "test.py"), "--ann", str(root / GT),
         "--results", str(root / RESULTS), "--stats-out", str(stats_out)],
        capture_output=True, text=True, timeout=120, cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    headline = "Average Precision  (AP) @[ IoU=0.50:0.95 | area=   all | maxDets=100 ] = 0.505"
    assert headline in proc.stdout
    assert "person" in proc.stdout
    written = json.loads(stats_out.read_text())
    diff = _assert_stats(written["stats"], _expected(root))
    assert diff == 0.0  # json keeps full precision
    assert written["per_class_ap"]["donut"] is None  # no GT -> NaN -> null
    assert written["per_class_ap"]["person"] == pytest.approx(0.533, abs=5e-4)
