"""Shared fixtures. Real data is found through $NANODET_GHOST_DATA (default ../shared/data)."""
from __future__ import annotations

from pathlib import Path

import pytest

from nanodet_ghost.paths import DATA_ENV_VAR, shared_data_root


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
