"""ONNX Runtime inference with numpy + OpenCV only: importing this module never imports torch.

`OnnxPredictor` is the `ExportedPredictor` (`nanodet_ghost.inference.exported_predictor`) over
the ONNX Runtime backend, with ORT's execution providers as an extra option. Everything comes from
the model's metadata (written by `nanodet_ghost.export.onnx`).
"""
from __future__ import annotations

import os
from typing import Any, Mapping, Optional, Sequence, Union

from nanodet_ghost.inference.backends.onnxruntime import OnnxRuntimeBackend
from nanodet_ghost.inference.exported_predictor import ExportedPredictor
from nanodet_ghost.inference.metadata import ModelFileError

OnnxModelError = ModelFileError  # the name older code catches


class OnnxPredictor(ExportedPredictor):
    """Runs an exported `.onnx` detector with ONNX Runtime.

    Args:
        path: the .onnx file.
        providers: ONNX Runtime execution providers (default: CPU).
        num_threads: intra-op threads (None: ONNX Runtime's default).
        postprocess: overrides of the metadata's postprocess defaults (score_thr, nms_iou, ...).
        batch_size: images per run when a list is given and the model has a dynamic batch
            (a model exported with batch 1 is run image by image).
    """

    def __init__(self, path: Union[str, "os.PathLike[str]"], providers: Optional[Sequence[Any]] = None,
                 num_threads: Optional[int] = None, postprocess: Optional[Mapping[str, Any]] = None,
                 batch_size: int = 8) -> None:
        super().__init__(OnnxRuntimeBackend(path, num_threads=num_threads, providers=providers),
                         postprocess=postprocess, batch_size=batch_size)

    @property
    def session(self) -> Any:
        """The `onnxruntime.InferenceSession`."""
        return self.backend.session
