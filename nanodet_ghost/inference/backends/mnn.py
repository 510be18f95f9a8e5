"""MNN backend (`.mnn` from MNN's converter): metadata from the json sidecar `<name>.mnn.json`.

The model runs as an `MNN.nn` module on the CPU backend with `precision: high` (fp32 arithmetic,
so the outputs match ONNX Runtime's). MNN's module API takes the static input shape of the export;
a batch is run image by image when the export's batch is 1.
"""
from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path
from typing import Any, Dict, Iterator, Optional, Tuple, Union

import numpy as np

from nanodet_ghost.inference.backends import (check_batch, check_outputs, import_runtime, read_json_sidecar,
                                              require_file)
from nanodet_ghost.inference.metadata import ModelFileError, ModelMetadata, parse_metadata


@contextlib.contextmanager
def _native_stdout_silenced() -> Iterator[None]:
    """MNN's C++ code prints banners to the process's stdout ("The device supports: ...", "MNN use
    high precision") when it is imported and when a model is loaded; they would mix into a tool's
    output (e.g. predictions written to stdout). File descriptor 1 points to /dev/null meanwhile."""
    sys.stdout.flush()
    saved = os.dup(1)
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 1)
            yield
    finally:
        os.dup2(saved, 1)
        os.close(saved)


def sidecar_path(model_path: Union[str, "os.PathLike[str]"]) -> Path:
    """`model.mnn` → `model.mnn.json` (not `model.json`: an ncnn export of the same name has that)."""
    return Path(os.fspath(model_path) + ".json")


class MnnBackend:
    """Runs an MNN model on the CPU.

    Args:
        path: the .mnn file (`.mnn.json` beside it).
        num_threads: MNN's `numThread` (None: 1, MNN's default).
    """

    def __init__(self, path: Union[str, "os.PathLike[str]"], num_threads: Optional[int] = None) -> None:
        self.path = require_file(path, "MNN model")
        sidecar = read_json_sidecar(self.path, sidecar_path(self.path), "mnn")
        self.metadata: ModelMetadata = parse_metadata({str(k): str(v) for k, v in sidecar["metadata"].items()},
                                                      self.path)
        names = sidecar["mnn"]
        self.input_name = str(names.get("input", "images"))
        self.output_names = tuple(str(n) for n in names.get("outputs", ()))
        check_outputs(self.path, self.output_names, self.metadata)
        width, height = self.metadata.input_size
        self.input_hw: Tuple[int, int] = (height, width)
        self.fixed_batch: Optional[int] = 1
        config: Dict[str, Any] = {"backend": "CPU", "precision": "high"}
        if num_threads is not None:
            config["numThread"] = int(num_threads)
        with _native_stdout_silenced():
            mnn = import_runtime("MNN", "MNN", "mnn", self.path)
            self._expr = mnn.expr
            try:
                runtime = mnn.nn.create_runtime_manager((config,))
                self.module = mnn.nn.load_module_from_file(self.path, [self.input_name], list(self.output_names),
                                                           runtime_manager=runtime)
            except Exception as exc:  # MNN raises bare Exceptions / RuntimeErrors
                raise ModelFileError(f"{self.path}: MNN cannot load it "
                                     f"({str(exc).strip() or type(exc).__name__})") from None
        if self.module is None:
            raise ModelFileError(f"{self.path}: MNN cannot load it")

    def run(self, batch: np.ndarray) -> Dict[str, np.ndarray]:
        """float32 [1, 3, H, W] → the head's outputs by name (int32 counts become int64, as ONNX's)."""
        check_batch(self.path, batch, self.fixed_batch)
        images = self._expr.const(np.ascontiguousarray(batch, np.float32), list(batch.shape), self._expr.NCHW)
        outputs = self.module.forward([images])
        result = {}
        for name, value in zip(self.output_names, outputs):
            if value.data_format == self._expr.NC4HW4:
                value = self._expr.convert(value, self._expr.NCHW)
            array = np.array(value.read(), copy=True)
            result[name] = array.astype(np.int64) if array.dtype == np.int32 else array
        return result

    def forward(self, batch: np.ndarray) -> np.ndarray:
        """float32 [1, 3, H, W] → the first output (`raw`: [1, N, C + 4(R+1)])."""
        return self.run(batch)[self.output_names[0]]
