"""Which kind of model file a path is, and the predictor of an exported one (no torch).

`factory.load_predictor` and `Predictor.from_model` both use these; they live apart from both so
that neither module has to import the other.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Optional, Union

from nanodet_ghost.inference.backends import backend_kind

CHECKPOINT_SUFFIXES = (".ckpt", ".pth", ".pt")


def is_checkpoint(path: Union[str, "os.PathLike[str]"]) -> bool:
    """True for a PyTorch checkpoint (.ckpt, .pth, .pt)."""
    return Path(path).suffix.lower() in CHECKPOINT_SUFFIXES


def load_exported_predictor(path: Union[str, "os.PathLike[str]"], num_threads: Optional[int] = None,
                            **kwargs: Any) -> Any:
    """`OnnxPredictor` for an .onnx file, `ExportedPredictor` for OpenVINO .xml / ncnn .param.

    Raises:
        `ModelFileError`: an unknown suffix. `MissingRuntimeError`: the runtime is not installed.
    """
    if backend_kind(path) == "ONNX Runtime":
        from nanodet_ghost.inference.onnx_predictor import OnnxPredictor

        return OnnxPredictor(path, num_threads=num_threads, **kwargs)
    from nanodet_ghost.inference.exported_predictor import ExportedPredictor

    return ExportedPredictor(path, num_threads=num_threads, **kwargs)
