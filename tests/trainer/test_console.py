"""What a training run prints: each validation once, no third-party notices the user cannot act on.

The whole console (stdout and stderr) of tools/train.py on the tiny synthetic dataset at 64x64,
in one process and in two gloo DDP processes on the CPU.
"""
from __future__ import annotations

import csv
import logging
import re
import subprocess
import sys
from pathlib import Path

import pytest
import pytorch_lightning as pl

from nanodet_ghost.paths import REPO_ROOT
from nanodet_ghost.trainer.datamodule import DetectionDataModule
from nanodet_ghost.trainer.runner import build_module

from trainer_helpers import tiny_config, write_config

# Lightning's advertisement, torch's deprecation notice from inside Lightning, the CSV logger's
# stale-log warning and Lightning's per-metric DDP advice.
FORBIDDEN = ("Tip", "litlogger", "deprecated", "will be deleted", "sync_dist")
VALIDATION_LINE = re.compile(r"epoch (\d+): mAP \d\.\d{4}, AP50 \d\.\d{4} \(\d+ images, \d+ detections\)$", re.M)
TABLE_HEADER = re.compile(r"^class +AP +AP50 +AP75 +#gt$", re.M)
COCO_SUMMARY_FIRST_LINE = "Average Precision  (AP) @[ IoU=0.50:0.95 | area=   all | maxDets=100 ]"


def validated_epochs(save_dir: Path) -> list:
    """The epochs with a validation, from the CSV log."""
    rows = csv.DictReader(open(save_dir / "logs" / "version_0" / "metrics.csv"))
    return [r["epoch"] for r in rows if r.get("val/mAP")]


@pytest.mark.parametrize("devices", ["1", pytest.param("2", marks=pytest.mark.slow)])
def test_training_console_says_each_thing_once(devices, tiny_coco, tmp_path):
    save_dir = tmp_path / "run"
    config = write_config(tiny_coco, save_dir, {
        "data.input_size": [64, 64], "train.devices": devices, "train.plots": False,
        **({"train.strategy": "ddp"} if devices == "2" else {}),
    })
    proc = subprocess.run([sys.executable, str(REPO_ROOT / "tools" / "train.py"), str(config)],
                          capture_output=True, text=True, timeout=400, cwd=tmp_path)
    console = proc.stdout + proc.stderr
    assert proc.returncode == 0, proc.stderr[-3000:]
    if devices == "2":
        assert "distributed_backend=gloo" in console

    epochs = validated_epochs(save_dir)
    assert len(epochs) == 2
    assert VALIDATION_LINE.findall(proc.stderr) == epochs, proc.stderr[-3000:]  # once each, in order
    assert len(TABLE_HEADER.findall(proc.stderr)) == len(epochs) + 1  # + the final evaluation's
    for text in FORBIDDEN:
        assert text not in console, f"{text!r} in the console:\n{console[-3000:]}"

    assert proc.stderr.count("annotations: 12 images") == 1  # the training set, loaded by each rank
    assert re.search(r"model: \d+\.\d{3} M parameters, \d+\.\d{3} GMACs", proc.stderr)
    assert "Total FLOPs" not in console
    # The final evaluation: its full COCO summary (once: validations show it at DEBUG only) and mAP.
    assert "final val evaluation of best.ckpt:" in proc.stderr
    assert proc.stderr.count(COCO_SUMMARY_FIRST_LINE) == 1
    assert re.search(r"^val mAP@\[\.5:\.95\] = \d\.\d{4}$", proc.stdout, re.M)


def test_validation_logs_one_line_and_the_table_at_info_the_coco_summary_at_debug(tiny_coco, tmp_path, caplog):
    cfg = tiny_config(tiny_coco, tmp_path / "run", ["data.input_size=[64,64]"])
    trainer = pl.Trainer(accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False)
    with caplog.at_level(logging.DEBUG, logger="nanodet_ghost"):
        trainer.validate(build_module(cfg), datamodule=DetectionDataModule(cfg.data, seed=0))
    info = "\n".join(r.getMessage() for r in caplog.records if r.levelno == logging.INFO)
    debug = "\n".join(r.getMessage() for r in caplog.records if r.levelno == logging.DEBUG)
    assert len(VALIDATION_LINE.findall(info)) == 1 and len(TABLE_HEADER.findall(info)) == 1
    assert COCO_SUMMARY_FIRST_LINE not in info
    assert debug.count(COCO_SUMMARY_FIRST_LINE) == 1
