"""Resume continues exactly, and checkpoints are never half-written."""
from pathlib import Path

import pytest
import torch
from pytorch_lightning.callbacks import Callback

from nanodet_ghost.trainer import checkpoint as checkpoint_module
from nanodet_ghost.trainer.checkpoint import AtomicCheckpointIO, read_checkpoint
from nanodet_ghost.trainer.runner import train

from trainer_helpers import tiny_config


class SimulatedCrash(RuntimeError):
    pass


class CrashAtEpoch(Callback):
    """Dies at the start of `epoch`, after the previous epoch's checkpoint was written."""

    def __init__(self, epoch: int) -> None:
        self.epoch = epoch

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        if trainer.current_epoch == self.epoch:
            bar = trainer.progress_bar_callback
            if bar is not None and getattr(bar, "_train_progress_bar", None) is not None:
                bar._train_progress_bar.close()  # else tqdm prints it again at interpreter exit
            raise SimulatedCrash(f"killed at the start of epoch {self.epoch}")


def _final_state(save_dir: Path) -> dict:
    return read_checkpoint(save_dir / "checkpoints" / "last.ckpt")


def test_resume_matches_unbroken_run(tiny_coco, tmp_path):
    overrides = ["train.max_epochs=4", "train.deterministic=true", "train.val_interval=2"]
    straight = tiny_config(tiny_coco, tmp_path / "straight", overrides)
    train(straight, evaluate_at_end=False)

    broken = tiny_config(tiny_coco, tmp_path / "broken", overrides)
    with pytest.raises(SimulatedCrash):
        train(broken, extra_callbacks=[CrashAtEpoch(2)], evaluate_at_end=False)
    interrupted = _final_state(tmp_path / "broken")
    assert interrupted["epoch"] == 1  # epochs 0 and 1 done
    train(broken, resume="last", evaluate_at_end=False)

    a, b = _final_state(tmp_path / "straight"), _final_state(tmp_path / "broken")
    assert a["global_step"] == b["global_step"] > interrupted["global_step"]
    assert a["state_dict"].keys() == b["state_dict"].keys()
    assert any(k.startswith("ema.module.") for k in a["state_dict"])
    for key, value in a["state_dict"].items():
        assert torch.equal(value, b["state_dict"][key]), key
    assert a["lr_schedulers"][0]["last_epoch"] == b["lr_schedulers"][0]["last_epoch"]
    for sa, sb in zip(a["optimizer_states"][0]["state"].values(), b["optimizer_states"][0]["state"].values()):
        assert torch.equal(sa["exp_avg"], sb["exp_avg"])


def test_resume_without_checkpoint_fails_clearly(tiny_coco, tmp_path):
    cfg = tiny_config(tiny_coco, tmp_path / "fresh")
    with pytest.raises(FileNotFoundError, match="last.ckpt"):
        train(cfg, resume="last")


def test_checkpoint_write_is_atomic(tmp_path, monkeypatch):
    target = tmp_path / "last.ckpt"
    io = AtomicCheckpointIO()
    io.save_checkpoint({"state_dict": {"w": torch.ones(3)}, "epoch": 1}, target)

    def dying_save(obj, path, *args, **kwargs):
        Path(path).write_bytes(b"PK\x03\x04 half a zip")  # a partial write, then the process dies
        raise KeyboardInterrupt("killed while saving")

    monkeypatch.setattr(checkpoint_module.torch, "save", dying_save)
    with pytest.raises(KeyboardInterrupt):
        io.save_checkpoint({"state_dict": {"w": torch.zeros(3)}, "epoch": 2}, target)
    monkeypatch.undo()
    survivor = read_checkpoint(target)
    assert survivor["epoch"] == 1 and torch.equal(survivor["state_dict"]["w"], torch.ones(3))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.ckpt"]  # no temp file left behind
