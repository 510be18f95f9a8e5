"""Resume continues exactly, and checkpoints are never half-written."""
import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from pytorch_lightning.callbacks import Callback

from nanodet_ghost.config import load_config
from nanodet_ghost.model.weights import read_checkpoint
from nanodet_ghost.paths import REPO_ROOT
from nanodet_ghost.trainer import checkpoint as checkpoint_module
from nanodet_ghost.trainer.checkpoint import AtomicCheckpointIO
from nanodet_ghost.trainer.runner import train

from trainer_helpers import tiny_config, write_config

_spec = importlib.util.spec_from_file_location("tool_train", REPO_ROOT / "tools" / "train.py")
train_tool = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(train_tool)


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


@pytest.mark.slow
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


class RecordBatches(Callback):
    """Keeps the images, boxes and labels of every training batch of epoch `epoch`."""

    def __init__(self, epoch: int) -> None:
        self.epoch = epoch
        self.batches = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if trainer.current_epoch == self.epoch:
            self.batches.append((batch["images"].clone(), [t["boxes"].clone() for t in batch["targets"]],
                                 [t["labels"].clone() for t in batch["targets"]]))


@pytest.mark.slow
def test_resume_with_workers_replays_the_same_batches(tiny_coco, tmp_path):
    """Two DataLoader workers: epoch 1 after a resume sees the images and boxes of an unbroken run."""
    overrides = ["train.max_epochs=2", "train.val_interval=5", "data.num_workers=2"]
    straight = RecordBatches(epoch=1)
    train(tiny_config(tiny_coco, tmp_path / "straight", overrides), extra_callbacks=[straight],
          evaluate_at_end=False)

    broken_cfg = tiny_config(tiny_coco, tmp_path / "broken", overrides)
    with pytest.raises(SimulatedCrash):
        train(broken_cfg, extra_callbacks=[CrashAtEpoch(1)], evaluate_at_end=False)
    resumed = RecordBatches(epoch=1)
    train(broken_cfg, resume="last", extra_callbacks=[resumed], evaluate_at_end=False)

    assert len(straight.batches) == len(resumed.batches) == 3
    for (images_a, boxes_a, labels_a), (images_b, boxes_b, labels_b) in zip(straight.batches, resumed.batches):
        assert torch.equal(images_a, images_b)
        assert all(torch.equal(a, b) for a, b in zip(boxes_a, boxes_b))
        assert all(torch.equal(a, b) for a, b in zip(labels_a, labels_b))


@pytest.mark.slow
def test_train_cli_resume_then_overrides(tiny_coco, tmp_path):
    """`tools/train.py CONFIG --resume train.max_epochs=2`: the override is not taken for a path."""
    config = write_config(tiny_coco, tmp_path / "cli", {"train.max_epochs": 1, "train.val_interval": 5})
    train(load_config(config), evaluate_at_end=False)
    assert _final_state(tmp_path / "cli")["epoch"] == 0

    proc = subprocess.run([sys.executable, str(REPO_ROOT / "tools" / "train.py"), str(config), "--resume",
                           "train.max_epochs=2", "--no-final-eval"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    resumed = _final_state(tmp_path / "cli")
    assert (resumed["epoch"], resumed["global_step"]) == (1, 6)  # one more epoch of 3 batches
    assert (tmp_path / "cli" / "logs" / "version_1").is_dir()


def test_train_cli_resume_options():
    args = train_tool.parse_args(["c.yml", "--resume", "train.max_epochs=60", "data.batch_size=8"])
    assert args.resume and args.resume_from is None
    assert args.overrides == ["train.max_epochs=60", "data.batch_size=8"]
    args = train_tool.parse_args(["c.yml", "a=1", "--resume-from", "x.ckpt", "b=2"])
    assert not args.resume and args.resume_from == "x.ckpt" and args.overrides == ["a=1", "b=2"]
    with pytest.raises(SystemExit):
        train_tool.parse_args(["c.yml", "--resume", "--resume-from", "x.ckpt"])


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
