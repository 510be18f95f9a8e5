"""Shared fixtures. Real data is found through $NANODET_GHOST_DATA (default ../shared/data)."""
from __future__ import annotations

from pathlib import Path
from typing import List

import cv2
import numpy as np
import pytest

from nanodet_ghost.paths import DATA_ENV_VAR, shared_data_root

DEMO_PHOTOS = ("000252.jpg", "000258.jpg", "bus.jpg", "dog.jpg", "street.png", "zidane.jpg")
# (width, height, file name) of the stand-ins for the demo photos: landscape, portrait, small,
# wide, and a grayscale PNG, so letterboxing, batching of mixed sizes and channel repair all run.
_GENERATED_PHOTOS = ((640, 480, "landscape.jpg"), (480, 640, "portrait.jpg"), (500, 375, "small.jpg"),
                     (810, 1080, "tall.jpg"), (960, 540, "wide.jpg"), (768, 576, "gray.png"))


def _require(sub: str) -> Path:
    path = shared_data_root() / sub
    if not path.exists():
        pytest.skip(
            f"real data '{sub}' not found at {path}: set {DATA_ENV_VAR} to the shared data folder "
            "(see README) to run this test"
        )
    return path


@pytest.fixture(scope="session")
def coco128_root() -> Path:
    """../shared/data/coco128 (train2017/ and annotations/instances_train2017.json)."""
    return _require("coco128")


@pytest.fixture(scope="session")
def bccd_root() -> Path:
    """../shared/data/bccd/BCCD (Pascal VOC layout)."""
    return _require("bccd/BCCD")


@pytest.fixture(scope="session")
def coco_eval_reference_root() -> Path:
    """../shared/data/coco_eval_reference (val2014 GT for 100 images + cocoapi fake results)."""
    return _require("coco_eval_reference")


@pytest.fixture(scope="session")
def demo_root() -> Path:
    """../shared/data/demo (real photos and bikes.mp4)."""
    return _require("demo")


def _write_photo_like_images(folder: Path) -> List[Path]:
    """Seeded synthetic scenes (textured backgrounds, clutter, overlapping shapes) scaled to
    photo sizes, written as the files of `_GENERATED_PHOTOS`."""
    from nanodet_ghost.data.synthetic import render_image

    rng = np.random.default_rng(20240)
    paths = []
    for width, height, name in _GENERATED_PHOTOS:
        scene, _ = render_image(rng)
        img = cv2.resize(scene, (width, height), interpolation=cv2.INTER_CUBIC)
        if name.endswith(".png"):
            img = cv2.cvtColor(img, cv2.COLOR_BGR2GRAY)  # one single-channel file
        path = folder / name
        if not cv2.imwrite(str(path), img):
            raise OSError(f"could not write the generated test photo {path}")
        paths.append(path)
    return paths


@pytest.fixture(scope="session")
def photo_paths(tmp_path_factory) -> List[Path]:
    """Six photos for the inference and export tests: the real demo photos when the shared data
    has them all, else photo-like images generated into a temporary folder (so that a clone
    without the shared data still checks ONNX parity, fusion and the predictor). Alone in their
    folder either way, apart from the demo video."""
    demo = shared_data_root() / "demo"
    paths = [demo / name for name in DEMO_PHOTOS]
    if all(p.is_file() for p in paths):
        return paths
    return _write_photo_like_images(tmp_path_factory.mktemp("photos"))
