"""Tiny on-the-fly datasets for the label cache tests, and a helper that ages their mtimes."""
from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Dict, List

import cv2
import numpy as np

CLASSES = ["cat", "dog"]


def write_jpeg(path: Path, width: int = 64, height: int = 48, seed: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    img = np.random.default_rng(seed).integers(0, 255, (height, width, 3)).astype(np.uint8)
    ok, buf = cv2.imencode(".jpg", img)
    assert ok
    path.write_bytes(buf.tobytes())
    return path


def coco_dict(num_images: int, missing: int = 0) -> Dict:
    """`num_images` 64x48 images, two boxes each (one crowd on the first); the last `missing`
    of them have no file (see `write_coco`)."""
    images, annotations = [], []
    for i in range(num_images):
        images.append(dict(id=10 + i, file_name=f"sub/img{i}.jpg", width=64, height=48))
        for k in range(2):
            annotations.append(dict(id=len(annotations) + 1, image_id=10 + i, category_id=k + 1,
                                    bbox=[2.0 + i % 10, 3.0 + k, 20.0, 10.0 + i % 10],
                                    iscrowd=int(i == 0 and k == 1)))
    categories = [dict(id=k + 1, name=n) for k, n in enumerate(CLASSES)]
    return dict(images=images, annotations=annotations, categories=categories)


def write_coco(root: Path, num_images: int = 4, missing: int = 0) -> Dict[str, Path]:
    """`root/annotations/instances.json` + `root/images/sub/img<i>.jpg` (the last `missing`
    images are not written); returns the paths."""
    ann = root / "annotations" / "instances.json"
    ann.parent.mkdir(parents=True, exist_ok=True)
    ann.write_text(json.dumps(coco_dict(num_images)))
    for i in range(num_images - missing):
        write_jpeg(root / "images" / "sub" / f"img{i}.jpg", seed=i)
    (root / "images" / "sub").mkdir(parents=True, exist_ok=True)
    return dict(ann_file=ann, img_dir=root / "images")


def age(root: Path, seconds: float = 60.0) -> None:
    """Set the mtime of `root` and everything below it (label caches excepted) to `seconds` ago,
    as for a dataset that was not just written (the cache is not written for fresh files)."""
    when = time.time() - seconds
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if d != ".nanodet_cache"]
        for name in filenames:
            os.utime(os.path.join(dirpath, name), (when, when))
        os.utime(dirpath, (when, when))


def cache_files(root: Path) -> List[Path]:
    return sorted(root.rglob("*.npz"))
