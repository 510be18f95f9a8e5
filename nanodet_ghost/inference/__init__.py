"""Inference: `Predictor` (PyTorch), `ExportedPredictor` (ONNX Runtime, OpenVINO or ncnn, numpy +
OpenCV only; `OnnxPredictor` is its ONNX Runtime form) and `load_predictor(path)` for any of them.

Nothing is imported eagerly, so `import nanodet_ghost.inference.onnx_predictor` stays torch-free.
"""
from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "Predictor": "nanodet_ghost.inference.predictor",
    "OnnxPredictor": "nanodet_ghost.inference.onnx_predictor",
    "ExportedPredictor": "nanodet_ghost.inference.exported_predictor",
    "load_predictor": "nanodet_ghost.inference.factory",
    "Detections": "nanodet_ghost.inference.common",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'nanodet_ghost.inference' has no attribute '{name}'")
