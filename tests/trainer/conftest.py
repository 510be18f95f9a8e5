"""A tiny synthetic COCO dataset (generated into a temp dir) for fast training tests."""
from __future__ import annotations

from pathlib import Path

import pytest

from nanodet_ghost.data.synthetic import generate_split


@pytest.fixture(scope="session")
def tiny_coco(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("tiny_coco")
    generate_split(root / "train", 12, seed=11)
    generate_split(root / "val", 6, seed=12)
    return root
