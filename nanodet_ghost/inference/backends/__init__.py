"""Runtimes that execute an exported detector: one module per runtime, one small interface.

A backend loads one model file and exposes

- `metadata: ModelMetadata` (`nanodet_ghost.inference.metadata`), read from the file itself (ONNX
  `metadata_props`, OpenVINO `rt_info`) or from the json sidecar of an ncnn `.param`;
- `input_hw: (H, W)`, `fixed_batch: int | None` (None: any batch size);
- `run(batch: float32 [B, 3, H, W]) -> {name: array}`: the outputs of the model's head
  (`HEAD_OUTPUTS[metadata.head]`; for `raw`, `output: float32 [B, N, C + 4 * (reg_max + 1)]`, class
  scores after sigmoid, then the distribution logits);
- `forward(batch)`: the first output alone.

`ExportedPredictor` wraps any of them with the shared numpy + OpenCV pre- and post-processing.
Nothing here imports torch, and a runtime is imported only when a model of its kind is loaded: a
missing one raises `MissingRuntimeError`, whose one-line message names the extra to install.
"""
from __future__ import annotations

import importlib
import json
import os
from pathlib import Path
from typing import Any, Dict, Optional, Protocol, Tuple, Union

import numpy as np

from nanodet_ghost.inference.metadata import HEAD_OUTPUTS, ModelFileError, ModelMetadata

# File suffix -> (module, class, runtime name) of the backend that loads it.
BACKENDS: Dict[str, Tuple[str, str, str]] = {
    ".onnx": ("nanodet_ghost.inference.backends.onnxruntime", "OnnxRuntimeBackend", "ONNX Runtime"),
    ".xml": ("nanodet_ghost.inference.backends.openvino", "OpenVinoBackend", "OpenVINO"),
    ".param": ("nanodet_ghost.inference.backends.ncnn", "NcnnBackend", "ncnn"),
    ".mnn": ("nanodet_ghost.inference.backends.mnn", "MnnBackend", "MNN"),
}
MODEL_SUFFIXES = tuple(BACKENDS)


class MissingRuntimeError(ImportError):
    """The runtime a model needs is not installed; the message says which extra installs it."""


class Backend(Protocol):
    path: str
    metadata: ModelMetadata
    input_hw: Tuple[int, int]
    fixed_batch: Optional[int]

    def run(self, batch: np.ndarray) -> Dict[str, np.ndarray]:
        """float32 [B, 3, H, W] → the head's outputs by name."""

    def forward(self, batch: np.ndarray) -> np.ndarray:
        """float32 [B, 3, H, W] → the first output (`raw`: [B, N, C + 4 * (reg_max + 1)])."""


def import_runtime(module: str, runtime: str, extra: str, path: str) -> Any:
    """`importlib.import_module(module)`, or a `MissingRuntimeError` naming `extra`."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise MissingRuntimeError(f"{path}: {runtime} is not installed; pip install 'nanodet_ghost[{extra}]'"
                                  ) from None


def require_file(path: Union[str, "os.PathLike[str]"], what: str) -> str:
    """`path` as a string; `FileNotFoundError` naming `what` when it is not a file."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{what} not found: {path}")
    return path


def check_batch(path: str, batch: np.ndarray, fixed_batch: Optional[int]) -> None:
    """A `ModelFileError` when a model exported with a static batch is given another batch size."""
    if fixed_batch is not None and batch.shape[0] != fixed_batch:
        raise ModelFileError(f"{path}: the model takes a batch of exactly {fixed_batch} (static), got "
                             f"{batch.shape[0]}; run images in batches of {fixed_batch} (ExportedPredictor does) "
                             "or export with --dynamic-batch (raw and boxes heads)")


def check_outputs(path: str, names: Any, metadata: ModelMetadata) -> None:
    """A `ModelFileError` when the model's output names are not those of its metadata's head."""
    expected = HEAD_OUTPUTS[metadata.head]
    if tuple(names) != expected:
        raise ModelFileError(f"{path}: outputs {list(names)}, but its metadata says head {metadata.head!r} with "
                             f"outputs {list(expected)}")


def check_output_channels(path: str, channels: Any, metadata: ModelMetadata) -> None:
    """A `ModelFileError` when the static width of a raw output disagrees with C + 4 * (reg_max + 1)."""
    if metadata.head != "raw":
        return
    if isinstance(channels, int) and channels > 0 and channels != metadata.output_channels:
        raise ModelFileError(f"{path}: output has {channels} channels, metadata implies {metadata.output_channels}")


def read_json_sidecar(model_path: str, sidecar: Path, section: str) -> Dict[str, Any]:
    """The json sidecar of a model whose format has no room for metadata (ncnn, MNN): an object with
    `metadata` (the export's key/value strings) and `section` (the runtime's blob names).
    `ModelFileError` naming the file when it is missing or malformed."""
    if not sidecar.is_file():
        raise ModelFileError(f"{model_path}: its metadata sidecar {sidecar} is missing (export with tools/export.py "
                             f"--format {section}, which writes the model and its .json together)")
    try:
        content = json.loads(sidecar.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ModelFileError(f"{sidecar}: invalid json ({exc})") from None
    if not isinstance(content, dict) or not isinstance(content.get("metadata"), dict) \
            or not isinstance(content.get(section), dict):
        raise ModelFileError(f"{sidecar}: expected an object with 'metadata' and '{section}' sections")
    return content


def backend_kind(path: Union[str, "os.PathLike[str]"]) -> str:
    """The runtime name for a model file ("ONNX Runtime", "OpenVINO", "ncnn"), from its suffix."""
    suffix = Path(path).suffix.lower()
    if suffix not in BACKENDS:
        raise ModelFileError(f"{os.fspath(path)}: unknown model format '{suffix or '(no suffix)'}' (expected "
                             f"{', '.join(MODEL_SUFFIXES)} or a .ckpt checkpoint)")
    return BACKENDS[suffix][2]


def load_backend(path: Union[str, "os.PathLike[str]"], num_threads: Optional[int] = None, **kwargs: Any) -> Backend:
    """The backend for `path`, chosen by its suffix (.onnx, OpenVINO .xml, ncnn .param).

    `num_threads` (None: the runtime's default) and `kwargs` go to the backend's constructor."""
    backend_kind(path)
    module, cls, _ = BACKENDS[Path(path).suffix.lower()]
    return getattr(importlib.import_module(module), cls)(path, num_threads=num_threads, **kwargs)
