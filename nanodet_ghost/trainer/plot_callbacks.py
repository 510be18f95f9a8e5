"""The pictures a training run makes (`train.plots`), and the time they take.

`TrainingPictures` (a Lightning callback, rank 0 only):
- writes `save_dir/plots/train_batch.jpg`, the first augmented training batch with its boxes;
- at each validation, sends the first validation images, ground truth beside predictions, to
  TensorBoard (tag `val/predictions`) through the logger the trainer already has.
`finish_run_plots` makes the end-of-run figures (`nanodet_ghost.analysis.make_run_plots`) and logs
the time all pictures took against the run's.
"""
from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any, List, Sequence

import cv2
import numpy as np
import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import Callback
from pytorch_lightning.loggers import TensorBoardLogger

from nanodet_ghost.analysis import PLOTS_DIR, make_run_plots
from nanodet_ghost.analysis import drawing
from nanodet_ghost.analysis.run_plots import DEFAULT_SCORE_THR
from nanodet_ghost.data.transforms import denormalize, warp_boxes

logger = logging.getLogger(__name__)

TENSORBOARD_TAG = "val/predictions"
TRAIN_BATCH_FILE = "train_batch.jpg"


class TrainingPictures(Callback):
    """See the module doc.

    Args:
        plots_dir: where train_batch.jpg goes.
        class_names: names of the labels. mean, std: `data.mean` / `data.std` (to undo).
        num_val_images: validation images sent to TensorBoard each time.
        score_thr: predictions drawn from this score.

    `seconds` accumulates the time spent here.
    """

    def __init__(self, plots_dir: Path, class_names: Sequence[str], mean: Sequence[float],
                 std: Sequence[float], num_val_images: int = 4, score_thr: float = DEFAULT_SCORE_THR) -> None:
        self.plots_dir = Path(plots_dir)
        self.class_names = [str(n) for n in class_names]
        self.mean, self.std = list(mean), list(std)
        self.num_val_images = num_val_images
        self.score_thr = score_thr
        self.seconds = 0.0

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any,
                             batch_idx: int) -> None:
        if trainer.global_step != 0 or batch_idx != 0 or not trainer.is_global_zero:
            return  # a resumed run keeps the picture of its first batch
        start = time.perf_counter()
        targets = batch["targets"]
        picture = drawing.batch_picture(
            batch["images"].float().cpu().numpy(), [t["boxes"].cpu().numpy() for t in targets],
            [t["labels"].cpu().numpy() for t in targets], self.class_names, self.mean, self.std)
        self.plots_dir.mkdir(parents=True, exist_ok=True)
        drawing.write_image(self.plots_dir / TRAIN_BATCH_FILE, picture)
        self.seconds += time.perf_counter() - start

    def on_validation_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any,
                                batch: Any, batch_idx: int, dataloader_idx: int = 0) -> None:
        if batch_idx != 0 or trainer.sanity_checking or not trainer.is_global_zero or not batch["metas"]:
            return  # (a batch of unreadable images only has no metas)
        board = next((lg for lg in trainer.loggers if isinstance(lg, TensorBoardLogger)), None)
        if board is None:
            return
        start = time.perf_counter()
        picture = self.validation_picture(pl_module, batch)
        board.experiment.add_image(TENSORBOARD_TAG, cv2.cvtColor(picture, cv2.COLOR_BGR2RGB),
                                   trainer.global_step, dataformats="HWC")
        self.seconds += time.perf_counter() - start

    @torch.no_grad()
    def validation_picture(self, pl_module: pl.LightningModule, batch: Any) -> np.ndarray:
        """The first images of a validation batch as the network sees them: ground truth beside
        the validated model's predictions (a second forward over those few images)."""
        n = min(self.num_val_images, len(batch["metas"]))
        images, metas = batch["images"][:n], batch["metas"][:n]
        input_hw = tuple(images.shape[-2:])
        raw = pl_module(images)
        predictions = pl_module.eval_model.predict(raw, metas, input_hw)
        pairs: List[List[np.ndarray]] = []
        for i, (meta, pred) in enumerate(zip(metas, predictions)):
            img = denormalize(images[i].float().cpu().numpy(), self.mean, self.std)
            to_input = np.asarray(meta["warp_matrix"], np.float64)  # original -> input pixels
            boxes = warp_boxes(pred["boxes"].cpu().numpy(), to_input, input_hw[1], input_hw[0])
            target = batch["targets"][i]
            pairs.append(drawing.gt_and_predictions(
                img, target["boxes"].cpu().numpy(), target["labels"].cpu().numpy(), boxes,
                pred["scores"].cpu().numpy(), pred["labels"].cpu().numpy(), self.class_names,
                self.score_thr, title=str(meta.get("file_name", ""))))
        return drawing.pairs_grid(pairs)


def training_pictures(cfg: Any, save_dir: Path) -> TrainingPictures:
    """`TrainingPictures` for a run of `cfg`, writing into `save_dir/plots`."""
    return TrainingPictures(Path(save_dir) / PLOTS_DIR, list(cfg.data.class_names), list(cfg.data.mean),
                            list(cfg.data.std))


def finish_run_plots(cfg: Any, save_dir: Path, pictures: TrainingPictures, run_seconds: float) -> List[Path]:
    """`make_run_plots`, then one log line with the time of all pictures against the run's.

    A figure that fails is logged with its traceback and does not fail the run: the checkpoints
    and the final evaluation are already written.
    """
    start = time.perf_counter()
    try:
        files = make_run_plots(save_dir, cfg)
    except Exception:  # noqa: BLE001 - a plot must never cost the user the trained run
        logger.exception("making the plots of %s failed", save_dir)
        files = []
    seconds = pictures.seconds + time.perf_counter() - start
    plots_dir = Path(save_dir) / PLOTS_DIR
    count = sum(1 for p in plots_dir.iterdir() if p.is_file()) if plots_dir.is_dir() else 0
    logger.info("plots: %d files in %s; all pictures took %.1f s, %.1f %% of the run's %.0f s",
                count, plots_dir, seconds, 100.0 * seconds / max(run_seconds, 1e-9), run_seconds)
    return files
