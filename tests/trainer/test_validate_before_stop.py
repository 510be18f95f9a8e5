"""A run that stops between scheduled validations still validates, and can keep, its final weights."""
import csv
import types
from pathlib import Path

import pytest
import torch
from pytorch_lightning.callbacks import Callback, timer as timer_module

from nanodet_ghost.model.weights import read_checkpoint
from nanodet_ghost.trainer.runner import train

from trainer_helpers import tiny_config

BATCHES_PER_EPOCH = 3  # tiny_coco: 12 training images, batch 4, last partial batch dropped


class FakeClock:
    """Stands in for the `time` module of Lightning's Timer: time moves only when told to."""

    def __init__(self) -> None:
        self.now = 0.0

    def monotonic(self) -> float:
        return self.now


class TimeRunsOutAt(Callback):
    """Moves the fake clock past any time limit after batch `batch` of epoch `epoch`."""

    def __init__(self, clock: FakeClock, epoch: int, batch: int) -> None:
        self.clock, self.epoch, self.batch = clock, epoch, batch

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if (trainer.current_epoch, batch_idx) == (self.epoch, self.batch):
            self.clock.now += 3600.0


def _validated_epochs(save_dir: Path) -> list:
    rows = csv.DictReader(open(save_dir / "logs" / "version_0" / "metrics.csv"))
    return [int(r["epoch"]) for r in rows if r.get("val/mAP")]


@pytest.mark.parametrize("stop", ["max_time", "max_steps", "max_epochs"])
def test_final_weights_are_validated_and_can_be_best(tiny_coco, tmp_path, monkeypatch, stop):
    # val_interval 5 > the 2 epochs run: without the final validation nothing would be validated.
    overrides = ["train.max_epochs=2", "train.val_interval=5"]
    callbacks = []
    if stop == "max_time":
        clock = FakeClock()
        monkeypatch.setattr(timer_module, "time", types.SimpleNamespace(monotonic=clock.monotonic))
        overrides.append("train.max_time=00:00:01:00")
        callbacks.append(TimeRunsOutAt(clock, epoch=1, batch=0))
    elif stop == "max_steps":
        overrides.append(f"train.max_steps={BATCHES_PER_EPOCH + 1}")
    save_dir = tmp_path / stop
    train(tiny_config(tiny_coco, save_dir, overrides), extra_callbacks=callbacks, evaluate_at_end=False)

    last = read_checkpoint(save_dir / "checkpoints" / "last.ckpt")
    stop_step = BATCHES_PER_EPOCH + 1 if stop != "max_epochs" else 2 * BATCHES_PER_EPOCH
    assert (last["epoch"], last["global_step"]) == (1, stop_step)
    assert _validated_epochs(save_dir) == [1]

    best = read_checkpoint(save_dir / "checkpoints" / "best.ckpt")
    assert best["global_step"] == stop_step
    assert best["state_dict"].keys() == last["state_dict"].keys()
    for key, value in best["state_dict"].items():
        assert torch.equal(value, last["state_dict"][key]), key
    monitor = next(v for k, v in last["callbacks"].items() if "'monitor': 'val/mAP'" in k)
    assert monitor["best_model_path"].endswith("best.ckpt") and monitor["best_model_score"] is not None
