"""The dataset formats by name, and `build_source` that builds one from a `DatasetConfig`."""
from __future__ import annotations

from typing import Dict, Sequence, Type

from nanodet_ghost.data.base import DatasetError, DetectionSource
from nanodet_ghost.data.coco import CocoSource
from nanodet_ghost.data.config import DatasetConfig
from nanodet_ghost.data.voc import VocSource
from nanodet_ghost.data.yolo import YoloSource

# `format:` value -> source class; each class provides `from_config(cfg, class_names)`.
SOURCES: Dict[str, Type[DetectionSource]] = {
    "coco": CocoSource,
    "voc": VocSource,
    "yolo": YoloSource,
}


def build_source(cfg: DatasetConfig, class_names: Sequence[str],
                 cache_labels: bool = False) -> DetectionSource:
    """The source for one split (`data.train` / `data.val` / `data.test`).

    `class_names` is `data.class_names` (may be empty for coco / yolo, which then take the names
    from the json / data.yaml); `cache_labels` is `data.cache_labels` (see
    `nanodet_ghost.data.label_cache`). Unknown formats raise `DatasetError` listing the known ones.
    """
    try:
        source_cls = SOURCES[cfg.format]
    except KeyError:
        raise DatasetError(f"unknown dataset format '{cfg.format}' (dataset root '{cfg.root}'); "
                           f"known formats: {sorted(SOURCES)}") from None
    return source_cls.from_config(cfg, list(class_names), cache_labels=cache_labels)
