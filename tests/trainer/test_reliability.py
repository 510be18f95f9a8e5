"""Reliability: non-finite losses, class-count and architecture mismatches, unsafe checkpoints."""
import os
import subprocess
import sys

import pytest
import torch

from nanodet_ghost.data.base import DatasetError
from nanodet_ghost.model import build_model
from nanodet_ghost.paths import REPO_ROOT
from nanodet_ghost.model.weights import (
    CheckpointMismatchError,
    load_detector_weights,
    load_for_finetune,
    read_checkpoint,
)
from nanodet_ghost.trainer.module import DetectorModule, NonFiniteLossError
from nanodet_ghost.trainer.runner import ClassCountError, build_module, train

from trainer_helpers import tiny_config, write_config


def _module(cfg, patience=3) -> DetectorModule:
    return DetectorModule(build_model(cfg.model), {"name": "AdamW"}, {"name": "cosine"},
                          ema_decay=None, nonfinite_patience=patience)


def _batch(cfg):
    return {
        "images": torch.zeros(1, 3, 128, 128),
        "targets": [{"boxes": torch.tensor([[10.0, 10.0, 60.0, 70.0]]), "labels": torch.tensor([1])}],
        "metas": [{}],
    }


def test_nonfinite_loss_skips_then_aborts(tiny_coco, tmp_path, caplog):
    cfg = tiny_config(tiny_coco, tmp_path / "nan")
    module = _module(cfg, patience=3)
    batch = _batch(cfg)
    assert torch.isfinite(module.training_step(batch, 0))
    with torch.no_grad():
        module.model.head.predictors[0].weight.fill_(float("nan"))
    assert module.training_step(batch, 1) is None  # skipped, with a warning
    assert module.training_step(batch, 2) is None
    assert "non-finite loss" in caplog.text
    with pytest.raises(NonFiniteLossError, match="3 consecutive non-finite losses"):
        module.training_step(batch, 3)


def test_class_count_disagreeing_with_names_fails_before_training(tiny_coco, tmp_path):
    cfg = tiny_config(tiny_coco, tmp_path / "count", ["model.head.num_classes=5"])
    with pytest.raises(ClassCountError, match="num_classes is 5 but data.class_names lists 6"):
        train(cfg)
    assert not (tmp_path / "count" / "checkpoints").exists()


def test_dataset_with_other_classes_fails_before_training(tiny_coco, tmp_path):
    names = ["a", "b", "c"]
    cfg = tiny_config(tiny_coco, tmp_path / "names", extra={"data.class_names": names, "model.head.num_classes": 3})
    with pytest.raises(DatasetError) as err:
        train(cfg)
    message = str(err.value)
    assert str(tiny_coco / "train" / "annotations.json") in message  # names the file
    assert "class_names do not match the json categories" in message
    assert "in class_names only: ['a', 'b', 'c']" in message and "'circle'" in message
    assert not (tmp_path / "names" / "checkpoints").exists()


def test_checkpoint_of_other_class_count_lists_mismatches(tiny_coco, tmp_path):
    cfg6 = tiny_config(tiny_coco, tmp_path / "six")
    path = tmp_path / "six.ckpt"
    torch.save({"state_dict": {f"model.{k}": v for k, v in build_model(cfg6.model).state_dict().items()}}, path)
    cfg3 = tiny_config(tiny_coco, tmp_path / "three", ["model.head.num_classes=3"])
    with pytest.raises(CheckpointMismatchError) as err:
        load_detector_weights(build_model(cfg3.model), path)
    message = str(err.value)
    assert "head.predictors.0.weight: file (38, 96, 1, 1) vs model (35, 96, 1, 1)" in message
    assert "num_classes" in message


def test_checkpoint_of_other_architecture_lists_mismatches(tiny_coco, tmp_path):
    cfg = tiny_config(tiny_coco, tmp_path / "arch")
    path = tmp_path / "narrow.ckpt"
    narrow = build_model(tiny_config(tiny_coco, tmp_path / "n", ["model.backbone.width=0.5"]).model)
    torch.save(narrow.state_dict(), path)
    with pytest.raises(CheckpointMismatchError, match=r"shape mismatches \(431\): backbone.blocks.0.0.ghost1.cheap_operation.0.weight: "
                       r"file \(4, 1, 3, 3\) vs model \(8, 1, 3, 3\).* and 421 more"):
        load_detector_weights(build_model(cfg.model), path)


class _Exploit:
    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_unsafe_checkpoint_is_refused_without_running_code(tmp_path):
    marker = tmp_path / "pwned"
    exploit = _Exploit()
    exploit.marker = marker
    path = tmp_path / "evil.ckpt"
    torch.save({"state_dict": {}, "payload": exploit}, path)
    with pytest.raises(CheckpointMismatchError, match="weights-only"):
        read_checkpoint(path)
    assert not marker.exists()


def test_finetune_with_other_class_count_reinitialises_head(tiny_coco, tmp_path, caplog):
    source_cfg = tiny_config(tiny_coco, tmp_path / "src", ["model.head.num_classes=3"],
                             extra={"data.class_names": ["a", "b", "c"]})
    source = build_module(source_cfg)
    ckpt = tmp_path / "src.ckpt"
    torch.save({"state_dict": source.state_dict()}, ckpt)

    cfg = tiny_config(tiny_coco, tmp_path / "ft", [f"train.load_from={ckpt}"])
    module = build_module(cfg)
    assert torch.equal(module.model.backbone.conv_stem.weight, source.ema.module.backbone.conv_stem.weight)
    assert module.model.head.predictors[0].weight.shape[0] == 6 + 32
    assert "head.predictors.0.weight" in caplog.text and "skipped" in caplog.text
    assert torch.equal(module.ema.module.backbone.conv_stem.weight, module.model.backbone.conv_stem.weight)
    skipped = load_for_finetune(build_model(cfg.model), ckpt)
    assert sorted(s.split(":")[0] for s in skipped) == sorted(
        f"head.predictors.{i}.{p}" for i in range(3) for p in ("weight", "bias"))


def test_train_cli_reports_config_errors_in_one_line(tiny_coco, tmp_path):
    path = write_config(tiny_coco, tmp_path / "cli", {"train.max_epochz": 3})
    proc = subprocess.run([sys.executable, str(REPO_ROOT / "tools" / "train.py"), str(path)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert "max_epochz" in proc.stderr and str(path) in proc.stderr
    assert "Traceback" not in proc.stderr
