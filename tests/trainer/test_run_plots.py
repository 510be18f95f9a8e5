"""A training run writes its pictures (train.plots), and writes none when told not to."""
from __future__ import annotations

import logging
import re
from pathlib import Path

import cv2
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from nanodet_ghost.analysis import PLOTS_DIR
from nanodet_ghost.analysis.drawing import grid_size
from nanodet_ghost.trainer.plot_callbacks import TENSORBOARD_TAG, TRAIN_BATCH_FILE
from nanodet_ghost.trainer.runner import train
from trainer_helpers import tiny_config

EVAL_PLOTS = ("pr_curve.png", "f1_curve.png", "p_curve.png", "r_curve.png", "confusion_matrix.png",
              "per_class_ap.png", "ap_by_size.png", "val_predictions.jpg")


def images_in_tensorboard(save_dir: Path):
    events = EventAccumulator(str(next((save_dir / "logs").glob("version_*"))), size_guidance={"images": 0})
    events.Reload()
    return events.Images(TENSORBOARD_TAG) if TENSORBOARD_TAG in events.Tags()["images"] else []


def test_run_writes_plots(tiny_coco: Path, tmp_path: Path, caplog) -> None:
    save_dir = tmp_path / "run"
    cfg = tiny_config(tiny_coco, save_dir, ["model.postprocess.score_thr=0.0"])
    with caplog.at_level(logging.INFO):
        train(cfg)
    plots = save_dir / PLOTS_DIR
    for name in ("results.png", TRAIN_BATCH_FILE, *EVAL_PLOTS):
        assert cv2.imread(str(plots / name)) is not None, name
    batch = cv2.imread(str(plots / TRAIN_BATCH_FILE))
    assert batch.shape[:2] == grid_size(4, 2, cell=(128, 128), captioned=False)[::-1]  # batch 4 at 128 px
    assert re.search(r"plots: \d+ files in .*; all pictures took [0-9.]+ s, [0-9.]+ % of the run's \d+ s",
                     caplog.text)
    shown = images_in_tensorboard(save_dir)
    assert [event.step for event in shown] == sorted({event.step for event in shown}) and len(shown) == 2
    assert shown[0].width == grid_size(8, 4)[0]  # 4 images of the first val batch, 2 pairs per row


def test_plots_off(tiny_coco: Path, tmp_path: Path) -> None:
    save_dir = tmp_path / "run"
    train(tiny_config(tiny_coco, save_dir, ["train.plots=false", "train.max_epochs=1"]), evaluate_at_end=False)
    assert (save_dir / "checkpoints" / "last.ckpt").is_file()
    assert not (save_dir / PLOTS_DIR).exists()
    assert images_in_tensorboard(save_dir) == []
