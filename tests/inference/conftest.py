"""Fixtures of the inference tests: a calibrated random model and its ONNX export.

`photo_paths` (tests/conftest.py) gives the real demo photos, or generated ones without the data."""
from __future__ import annotations

from pathlib import Path
from typing import List

import pytest

from inference_helpers import calibrated_model, make_cfg, read_images


@pytest.fixture(scope="session")
def cfg320():
    return make_cfg()


@pytest.fixture(scope="session")
def model320(cfg320, photo_paths: List[Path]):
    """Random weights, BN statistics calibrated on the photos, scores spread over (0, 1)."""
    return calibrated_model(cfg320, read_images(photo_paths))


@pytest.fixture(scope="session")
def onnx320(cfg320, model320, tmp_path_factory) -> Path:
    from nanodet_ghost.export.onnx import export_onnx

    path = tmp_path_factory.mktemp("onnx") / "model320.onnx"
    export_onnx(model320, cfg320, path, dynamic_batch=True)
    return path
