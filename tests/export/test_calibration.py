"""INT8 calibration images: validation preprocessing, unreadable files skipped and counted, and clear
errors for a split that cannot calibrate."""
from __future__ import annotations

import json
import logging
from pathlib import Path

import cv2
import numpy as np
import pytest

from nanodet_ghost.config import load_config
from nanodet_ghost.data.transforms import preprocess_image
from nanodet_ghost.export.calibration import CalibrationError, calibration_images, pick_indices
from nanodet_ghost.paths import CONFIG_DIR


def write_coco(folder: Path, broken: int = 1) -> None:
    """Three 80x60 images (one of them, `broken`, a truncated JPEG) and their COCO json."""
    (folder / "images").mkdir(parents=True)
    images = []
    for i in range(3):
        path = folder / "images" / f"{i}.jpg"
        if i == broken:
            path.write_bytes(b"\xff\xd8\xff\xe0 truncated")
        else:
            cv2.imwrite(str(path), np.full((60, 80, 3), 60 * (i + 1), np.uint8))
        images.append({"id": i + 1, "file_name": path.name, "width": 80, "height": 60})
    annotations = [{"id": i + 1, "image_id": i + 1, "category_id": 1, "bbox": [10, 10, 20, 20], "area": 400,
                    "iscrowd": 0} for i in range(3)]
    (folder / "ann.json").write_text(json.dumps({"images": images, "annotations": annotations,
                                                 "categories": [{"id": 1, "name": "thing"}]}))


def coco_cfg(folder: Path):
    return load_config(CONFIG_DIR / "quickstart.yml", [
        "model.head.num_classes=1", "data.class_names=[thing]", "data.train.format=coco",
        f"data.train.root={folder / 'images'}", f"data.train.ann_file={folder / 'ann.json'}"])


def test_unreadable_images_are_skipped_and_counted(tmp_path: Path, caplog) -> None:
    write_coco(tmp_path)
    cfg = coco_cfg(tmp_path)
    with caplog.at_level(logging.WARNING, logger="nanodet_ghost.export.calibration"):
        images = calibration_images(cfg, "train", 10, (64, 48))
    assert images.shape == (2, 3, 48, 64) and images.dtype == np.float32
    assert "calibration: skipped 1 unreadable image(s) of data.train, e.g. " in caplog.text and "1.jpg" in caplog.text
    # the validation preprocessing, nothing else
    expected, _ = preprocess_image(cv2.imread(str(tmp_path / "images" / "0.jpg")), (64, 48), True,
                                   cfg.data.mean, cfg.data.std)
    np.testing.assert_array_equal(images[0], expected)


def test_splits_that_cannot_calibrate(tmp_path: Path) -> None:
    write_coco(tmp_path)
    cfg = coco_cfg(tmp_path)
    assert cfg.data.get("test") is None
    with pytest.raises(CalibrationError, match=r"the config has no data\.test section to calibrate on \(use "
                                               r"--calib-split\)"):
        calibration_images(cfg, "test", 4)
    with pytest.raises(CalibrationError, match="calibration split must be one of"):
        calibration_images(cfg, "holdout", 4)
    with pytest.raises(CalibrationError, match="must be positive, got 0"):
        calibration_images(cfg, "train", 0)
    only_broken = tmp_path / "broken"
    write_coco(only_broken)
    for i in (0, 2):
        (only_broken / "images" / f"{i}.jpg").write_bytes(b"not an image")
    with pytest.raises(CalibrationError, match=r"none of the 3 calibration images of data\.train could be read"):
        calibration_images(coco_cfg(only_broken), "train", 4)


def test_pick_indices_is_a_seeded_sample_without_repeats() -> None:
    picked = pick_indices(100, 10, seed=3)
    assert picked == sorted(set(picked)) and len(picked) == 10 and picked == pick_indices(100, 10, seed=3)
    assert picked != pick_indices(100, 10, seed=4)
    assert pick_indices(5, 10) == [0, 1, 2, 3, 4]
