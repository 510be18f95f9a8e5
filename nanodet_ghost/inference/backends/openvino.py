"""OpenVINO backend (`.xml` + `.bin` IR, fp32 or INT8): metadata from the IR's `rt_info`.

The CPU plugin runs in fp32 (`INFERENCE_PRECISION_HINT: f32`): on CPUs with AVX512-BF16 or AMX its
default is bf16, which moves the outputs by about 1e-1 and would break the parity with PyTorch.
In an INT8 IR the quantized layers still run in int8.
"""
from __future__ import annotations

import os
from typing import Any, Dict, Mapping, Optional, Tuple, Union

import numpy as np

from nanodet_ghost.inference.backends import (check_batch, check_output_channels, check_outputs, import_runtime,
                                              require_file)
from nanodet_ghost.inference.metadata import ModelFileError, ModelMetadata, parse_metadata

RT_INFO_SECTION = "nanodet_ghost"


def compile_config(num_threads: Optional[int] = None, profile: bool = False) -> Dict[str, Any]:
    """CPU plugin settings: one stream for latency, fp32 arithmetic, `num_threads` threads."""
    config: Dict[str, Any] = {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": "f32"}
    if num_threads is not None:
        config["INFERENCE_NUM_THREADS"] = int(num_threads)
    if profile:
        config["PERF_COUNT"] = True
    return config


def read_rt_metadata(model: Any) -> Dict[str, str]:
    """The `nanodet_ghost` section of an `openvino.Model`'s rt_info as str → str (empty if absent)."""
    if not model.has_rt_info([RT_INFO_SECTION]):
        return {}
    section = model.get_rt_info([RT_INFO_SECTION]).astype(dict)
    return {str(key): model.get_rt_info([RT_INFO_SECTION, key]).astype(str) for key in section}


def write_rt_metadata(model: Any, metadata: Mapping[str, str]) -> None:
    """Store `metadata` in the `nanodet_ghost` section of `model`'s rt_info (in place)."""
    for key, value in metadata.items():
        model.set_rt_info(str(value), [RT_INFO_SECTION, str(key)])


class OpenVinoBackend:
    """Runs an OpenVINO IR on the CPU.

    Args:
        path: the .xml file (its .bin beside it).
        num_threads: `INFERENCE_NUM_THREADS` (None: OpenVINO's default).
        profile: turn on `PERF_COUNT` (read it with `self.request.get_profiling_info()`).
    """

    def __init__(self, path: Union[str, "os.PathLike[str]"], num_threads: Optional[int] = None,
                 profile: bool = False) -> None:
        self.path = require_file(path, "OpenVINO model")
        ov = import_runtime("openvino", "OpenVINO", "openvino", self.path)
        core = ov.Core()
        try:
            model = core.read_model(self.path)
        except Exception as exc:  # OpenVINO raises RuntimeError with a long multi-line text
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ModelFileError(f"{self.path}: OpenVINO cannot read it ({first})") from None
        self.metadata: ModelMetadata = parse_metadata(read_rt_metadata(model), self.path)
        shape = model.inputs[0].get_partial_shape()
        static = [d.get_length() if d.is_static else None for d in shape]
        self.fixed_batch = static[0]
        self.input_hw: Tuple[Optional[int], Optional[int]] = (static[2], static[3])
        self.output_names = tuple(output.get_any_name() for output in model.outputs)
        check_outputs(self.path, self.output_names, self.metadata)
        out_shape = model.outputs[0].get_partial_shape()
        check_output_channels(self.path, out_shape[-1].get_length() if out_shape[-1].is_static else None,
                              self.metadata)
        self.compiled = core.compile_model(model, "CPU", compile_config(num_threads, profile))
        self.request = self.compiled.create_infer_request()

    def run(self, batch: np.ndarray) -> Dict[str, np.ndarray]:
        """float32 [B, 3, H, W] → the head's outputs by name (copies: the request reuses its buffers)."""
        check_batch(self.path, batch, self.fixed_batch)
        results = self.request.infer({0: batch})
        return {name: np.array(results[i], copy=True) for i, name in enumerate(self.output_names)}

    def forward(self, batch: np.ndarray) -> np.ndarray:
        """float32 [B, 3, H, W] → the first output (`raw`: [B, N, C + 4(R+1)])."""
        return self.run(batch)[self.output_names[0]]
