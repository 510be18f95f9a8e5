"""The export tests reuse the inference tests' helpers (random calibrated model) and the
`photo_paths` of tests/conftest.py (real demo photos, or generated ones without the data)."""
from __future__ import annotations

import sys
from pathlib import Path

_INFERENCE_TESTS = str(Path(__file__).resolve().parent.parent / "inference")
if _INFERENCE_TESTS not in sys.path:
    sys.path.insert(0, _INFERENCE_TESTS)

from inference_helpers import calibrated_model, make_cfg, read_images  # noqa: E402
import pytest  # noqa: E402


@pytest.fixture(scope="session")
def export_cfg():
    return make_cfg()


@pytest.fixture(scope="session")
def export_model(export_cfg, photo_paths):
    return calibrated_model(export_cfg, read_images(photo_paths))
