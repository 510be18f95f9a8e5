"""The Lightning validation loop with unreadable images: dropped with their ground truth (also a
batch of nothing but unreadable images), or an error under evaluation.strict."""
from __future__ import annotations

import json
import logging
import math
import shutil
from pathlib import Path

import pytest
import pytorch_lightning as pl

from nanodet_ghost.evaluation import EvaluationInputError
from nanodet_ghost.trainer.datamodule import DetectionDataModule
from nanodet_ghost.trainer.runner import build_module

from trainer_helpers import tiny_config


@pytest.fixture
def broken_val(tiny_coco: Path, tmp_path: Path):
    """The tiny val split with its first two images (one whole batch of 2) unreadable."""
    val = tmp_path / "val"
    shutil.copytree(tiny_coco / "val", val)
    gt = json.loads((val / "annotations.json").read_text())
    broken = gt["images"][:2]
    for im in broken:
        path = val / "images" / im["file_name"]
        path.write_bytes(path.read_bytes()[:300])  # header kept, scan cut short
    cfg = tiny_config(tiny_coco, tmp_path / "run", [
        f"data.val.root={val / 'images'}", f"data.val.ann_file={val / 'annotations.json'}",
        "data.val_batch_size=2"])
    boxes = sum(1 for a in gt["annotations"] if a["image_id"] in {im["id"] for im in broken})
    return cfg, len(gt["images"]), [im["file_name"] for im in broken], boxes


def _trainer() -> pl.Trainer:
    return pl.Trainer(accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
                      enable_progress_bar=False, enable_model_summary=False)


def test_validation_drops_unreadable_images(broken_val, caplog) -> None:
    cfg, num_images, broken, boxes = broken_val
    module = build_module(cfg)
    trainer = _trainer()
    with caplog.at_level(logging.WARNING, logger="nanodet_ghost.evaluation"):
        trainer.validate(module, datamodule=DetectionDataModule(cfg.data, seed=0))
    assert module.last_eval.num_images == num_images - 2
    assert trainer.callback_metrics["val/num_images"] == num_images - 2
    assert math.isfinite(float(trainer.callback_metrics["val/loss"]))
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("dropped")]
    assert len(lines) == 1
    assert lines[0].startswith(f"dropped 2 unreadable images and their {boxes} GT boxes")
    assert all(name in lines[0] for name in broken)


def test_validation_strict_fails(broken_val) -> None:
    cfg, _, broken, _ = broken_val
    datamodule = DetectionDataModule(cfg.data, seed=0, strict_images=True)
    with pytest.raises(EvaluationInputError, match=broken[0]):
        _trainer().validate(build_module(cfg), datamodule=datamodule)
