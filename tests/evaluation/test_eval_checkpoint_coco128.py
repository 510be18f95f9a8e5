"""End-to-end checkpoint evaluation on real COCO data (coco128) with the real dataset and model.

The weights are random (loading is stubbed: checkpoints belong to the trainer), so this checks the
plumbing, not accuracy: every image is predicted, ids and categories match the ground truth and the
results file and stats are written.
"""
from __future__ import annotations

import json
import sys
import types
from pathlib import Path
from typing import Any, List

from nanodet_ghost.config import load_config
from nanodet_ghost.evaluation import evaluate_checkpoint
from nanodet_ghost.paths import REPO_ROOT


def test_evaluate_checkpoint_on_coco128(coco128_root: Path, tmp_path: Path, monkeypatch) -> None:
    loaded: List[Any] = []
    checkpoint = types.ModuleType("nanodet_ghost.trainer.checkpoint")
    checkpoint.load_detector_weights = lambda model, path, prefer_ema=True: loaded.append(
        (path, prefer_ema))
    monkeypatch.setitem(sys.modules, "nanodet_ghost.trainer.checkpoint", checkpoint)
    cfg = load_config(REPO_ROOT / "config" / "nanodet_ghost_320.yml", [
        f"data.val.root={coco128_root / 'train2017'}",
        f"data.val.ann_file={coco128_root / 'annotations' / 'instances_train2017.json'}",
        "data.input_size=[128,128]", "data.num_workers=0", "data.val_batch_size=32",
        "model.postprocess.score_thr=0.001",  # random weights score about sigmoid(prior bias)
    ])
    ckpt = tmp_path / "model.ckpt"
    ckpt.write_bytes(b"")
    result = evaluate_checkpoint(cfg, ckpt, "val", out=tmp_path / "results.json",
                                 stats_out=tmp_path / "stats.json", device="cpu")
    assert loaded == [(str(ckpt), True)]
    assert result.num_images == 128
    assert len(result.stats) == 12 and all(-1.0 <= s <= 1.0 for s in result.stats)
    gt = json.loads((coco128_root / "annotations" / "instances_train2017.json").read_text())
    results = json.loads((tmp_path / "results.json").read_text())
    assert len(results) == result.num_detections > 0
    assert {r["image_id"] for r in results} <= {im["id"] for im in gt["images"]}
    assert {r["category_id"] for r in results} <= {c["id"] for c in gt["categories"]}
    stats = json.loads((tmp_path / "stats.json").read_text())
    assert stats["stats"] == list(result.stats)
    assert len(stats["per_class_ap"]) == 80
