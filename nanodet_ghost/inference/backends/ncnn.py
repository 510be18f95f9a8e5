"""ncnn backend (`.param` + `.bin` from pnnx): metadata from the json sidecar `<name>.json`.

The sidecar (written by `nanodet_ghost.export.ncnn`) holds `metadata`, the same key/value strings
the ONNX export embeds, and `ncnn`: the input and output blob names and the input shape. ncnn runs
one image per extractor, so a batch is run image by image. fp16 / bf16 storage and arithmetic are
switched off so that the outputs match PyTorch in fp32.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple, Union

import numpy as np

from nanodet_ghost.inference.backends import check_outputs, import_runtime, read_json_sidecar, require_file
from nanodet_ghost.inference.metadata import HEAD_OUTPUTS
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
    return read_json_sidecar(param_path, sidecar_path(param_path), "ncnn")


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
        self.input_name = str(blobs.get("input", "in0"))
        # Sidecars written before the heads name one blob, "output".
        self.blob_names = [str(b) for b in blobs.get("outputs", [blobs.get("output", "out0")])]
        self.output_names = HEAD_OUTPUTS[self.metadata.head]
        if len(self.blob_names) != len(self.output_names):
            check_outputs(self.path, self.blob_names, self.metadata)
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
        if self.input_name not in self.net.input_names() or not set(self.blob_names) <= set(self.net.output_names()):
            raise ModelFileError(f"{self.path}: blobs {self.input_name!r} / {self.blob_names} of the sidecar are "
                                 f"not the model's inputs {self.net.input_names()} / outputs "
                                 f"{self.net.output_names()}")

    def _forward_one(self, chw: np.ndarray) -> List[np.ndarray]:
        outputs = []
        with self.net.create_extractor() as extractor:
            extractor.input(self.input_name, self._ncnn.Mat(np.ascontiguousarray(chw)))
            for blob in self.blob_names:
                status, out = extractor.extract(blob)
                if status != 0:
                    raise RuntimeError(f"{self.path}: ncnn extract of {blob!r} failed (code {status})")
                outputs.append(np.array(out, copy=True))  # the image's output, no batch axis
        return outputs

    def run(self, batch: np.ndarray) -> Dict[str, np.ndarray]:
        """float32 [B, 3, H, W] → the head's outputs by name (image by image)."""
        per_image = [self._forward_one(chw) for chw in batch]
        out = {name: np.stack([outputs[i] for outputs in per_image]) for i, name in enumerate(self.output_names)}
        if self.metadata.head == "raw" and out["output"].shape[-1] != self.metadata.output_channels:
            raise ModelFileError(f"{self.path}: output has {out['output'].shape[-1]} channels, metadata implies "
                                 f"{self.metadata.output_channels}")
        return out

    def forward(self, batch: np.ndarray) -> np.ndarray:
        """float32 [B, 3, H, W] → the first output (`raw`: [B, N, C + 4(R+1)])."""
        return self.run(batch)[self.output_names[0]]
