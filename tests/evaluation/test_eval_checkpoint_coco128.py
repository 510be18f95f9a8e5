"""End-to-end checkpoint evaluation on real COCO data (coco128) with the real dataset and model.

The weights are random (seeded), so this checks the plumbing, not accuracy: every image is
predicted, ids and categories match the ground truth, and the stats written are what pycocotools
itself computes from the written results file against the original annotation file.
"""
from __future__ import annotations

import contextlib
import io
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from nanodet_ghost.config import load_config
from nanodet_ghost.evaluation import evaluate_checkpoint
from nanodet_ghost.model import build_model
from nanodet_ghost.paths import CONFIG_DIR

# COCO's area ranges of stats 3-5 (AP) and 9-11 (AR): small, medium, large
_AREA_RANGES = ((0.0, 32.0 ** 2), (32.0 ** 2, 96.0 ** 2), (96.0 ** 2, 1e10))


def _write_checkpoint(model: torch.nn.Module, path: Path) -> Path:
    """The layout tools/train.py writes: live and EMA detector weights under `state_dict`."""
    state = {f"model.{k}": v for k, v in model.state_dict().items()}
    state.update({f"ema.module.{k}": v for k, v in model.state_dict().items()})
    torch.save({"state_dict": state, "epoch": 1, "global_step": 1}, path)
    return path


def _pycocotools_stats(ann_file: Path, results_file: Path) -> np.ndarray:
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(str(ann_file))
        coco_eval = COCOeval(gt, gt.loadRes(str(results_file)), iouType="bbox")
        coco_eval.evaluate()
        coco_eval.accumulate()
        coco_eval.summarize()
    return coco_eval.stats


def test_evaluate_checkpoint_on_coco128(coco128_root: Path, tmp_path: Path) -> None:
    ann_file = coco128_root / "annotations" / "instances_train2017.json"
    cfg = load_config(CONFIG_DIR / "nanodet_ghost_320.yml", [
        f"data.val.root={coco128_root / 'train2017'}", f"data.val.ann_file={ann_file}",
        "data.input_size=[128,128]", "data.num_workers=0", "data.val_batch_size=32",
        "model.postprocess.score_thr=0.001",  # random weights score about sigmoid(prior bias)
    ])
    torch.manual_seed(0)
    ckpt = _write_checkpoint(build_model(cfg.model), tmp_path / "model.ckpt")
    result = evaluate_checkpoint(cfg, ckpt, "val", out=tmp_path / "results.json",
                                 stats_out=tmp_path / "stats.json", device="cpu")
    assert result.num_images == 128

    gt = json.loads(ann_file.read_text())
    results = json.loads((tmp_path / "results.json").read_text())
    assert len(results) == result.num_detections > 0
    assert {r["image_id"] for r in results} <= {im["id"] for im in gt["images"]}
    assert {r["category_id"] for r in results} <= {c["id"] for c in gt["categories"]}

    # The stats are pycocotools' own numbers for the written results against the original json.
    expected = _pycocotools_stats(ann_file, tmp_path / "results.json")
    assert len(result.stats) == 12
    np.testing.assert_allclose(result.stats, expected, rtol=1e-12, atol=0)
    stats = json.loads((tmp_path / "stats.json").read_text())
    assert stats["stats"] == list(result.stats)

    # coco128 has objects of every size, so no stat may be COCO's -1 ("no ground truth here").
    areas = [a["area"] for a in gt["annotations"] if not a["iscrowd"]]
    for low, high in _AREA_RANGES:
        assert any(low <= a < high for a in areas)
    assert all(0.0 <= s <= 1.0 for s in result.stats), result.stats
    ar1, ar10, ar100 = result.stats[6:9]
    assert ar1 <= ar10 <= ar100, "recall cannot drop when more detections are allowed"

    # Per-class AP: undefined (NaN, null in the file) exactly for the classes without non-crowd
    # ground truth, and the mean over the others is stat 0 (every class with ground truth has all
    # its precision entries).
    per_class = result.per_class_ap
    assert list(per_class) == list(cfg.data.class_names)
    assert stats["per_class_ap"] == {n: None if math.isnan(ap) else ap for n, ap in per_class.items()}
    name_of = {c["id"]: c["name"] for c in gt["categories"]}
    with_gt = {name_of[a["category_id"]] for a in gt["annotations"] if not a["iscrowd"]}
    assert {n for n, ap in per_class.items() if math.isnan(ap)} == set(per_class) - with_gt
    assert np.mean([per_class[n] for n in with_gt]) == pytest.approx(result.stats[0], rel=1e-9, abs=1e-15)


def test_flip_tta_evaluates_every_image(coco128_root: Path, tmp_path: Path) -> None:
    """The TTA path through the real dataset and model: every image, valid stats, and detections
    that differ from the single view's (the flipped views are really run)."""
    ann_file = coco128_root / "annotations" / "instances_train2017.json"
    cfg = load_config(CONFIG_DIR / "nanodet_ghost_320.yml", [
        f"data.val.root={coco128_root / 'train2017'}", f"data.val.ann_file={ann_file}",
        "data.input_size=[128,96]", "data.num_workers=0", "data.val_batch_size=32",
        "model.postprocess.score_thr=0.001",
    ])
    torch.manual_seed(0)
    ckpt = _write_checkpoint(build_model(cfg.model), tmp_path / "model.ckpt")
    single = evaluate_checkpoint(cfg, ckpt, "val", out=tmp_path / "single.json", device="cpu")
    tta = evaluate_checkpoint(cfg, ckpt, "val", out=tmp_path / "tta.json", device="cpu", flip_tta=("h",))
    assert tta.num_images == single.num_images == 128
    assert all(0.0 <= s <= 1.0 for s in tta.stats), tta.stats
    assert json.loads((tmp_path / "tta.json").read_text()) != json.loads((tmp_path / "single.json").read_text())
