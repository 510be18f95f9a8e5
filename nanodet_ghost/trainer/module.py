"""A thin LightningModule: the detector, its EMA, the optimizer plan and COCO validation.

All detection logic lives in `nanodet_ghost.model`; this class only schedules it.
"""
from __future__ import annotations

import logging
from typing import Any, Dict, Optional

import numpy as np
import pytorch_lightning as pl
import torch
import torch.distributed as dist

from nanodet_ghost.evaluation import (
    CocoEvalResult,
    CocoEvaluator,
    gather_predictions,
    gather_unreadable,
)
from nanodet_ghost.evaluation.unreadable import unreadable_in_batch
from nanodet_ghost.model import Detector
from nanodet_ghost.trainer.ema import ModelEMA
from nanodet_ghost.trainer.optim import build_optimizer, build_scheduler

logger = logging.getLogger(__name__)


class NonFiniteLossError(RuntimeError):
    """Too many consecutive non-finite losses: the run is diverging."""


class DetectorModule(pl.LightningModule):
    """Train and validate a `Detector`.

    Args:
        model: the detector (`nanodet_ghost.model.build_model`); its state dict keys appear in
            checkpoints under `model.` (live weights) and `ema.module.` (EMA weights).
        optimizer: `OptimizerConfig` fields as a dict.
        scheduler: `SchedulerConfig` fields as a dict.
        ema_decay: EMA decay, or None to validate the live weights.
        ema_warmup: steps over which the EMA decay ramps up.
        nonfinite_patience: consecutive non-finite losses before aborting.
        channels_last: keep weights and images in NHWC layout. oneDNN's CPU convolutions run
            about 1.3x faster per training step in it (docs/benchmarks.md); the weights and
            their values are the same either way.

    The hyper-parameters saved in checkpoints leave the detector out: a run is rebuilt from its
    config (`trainer.runner.build_module`), never from `hparams`.
    """

    def __init__(
        self,
        model: Detector,
        optimizer: Dict[str, Any],
        scheduler: Dict[str, Any],
        ema_decay: Optional[float] = 0.9998,
        ema_warmup: int = 2000,
        nonfinite_patience: int = 10,
        channels_last: bool = True,
    ) -> None:
        super().__init__()
        self.save_hyperparameters(ignore=["model"])
        self.model = model
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self.model.to(memory_format=self.memory_format)  # before the EMA copies it
        self.ema = ModelEMA(self.model, ema_decay, ema_warmup) if ema_decay else None
        self.evaluator: Optional[CocoEvaluator] = None
        self._val_predictions: Dict[int, Dict[str, np.ndarray]] = {}
        self._val_unreadable: Dict[int, str] = {}  # image id -> "file_name: problem"
        self._nonfinite_streak = 0
        self.last_eval: Optional[CocoEvalResult] = None

    def setup(self, stage: str) -> None:
        datamodule = getattr(self.trainer, "datamodule", None)
        if datamodule is not None and hasattr(datamodule, "build_evaluator"):
            self.evaluator = datamodule.build_evaluator()

    @property
    def eval_model(self) -> torch.nn.Module:
        """The weights that are validated and exported: the EMA when there is one."""
        return self.ema.module if self.ema is not None else self.model

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.eval_model(images.contiguous(memory_format=self.memory_format))

    # ----------------------------------------------------------------------------- training
    def training_step(self, batch: Dict[str, Any], batch_idx: int) -> Optional[torch.Tensor]:
        images = batch["images"].contiguous(memory_format=self.memory_format)
        _, losses = self.model.forward_train(images, batch["targets"], epoch=self.current_epoch)
        if not torch.isfinite(losses["loss"]):
            return self._skip_nonfinite(losses)
        self._nonfinite_streak = 0
        self.log("train/loss", losses["loss"].detach(), prog_bar=True, batch_size=images.shape[0])
        self.log_dict({f"train/{k}": v.detach() for k, v in losses.items() if k != "loss"},
                      batch_size=images.shape[0])
        return losses["loss"]

    def _skip_nonfinite(self, losses: Dict[str, torch.Tensor]) -> Optional[torch.Tensor]:
        self._nonfinite_streak += 1
        terms = ", ".join(f"{k}={v.item():.4g}" for k, v in losses.items())
        logger.warning("non-finite loss at step %d (%s): step skipped (%d in a row, limit %d)",
                       self.global_step, terms, self._nonfinite_streak, self.hparams.nonfinite_patience)
        if self._nonfinite_streak >= self.hparams.nonfinite_patience:
            raise NonFiniteLossError(
                f"{self._nonfinite_streak} consecutive non-finite losses (last: {terms}); the run diverged. "
                "Lower train.optimizer.lr, raise train.scheduler.warmup_steps, keep train.grad_clip set, or "
                "check the data for broken boxes (tools/browse_dataset.py)."
            )
        if dist.is_available() and dist.is_initialized():
            # Every DDP rank must join the gradient all-reduce: contribute zero gradients instead, to
            # every parameter (the auxiliary head's too, which `raw` does not reach).
            return sum(p.sum() for p in self.model.parameters() if p.requires_grad) * 0.0
        return None  # Lightning skips backward and the optimizer step

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        if self.ema is not None:
            self.ema.update(self.model)

    def configure_optimizers(self) -> Dict[str, Any]:
        optimizer = build_optimizer(self.model, **self.hparams.optimizer)
        total_steps = int(self.trainer.estimated_stepping_batches)
        epochs = max(int(self.trainer.max_epochs or 1), 1)
        scheduler = build_scheduler(optimizer, total_steps, max(total_steps // epochs, 1), **self.hparams.scheduler)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    # --------------------------------------------------------------------------- validation
    def on_validation_epoch_start(self) -> None:
        self._val_predictions = {}
        self._val_unreadable = {}

    def validation_step(self, batch: Dict[str, Any], batch_idx: int) -> None:
        self._val_unreadable.update(unreadable_in_batch(batch))
        # A batch whose images were all unreadable (B = 0) takes the same path: the loss still
        # joins its all-reduce and val/loss is still logged, as on every other rank.
        images = batch["images"].contiguous(memory_format=self.memory_format)
        input_hw = tuple(images.shape[-2:])
        model = self.eval_model
        raw = model(images)
        losses = model.loss(raw, batch["targets"], input_hw)
        self.log("val/loss", losses["loss"], sync_dist=True, batch_size=images.shape[0])
        for meta, pred in zip(batch["metas"], model.predict(raw, batch["metas"], input_hw)):
            self._val_predictions[int(meta["image_id"])] = {k: v.cpu().numpy() for k, v in pred.items()}

    def on_validation_epoch_end(self) -> None:
        predictions = gather_predictions(self._val_predictions)
        unreadable = gather_unreadable(self._val_unreadable)  # same order of collectives on all ranks
        self._val_predictions, self._val_unreadable = {}, {}
        if self.trainer.sanity_checking or self.evaluator is None:
            return
        result = self._evaluate_on_rank_zero(predictions, unreadable)
        if self.trainer.is_global_zero:
            logger.info("epoch %d: mAP %.4f, AP50 %.4f (%d images, %d detections)\n%s", self.current_epoch,
                        result.stats[0], result.stats[1], len(predictions), result.num_detections, result.table)
            logger.debug("epoch %d COCO summary:\n%s", self.current_epoch, result.summary)
        # Every rank holds rank 0's numbers, so the max over ranks is a no-op; sync_dist tells Lightning
        # they are global (ModelCheckpoint reads them on every rank).
        metrics = {**result.metrics("val/"), "val/num_images": float(len(predictions))}
        self.log_dict({k: float(v) for k, v in metrics.items()}, sync_dist=True, reduce_fx="max")
        self.last_eval = result

    def _evaluate_on_rank_zero(self, predictions: Dict[int, Dict[str, np.ndarray]],
                               unreadable: Dict[int, str]) -> CocoEvalResult:
        """COCOeval of the gathered predictions, run once (on rank 0) and sent to every rank, so its
        warnings are logged once and all ranks log the same numbers. An evaluation error is raised
        on every rank, so no rank waits for the others."""
        result: Optional[CocoEvalResult] = None
        error: Optional[Exception] = None
        if self.trainer.is_global_zero:
            try:
                result = self.evaluator.evaluate(predictions, unreadable=unreadable)
            except Exception as exc:  # raised below, once the other ranks know of it
                error = exc
        message = None if error is None else f"{type(error).__name__}: {error}"
        result, message = self.trainer.strategy.broadcast((result, message), src=0)
        if error is not None:
            raise error
        if message is not None:
            raise RuntimeError(f"the validation evaluation failed on rank 0: {message}")
        return result
