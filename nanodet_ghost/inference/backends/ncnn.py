"""ncnn backend (`.param` + `.bin` from pnnx): metadata from the json sidecar `<name>.json`.

The sidecar (written by `nanodet_ghost.export.ncnn`) holds `metadata`, the same key/value strings
the ONNX export embeds, and `ncnn`: the input and output blob names and the input shape. ncnn runs
one image per extractor, so a batch is run image by image. fp16 / bf16 storage and arithmetic are
switched off so that the outputs match PyTorch in fp32.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Dict, Optional, Tuple, Union

import numpy as np

from nanodet_ghost.inference.backends import import_runtime, require_file
from nanodet_ghost.inference.metadata import ModelFileError, ModelMetadata, parse_metadata

REDUCED_PRECISION_OPTIONS = ("use_fp16_packed", "use_fp16_storage", "use_fp16_arithmetic", "use_bf16_storage")


def sidecar_path(param_path: Union[str, "os.PathLike[str]"]) -> Path:
    """`model.param` → `model.json`."""
    return Path(param_path).with_suffix(".json")


def weights_path(param_path: Union[str, "os.PathLike[str]"]) -> Path:
    """`model.param` → `model.bin`."""
    return Path(param_path).with_suffix(".bin")


def read_sidecar(param_path: str) -> Dict[str, Any]:
    """The parsed sidecar of `param_path`; `ModelFileError` naming the file when it is missing or bad."""
    path = sidecar_path(param_path)
    if not path.is_file():
        raise ModelFileError(f"{param_path}: its metadata sidecar {path} is missing (export with tools/export.py "
                             "--format ncnn, which writes .param, .bin and .json together)")
    try:
        sidecar = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ModelFileError(f"{path}: invalid json ({exc})") from None
    if not isinstance(sidecar, dict) or not isinstance(sidecar.get("metadata"), dict) \
            or not isinstance(sidecar.get("ncnn"), dict):
        raise ModelFileError(f"{path}: expected an object with 'metadata' and 'ncnn' sections")
    return sidecar


class NcnnBackend:
    """Runs an ncnn model on the CPU.

    Args:
        path: the .param file (`.bin` and `.json` beside it).
        num_threads: `opt.num_threads` (None: ncnn's default).
    """

    def __init__(self, path: Union[str, "os.PathLike[str]"], num_threads: Optional[int] = None) -> None:
        self.path = require_file(path, "ncnn model")
        bin_path = require_file(weights_path(self.path), "ncnn weights")
        sidecar = read_sidecar(self.path)
        self.metadata: ModelMetadata = parse_metadata({str(k): str(v) for k, v in sidecar["metadata"].items()},
                                                      self.path)
        blobs = sidecar["ncnn"]
        self.input_name, self.output_name = str(blobs.get("input", "in0")), str(blobs.get("output", "out0"))
        shape = blobs.get("input_shape") or [1, 3, self.metadata.input_size[1], self.metadata.input_size[0]]
        self.fixed_batch = None  # any batch: one extractor per image
        self.input_hw: Tuple[int, int] = (int(shape[2]), int(shape[3]))
        ncnn = import_runtime("ncnn", "ncnn", "ncnn", self.path)
        self._ncnn = ncnn
        self.net = ncnn.Net()
        if num_threads is not None:
            self.net.opt.num_threads = int(num_threads)
        for option in REDUCED_PRECISION_OPTIONS:
            setattr(self.net.opt, option, False)
        if self.net.load_param(self.path) != 0 or self.net.load_model(bin_path) != 0:
            raise ModelFileError(f"{self.path}: ncnn cannot load it (or its weights {bin_path})")
        if self.input_name not in self.net.input_names() or self.output_name not in self.net.output_names():
            raise ModelFileError(f"{self.path}: blobs {self.input_name!r} / {self.output_name!r} of the sidecar are "
                                 f"not the model's inputs {self.net.input_names()} / outputs "
                                 f"{self.net.output_names()}")

    def _forward_one(self, chw: np.ndarray) -> np.ndarray:
        with self.net.create_extractor() as extractor:
            extractor.input(self.input_name, self._ncnn.Mat(np.ascontiguousarray(chw)))
            status, out = extractor.extract(self.output_name)
        if status != 0:
            raise RuntimeError(f"{self.path}: ncnn extract of {self.output_name!r} failed (code {status})")
        return np.array(out, copy=True)  # [N, C + 4(R+1)]

    def forward(self, batch: np.ndarray) -> np.ndarray:
        """float32 [B, 3, H, W] → [B, N, C + 4(R+1)]."""
        out = np.stack([self._forward_one(chw) for chw in batch])
        if out.shape[-1] != self.metadata.output_channels:
            raise ModelFileError(f"{self.path}: output has {out.shape[-1]} channels, metadata implies "
                                 f"{self.metadata.output_channels}")
        return out
