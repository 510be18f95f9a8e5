"""Configs over the tiny synthetic COCO dataset of conftest.py, for fast training tests."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import yaml

from nanodet_ghost.config import load_config
from nanodet_ghost.data.synthetic import SYNTHETIC_CLASSES


def write_config(tiny_coco: Path, save_dir: Path, extra: dict | None = None) -> Path:
    """A 6-class, 128x128 config over `tiny_coco`, written beside `save_dir`."""
    cfg = {
        "model": {"head": {"num_classes": len(SYNTHETIC_CLASSES)}},
        "data": {
            "class_names": list(SYNTHETIC_CLASSES),
            "input_size": [128, 128],
            "train": {"format": "coco", "root": str(tiny_coco / "train" / "images"),
                      "ann_file": str(tiny_coco / "train" / "annotations.json")},
            "val": {"format": "coco", "root": str(tiny_coco / "val" / "images"),
                    "ann_file": str(tiny_coco / "val" / "annotations.json")},
            "batch_size": 4,
            "val_batch_size": 4,
            "num_workers": 0,
        },
        "train": {
            "save_dir": str(save_dir),
            "max_epochs": 2,
            "accelerator": "cpu",
            "devices": "1",
            "optimizer": {"name": "AdamW", "lr": 0.002},
            "scheduler": {"warmup_steps": 2},
            "ema_warmup": 10,
            "log_every_n_steps": 1,
        },
    }
    for dotted, value in (extra or {}).items():
        node = cfg
        *parents, leaf = dotted.split(".")
        for key in parents:
            node = node.setdefault(key, {})
        node[leaf] = value
    path = save_dir.parent / f"{save_dir.name}.yml"
    save_dir.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(cfg))
    return path


def tiny_config(tiny_coco: Path, save_dir: Path, overrides: Sequence[str] = (), extra: dict | None = None):
    return load_config(write_config(tiny_coco, save_dir, extra), list(overrides))
