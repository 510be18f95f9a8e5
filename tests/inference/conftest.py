"""Fixtures of the inference tests: demo photos, a calibrated random model and its ONNX export."""
from __future__ import annotations

from pathlib import Path
from typing import List

import pytest

from inference_helpers import calibrated_model, demo_images, make_cfg, read_images


@pytest.fixture(scope="session")
def demo_paths(demo_root: Path) -> List[Path]:
    paths = demo_images(demo_root)
    if len(paths) < 2:
        pytest.skip(f"too few demo photos in {demo_root}")
    return paths


@pytest.fixture(scope="session")
def cfg320():
    return make_cfg()


@pytest.fixture(scope="session")
def model320(cfg320, demo_paths):
    """Random weights, BN statistics calibrated on the demo photos, scores spread over (0, 1)."""
    return calibrated_model(cfg320, read_images(demo_paths))


@pytest.fixture(scope="session")
def onnx320(cfg320, model320, tmp_path_factory) -> Path:
    from nanodet_ghost.export.onnx import export_onnx

    path = tmp_path_factory.mktemp("onnx") / "model320.onnx"
    export_onnx(model320, cfg320, path, dynamic_batch=True)
    return path
