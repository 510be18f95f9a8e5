"""evaluation.backend: faster_coco_eval gives pycocotools' numbers; bad names and a missing package
fail in one line."""
from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest

from eval_helpers import CATEGORY_IDS, CLASS_NAMES, perfect_predictions, run_cli, tiny_gt
from nanodet_ghost.analysis.coco_curves import ap_table, matched_detections, pr_curves
from nanodet_ghost.config import ConfigError, load_config
from nanodet_ghost.evaluation import CocoEvaluator, load_coco_results_file
from nanodet_ghost.evaluation.backends import build_backend
from nanodet_ghost.inference.backends import MissingRuntimeError
from nanodet_ghost.paths import CONFIG_DIR, REPO_ROOT

sys.path.insert(0, str(REPO_ROOT / "benchmarks"))
from eval_backends import coco_like, compare_backends, max_differences  # noqa: E402

TOL = 1e-9
DEFAULT_CONFIG = CONFIG_DIR / "nanodet_ghost_320.yml"


@pytest.fixture(scope="module")
def fast() -> str:
    pytest.importorskip("faster_coco_eval", reason="faster_coco_eval is not installed "
                        "(pip install 'nanodet_ghost[fast-eval]'): backend comparison skipped")
    return "faster_coco_eval"


def _both(gt, results, **kwargs):
    return [CocoEvaluator(gt, backend=name, **kwargs).evaluate_results(results, keep_eval=True)
            for name in ("pycocotools", "faster_coco_eval")]


def _assert_same(ref, other) -> None:
    assert len(other.stats) == 12
    stat_diff, class_diff = max_differences(ref, other)
    assert stat_diff <= TOL, f"max |stat diff| {stat_diff}"
    assert class_diff <= TOL, f"max |per-class AP diff| {class_diff}"
    assert other.table.splitlines()[1:] == ref.table.splitlines()[1:]
    assert other.summary == ref.summary


def test_reference_data_same_stats_arrays_and_curves(coco_eval_reference_root: Path, fast) -> None:
    root = coco_eval_reference_root
    gt = json.loads((root / "instances_val2014_100.json").read_text())
    results = load_coco_results_file(root / "instances_val2014_fakebbox100_results.json")
    ref, other = _both(gt, results)
    expected = json.loads((root / "expected_stats_pycocotools.json").read_text())["bbox"]
    assert max(abs(a - b) for a, b in zip(other.stats, expected)) <= TOL
    _assert_same(ref, other)
    assert sum(not math.isnan(v) for v in other.per_class_ap.values()) > 10
    for key in ("precision", "recall", "scores"):  # what the plots read
        a, b = np.asarray(ref.coco_eval.eval[key]), np.asarray(other.coco_eval.eval[key])
        assert a.shape == b.shape, key
        assert np.max(np.abs(a - b)) <= TOL, key
    assert list(other.coco_eval.params.catIds) == list(ref.coco_eval.params.catIds)
    cats = sorted(c["id"] for c in gt["categories"])
    curves_ref, curves = pr_curves(ref.coco_eval, cats), pr_curves(other.coco_eval, cats)
    np.testing.assert_allclose(curves.per_class, curves_ref.per_class, atol=TOL)
    assert abs(curves.ap - other.stats[0]) <= TOL
    for area, values in ap_table(ref.coco_eval, cats).items():
        np.testing.assert_allclose(ap_table(other.coco_eval, cats)[area], values, atol=TOL)
    with pytest.raises(ValueError, match="per-image matches"):  # not silently empty curves
        matched_detections(other.coco_eval, cats)


@pytest.mark.parametrize("seed", [0, 3])
def test_generated_edge_cases_agree(fast, seed: int) -> None:
    # 60 images: 6 without ground truth, 4 without detections, 8 with a crowd region
    gt, results = coco_like(60, dets_per_image=30, num_classes=6, seed=seed)
    with_dets = {r["image_id"] for r in results}
    with_gt = {a["image_id"] for a in gt["annotations"]}
    assert len(gt["images"]) - len(with_dets) == 4 and len(gt["images"]) - len(with_gt) == 6
    assert any(a["iscrowd"] for a in gt["annotations"])
    assert with_dets - with_gt  # detections on images without ground truth
    ref, other = _both(gt, results)
    assert 0.0 < ref.stats[0] < 1.0
    _assert_same(ref, other)


