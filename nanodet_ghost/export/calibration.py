"""Calibration images for INT8 post-training quantization (ONNX Runtime and NNCF share them).

Images are read from a config split's source and go through the validation preprocessing
(`preprocess_image`: letterbox + BGR normalisation, the same as every predictor), so the
quantizer sees the activations deployment will see. No augmentation.
"""
from __future__ import annotations

import logging
from typing import Any, List, Sequence

import numpy as np

from nanodet_ghost.data.image_io import ImageReadError
from nanodet_ghost.data.transforms import preprocess_image

logger = logging.getLogger(__name__)

SPLITS = ("train", "val", "test")


class CalibrationError(ValueError):
    """No usable calibration images (missing split, empty split, every image unreadable)."""


def pick_indices(total: int, count: int, seed: int = 0) -> List[int]:
    """`min(count, total)` distinct indices of range(total), a seeded random sample in increasing order."""
    if count <= 0:
        raise CalibrationError(f"the number of calibration images must be positive, got {count}")
    rng = np.random.default_rng(seed)
    return sorted(rng.choice(total, size=min(count, total), replace=False).tolist())


def calibration_images(cfg: Any, split: str = "train", count: int = 200, input_size: Sequence[int] = (),
                       seed: int = 0) -> np.ndarray:
    """Validation-preprocessed images of `cfg.data.<split>`.

    Args:
        cfg: the loaded config (data section: the split, mean/std, keep_ratio).
        split: train, val or test.
        count: how many images (all of the split when it has fewer).
        input_size: (W, H); default `cfg.data.input_size`.
        seed: which images are drawn.
    Returns:
        float32 [K, 3, H, W]. Unreadable images are skipped, counted and logged once.
    Raises:
        CalibrationError: unknown or absent split, no images, or none readable.
    """
    from nanodet_ghost.data.loader import build_source_for

    if split not in SPLITS:
        raise CalibrationError(f"calibration split must be one of {SPLITS}, got {split!r}")
    dataset_cfg = cfg.data.get(split)
    if dataset_cfg is None:
        raise CalibrationError(f"the config has no data.{split} section to calibrate on (use --calib-split)")
    source = build_source_for(dataset_cfg, list(cfg.data.class_names), split)
    if len(source) == 0:
        raise CalibrationError(f"data.{split} has no images to calibrate on")
    size = [int(v) for v in (input_size or cfg.data.input_size)]
    mean, std, keep_ratio = list(cfg.data.mean), list(cfg.data.std), bool(cfg.data.keep_ratio)
    images, skipped = [], []
    for index in pick_indices(len(source), count, seed):
        try:
            img = source.load_image(index)
        except ImageReadError as exc:
            skipped.append(str(exc))
            continue
        images.append(preprocess_image(img, size, keep_ratio, mean, std)[0])
    if skipped:
        logger.warning("calibration: skipped %d unreadable image(s) of data.%s, e.g. %s", len(skipped), split,
                       skipped[0])
    if not images:
        raise CalibrationError(f"none of the {len(skipped)} calibration images of data.{split} could be read")
    logger.info("calibration: %d images of data.%s at %dx%d", len(images), split, size[0], size[1])
    return np.stack(images).astype(np.float32)
