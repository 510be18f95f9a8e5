"""Schema of the `data:` section of a config (merged into `nanodet_ghost.config.Config`)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import List, Optional


@dataclass
class DatasetConfig:
    """One split. `format` picks the dataset class: coco, voc, yolo or synthetic."""

    format: str = "coco"
    root: str = ""  # image folder (coco), VOC root / folder (voc), folder or data.yaml (yolo)
    ann_file: Optional[str] = None  # coco instances json
    split: Optional[str] = None  # voc/yolo split; layouts in data/voc.py, data/yolo.py
    keep_background: bool = True  # keep images without boxes as negatives
    name: Optional[str] = None  # label in log lines, e.g. "bccd train" (default: from the paths)


@dataclass
class AugmentConfig:
    """Training-time augmentation, NanoDet's defaults: the arguments of `TrainPipeline`."""

    scale: List[float] = field(default_factory=lambda: [0.6, 1.4])  # random zoom range
    # per-axis extra zoom ranges [[x_lo, x_hi], [y_lo, y_hi]]
    stretch: List[List[float]] = field(default_factory=lambda: [[1.0, 1.0], [1.0, 1.0]])
    rotation: float = 0.0  # +- degrees
    shear: float = 0.0  # +- degrees
    perspective: float = 0.0  # +- projective coefficient, e.g. 0.0005
    translate: float = 0.2  # +- fraction of the image size
    flip: float = 0.5  # horizontal flip probability
    flip_vertical: float = 0.0  # vertical flip probability: for top-down views (microscopy, aerial)
    brightness: float = 0.2  # +- fraction of 255 (applied with probability 0.5)
    contrast: List[float] = field(default_factory=lambda: [0.6, 1.4])  # gain range (p 0.5)
    saturation: List[float] = field(default_factory=lambda: [0.5, 1.2])  # grey blend (p 0.5)
    multi_scale: Optional[List[float]] = None  # e.g. [0.75, 1.25]: input size ratio range
    mosaic: float = 0.0  # probability of a 4-image mosaic
    # Zoom range of mosaic samples (default: `scale`). The mosaic's 2x canvas is shown at half size,
    # so `scale` halves its objects; twice `scale`, e.g. [1.2, 2.8], keeps them at the size of single
    # images, as YOLOX's and ultralytics' crop of the canvas does.
    mosaic_scale: Optional[List[float]] = None
    min_box_size: float = 2.0  # boxes narrower or shorter than this (pixels) are dropped


@dataclass
class DataConfig:
    class_names: List[str] = field(default_factory=list)
    input_size: List[int] = field(default_factory=lambda: [320, 320])  # [width, height]: val, test, export
    # [width, height] of training batches when it differs from input_size: training at a smaller size
    # buys epochs, and a fully convolutional detector evaluates well at a somewhat larger one
    train_input_size: Optional[List[int]] = None
    keep_ratio: bool = True
    mean: List[float] = field(default_factory=lambda: [103.53, 116.28, 123.675])  # BGR
    std: List[float] = field(default_factory=lambda: [57.375, 57.12, 58.395])  # BGR
    train: DatasetConfig = field(default_factory=DatasetConfig)
    val: DatasetConfig = field(default_factory=DatasetConfig)
    test: Optional[DatasetConfig] = None
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    batch_size: int = 32  # per device
    val_batch_size: int = 16
    num_workers: int = 2
    # keep what a source verified (records, sizes, skip counts) in a cache file beside the
    # annotations and reuse it while they and the image folders are unchanged (data/label_cache.py)
    cache_labels: bool = True
    pin_memory: bool = False
    # a JPEG whose data stops mid-scan is used (its missing part filled in by the decoder, counted
    # as repaired) when at most this fraction of the picture is missing; beyond, it is unreadable
    max_missing_fraction: float = 0.01
    persistent_workers: bool = False  # faster epoch starts; a resumed run then does not replay augmentations exactly


def check_augment_config(augment: AugmentConfig) -> None:
    """Raise ValueError, naming the key, for a zoom or input-size range that is not `0 < lo <= hi`
    or a mosaic probability outside [0, 1]: numpy would draw from a reversed range, mirror on a
    negative zoom or clamp a negative size without a word."""
    ranges = {"scale": augment.scale, "mosaic_scale": augment.mosaic_scale, "multi_scale": augment.multi_scale}
    for key, value in ranges.items():
        if value is None:
            continue
        if len(value) != 2 or not 0 < value[0] <= value[1]:
            raise ValueError(f"data.augment.{key} must be [lo, hi] with 0 < lo <= hi, got {list(value)}")
    if not 0.0 <= augment.mosaic <= 1.0:
        raise ValueError(f"data.augment.mosaic is a probability in [0, 1], got {augment.mosaic}")