def test_crowd_only_image_class_without_gt_and_renumbered_ids(fast) -> None:
    gt = tiny_gt()  # annotation id 0, "bird" without ground truth
    gt["images"].append(dict(id=3, width=100, height=100, file_name="c.jpg"))
    gt["annotations"].append(dict(id=5, image_id=3, category_id=3, bbox=[0, 0, 50, 50],
                                  area=2500, iscrowd=1))
    preds = perfect_predictions()
    preds[3] = dict(boxes=np.array([[5, 5, 40, 40], [60, 60, 90, 90]], np.float32),
                    scores=np.array([0.6, 0.5]), labels=np.array([0, 2]))
    preds[1]["boxes"] = preds[1]["boxes"] + 4.0  # not perfect: IoU below some thresholds
    ref, other = (CocoEvaluator(gt, CATEGORY_IDS, CLASS_NAMES, backend=name).evaluate(preds)
                  for name in ("pycocotools", "faster_coco_eval"))
    assert math.isnan(other.per_class_ap["bird"])
    assert 0.0 < ref.stats[0] < 1.0
    _assert_same(ref, other)


def test_unreadable_images_keep_the_backend(fast) -> None:
    evaluator = CocoEvaluator(tiny_gt(), CATEGORY_IDS, CLASS_NAMES, backend=fast)
    assert evaluator.without_images({2: "b.jpg: truncated"}).backend.name == fast


def test_benchmark_function_small(fast) -> None:
    report = compare_backends(20, dets_per_image=10, backends=["pycocotools", fast])
    assert report["detections"] > 0 and set(report["seconds"]) == {"pycocotools", fast}
    assert all(s > 0 for s in report["seconds"].values())
    assert report["max_stat_diff"][fast] <= TOL and report["max_class_ap_diff"][fast] <= TOL


def test_unknown_backend_fails_at_load_naming_key_and_file(tmp_path: Path) -> None:
    path = tmp_path / "bad_backend.yml"
    path.write_text(DEFAULT_CONFIG.read_text() + "\nevaluation:\n  backend: fast_coco\n")
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert "evaluation.backend" in str(err.value) and str(path) in str(err.value)
    assert "'fast_coco'" in str(err.value) and "faster_coco_eval" in str(err.value)
    with pytest.raises(ConfigError, match="evaluation.backend"):
        load_config(DEFAULT_CONFIG, ["evaluation.backend=cocoapi"])
    assert load_config(DEFAULT_CONFIG).evaluation.backend == "pycocotools"
    with pytest.raises(ValueError, match="evaluation.backend"):
        CocoEvaluator(tiny_gt(), backend="nope")


def test_missing_package_is_one_clear_line(monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "faster_coco_eval", None)  # import raises ImportError
    with pytest.raises(MissingRuntimeError) as err:
        build_backend("faster_coco_eval")
    message = str(err.value)
    assert "\n" not in message
    assert "faster_coco_eval is not installed" in message and "nanodet_ghost[fast-eval]" in message


def test_cli_backend_option(coco_eval_reference_root: Path, tmp_path: Path, fast) -> None:
    root = coco_eval_reference_root
    stats_out = tmp_path / "stats.json"
    proc = run_cli("--ann", str(root / "instances_val2014_100.json"), "--results",
                   str(root / "instances_val2014_fakebbox100_results.json"), "--backend", fast,
                   "--stats-out", str(stats_out), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    expected = json.loads((root / "expected_stats_pycocotools.json").read_text())["bbox"]
    written = json.loads(stats_out.read_text())["stats"]
    assert max(abs(a - b) for a, b in zip(written, expected)) <= TOL
    assert "maxDets=100 ] = 0.505" in proc.stdout


def test_training_evaluator_takes_the_config_backend(tmp_path: Path, fast) -> None:
    from nanodet_ghost.trainer.datamodule import DetectionDataModule

    from nanodet_ghost.data.synthetic import generate_split

    generate_split(tmp_path / "val", 3, seed=0)
    split = tmp_path / "val"
    val = f"{{format: coco, root: '{split / 'images'}', ann_file: '{split / 'annotations.json'}'}}"
    cfg = load_config(DEFAULT_CONFIG, [f"evaluation.backend={fast}", f"data.val={val}",
                                       "data.class_names=[]"])
    module = DetectionDataModule(cfg.data, seed=0, eval_backend=cfg.evaluation.backend)
    assert module.build_evaluator().backend.name == fast


def test_evaluator_pickles_for_spawned_workers(fast) -> None:
    import pickle

    evaluator = CocoEvaluator(tiny_gt(), CATEGORY_IDS, CLASS_NAMES, backend=fast)
    first = evaluator.evaluate(perfect_predictions())
    copy = pickle.loads(pickle.dumps(evaluator))
    assert copy.evaluate(perfect_predictions()).stats == first.stats
