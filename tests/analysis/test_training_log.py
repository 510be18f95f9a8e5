"""Per-epoch series from Lightning's CSV logs, a resumed run included."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from nanodet_ghost.analysis.training_log import read_training_log

HEADER = "epoch,lr-AdamW/pg1,step,train/loss,train/loss_qfl,val/mAP,val/loss\n"


def write_log(save_dir: Path, version: int, rows: str) -> None:
    path = save_dir / "logs" / f"version_{version}" / "metrics.csv"
    path.parent.mkdir(parents=True)
    path.write_text(HEADER + rows)


def test_epoch_means_validation_and_lr(tmp_path: Path) -> None:
    write_log(tmp_path, 0, (
        ",0.001,0,,,,\n"         # LearningRateMonitor rows have no epoch
        "0,,0,4.0,1.0,,\n"
        ",0.002,1,,,,\n"
        "0,,1,2.0,0.5,,\n"
        "0,,1,,,0.10,3.0\n"      # validation after epoch 0
        ",0.003,2,,,,\n"
        "1,,2,1.0,0.25,,\n"
        ",0.004,3,,,,\n"          # logged after the last training row of epoch 1
    ))
    log = read_training_log(tmp_path)
    epochs, loss = log.get("train/loss")
    np.testing.assert_array_equal(epochs, [0, 1])
    np.testing.assert_allclose(loss, [3.0, 1.0])
    np.testing.assert_allclose(log.get("train/loss_qfl")[1], [0.75, 0.25])
    np.testing.assert_array_equal(log.get("val/mAP")[0], [0])
    np.testing.assert_allclose(log.get("val/mAP")[1], [0.10])
    np.testing.assert_allclose(log.get("lr-AdamW/pg1")[1], [0.002, 0.003])  # at each epoch's last step
    assert log.names("lr-") == ["lr-AdamW/pg1"]


def test_resumed_run_replaces_the_epochs_it_logged_again(tmp_path: Path) -> None:
    write_log(tmp_path, 0, "0,,0,4.0,1.0,,\n1,,1,3.0,1.0,,\n")
    write_log(tmp_path, 1, "1,,1,2.0,1.0,,\n2,,2,1.0,1.0,,\n")  # resumed at epoch 1
    write_log(tmp_path, 10, "3,,3,0.5,1.0,,\n")  # versions sort as numbers, not text
    epochs, loss = read_training_log(tmp_path).get("train/loss")
    np.testing.assert_array_equal(epochs, [0, 1, 2, 3])
    np.testing.assert_allclose(loss, [4.0, 2.0, 1.0, 0.5])


def test_no_logs_and_unreadable_logs(tmp_path: Path, caplog) -> None:
    assert read_training_log(tmp_path).series == {}
    bad = tmp_path / "logs" / "version_0" / "metrics.csv"
    bad.parent.mkdir(parents=True)
    bad.write_bytes(b"epoch,step\n\xff\xfe\x00bad")
    assert read_training_log(tmp_path).series == {}
    assert f"skipping training log {bad}" in caplog.text
