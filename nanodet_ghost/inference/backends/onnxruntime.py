"""ONNX Runtime backend (`.onnx`, fp32 or INT8 QDQ): metadata from the model's `metadata_props`."""
from __future__ import annotations

import os
from typing import Any, Dict, Optional, Sequence, Tuple, Union

import numpy as np

from nanodet_ghost.inference.backends import (check_batch, check_output_channels, check_outputs, import_runtime,
                                              require_file)
from nanodet_ghost.inference.metadata import ModelFileError, ModelMetadata, parse_metadata


def session_options(num_threads: Optional[int] = None, profile_prefix: Optional[str] = None) -> Any:
    """ORT session options: full graph optimisation; `num_threads` intra-op threads and one
    inter-op thread (None: ORT's default); profiling to `profile_prefix*.json` when given."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    if num_threads is not None:
        options.intra_op_num_threads = int(num_threads)
        options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if profile_prefix:
        options.enable_profiling = True
        options.profile_file_prefix = profile_prefix
    return options


class OnnxRuntimeBackend:
    """Runs an exported `.onnx` with ONNX Runtime.

    Args:
        path: the .onnx file.
        num_threads: intra-op threads (None: ORT's default).
        providers: execution providers (default: CPU).
        profile_prefix: turn on ORT's profiler (`session.end_profiling()` writes the json).
    """

    def __init__(self, path: Union[str, "os.PathLike[str]"], num_threads: Optional[int] = None,
                 providers: Optional[Sequence[Any]] = None, profile_prefix: Optional[str] = None) -> None:
        self.path = require_file(path, "ONNX model")
        ort = import_runtime("onnxruntime", "ONNX Runtime", "onnxruntime", self.path)
        try:
            self.session = ort.InferenceSession(self.path, sess_options=session_options(num_threads, profile_prefix),
                                                providers=list(providers or ["CPUExecutionProvider"]))
        except Exception as exc:  # onnxruntime raises its own types (InvalidProtobuf, Fail, ...)
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ModelFileError(f"{self.path}: ONNX Runtime cannot load it ({first})") from None
        props = dict(self.session.get_modelmeta().custom_metadata_map)
        self.metadata: ModelMetadata = parse_metadata(props, self.path)
        model_input, model_output = self.session.get_inputs()[0], self.session.get_outputs()[0]
        self.input_name = model_input.name
        self.output_names = tuple(o.name for o in self.session.get_outputs())
        check_outputs(self.path, self.output_names, self.metadata)
        self.fixed_batch = model_input.shape[0] if isinstance(model_input.shape[0], int) else None
        dims = [d if isinstance(d, int) else None for d in model_input.shape[2:]]
        self.input_hw: Tuple[Optional[int], Optional[int]] = (dims[0], dims[1])
        check_output_channels(self.path, model_output.shape[-1], self.metadata)

    def run(self, batch: np.ndarray) -> Dict[str, np.ndarray]:
        """float32 [B, 3, H, W] → the head's outputs by name."""
        check_batch(self.path, batch, self.fixed_batch)
        return dict(zip(self.output_names, self.session.run(None, {self.input_name: batch})))

    def forward(self, batch: np.ndarray) -> np.ndarray:
        """float32 [B, 3, H, W] → the first output (`raw`: [B, N, C + 4(R+1)])."""
        return self.run(batch)[self.output_names[0]]
