"""Callbacks of the training run."""
from __future__ import annotations

import logging
from typing import Optional, Sequence

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import Callback
from pytorch_lightning.trainer.states import TrainerFn
from torch.utils.flop_counter import FlopCounterMode

from nanodet_ghost.model import count_parameters

logger = logging.getLogger(__name__)


def run_is_ending(trainer: pl.Trainer) -> bool:
    """True at the end of a training epoch after which `fit` stops: `max_epochs`, `max_steps`, or
    `trainer.should_stop` (set by the `max_time` Timer, early stopping or another callback)."""
    if trainer.should_stop:
        return True
    max_steps = trainer.max_steps
    if max_steps is not None and max_steps >= 0 and trainer.global_step >= max_steps:
        return True
    max_epochs = trainer.max_epochs
    return max_epochs is not None and max_epochs >= 0 and trainer.current_epoch + 1 >= max_epochs


class ValidateBeforeStop(Callback):
    """Validate the weights a run stops with, so that they can become the best checkpoint.

    With `check_val_every_n_epoch > 1`, Lightning validates only every n-th epoch. A run that
    stops in between (its `max_time` ran out, `max_steps` was reached mid-epoch, or `max_epochs`
    is not a multiple of n) would otherwise end with weights that were never validated and can
    never be chosen. At the end of the last epoch this callback runs the validation loop when the
    current weights have not been validated yet. It runs before the checkpoint callbacks' epoch-end
    hooks, so `ModelCheckpoint(monitor=...)` sees the new score and `last.ckpt` includes it.
    """

    def __init__(self) -> None:
        self._validated_step: Optional[int] = None

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not trainer.sanity_checking and trainer.state.fn == TrainerFn.FITTING:
            self._validated_step = trainer.global_step

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not trainer.enable_validation or not run_is_ending(trainer):
            return
        if self._validated_step == trainer.global_step:
            return
        logger.info("training stops after epoch %d (step %d): validating its final weights",
                    trainer.current_epoch, trainer.global_step)
        # As the training epoch loop runs a scheduled validation (Lightning 2.x).
        trainer.validating = True
        try:
            trainer.fit_loop.epoch_loop.val_loop.run()
        finally:
            trainer.training = True


class DetectorSummary(Callback):
    """Log the detector's size in one line when fitting starts (rank 0), in place of Lightning's
    model summary, which counts the EMA copy as a second model and, without an example input,
    reports 0 FLOPs.

    Parameters are those deployed (`count_parameters`: no training-only auxiliary head);
    multiply-adds are counted by torch's `FlopCounterMode` over one forward pass of the validated
    weights on a `[1, 3, H, W]` image, as tools/flops.py counts them (convolutions and matrix
    products; MACs = FLOPs / 2).

    Args:
        input_size: (W, H) of the validation input, `data.input_size`.
    """

    def __init__(self, input_size: Sequence[int]) -> None:
        self.width, self.height = int(input_size[0]), int(input_size[1])

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not trainer.is_global_zero:
            return
        model = pl_module.eval_model  # what pl_module(images) runs
        was_training = model.training
        model.eval()  # a train-mode BatchNorm would learn from the zero image
        counter = FlopCounterMode(display=False)
        try:
            with counter, torch.no_grad():
                pl_module(torch.zeros(1, 3, self.height, self.width, device=pl_module.device))
        finally:
            model.train(was_training)
        macs = counter.get_total_flops() // 2
        logger.info("model: %.3f M parameters, %.3f GMACs (%.3f GFLOPs) per %dx%d image",
                    count_parameters(pl_module.model) / 1e6, macs / 1e9, 2 * macs / 1e9,
                    self.width, self.height)
