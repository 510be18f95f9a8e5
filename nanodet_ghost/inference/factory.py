"""`load_predictor(path)`: the right predictor for a model file, chosen by its suffix.

| file | predictor | runtime |
|---|---|---|
| .ckpt | `Predictor` (needs the config) | PyTorch |
| .onnx | `OnnxPredictor` | ONNX Runtime |
| .xml | `ExportedPredictor` | OpenVINO |
| .param | `ExportedPredictor` | ncnn |

torch is imported only for a checkpoint, so exported models load on machines without it.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Optional, Sequence, Union

from nanodet_ghost.inference.backends import backend_kind

CHECKPOINT_SUFFIXES = (".ckpt", ".pth", ".pt")


def is_checkpoint(path: Union[str, "os.PathLike[str]"]) -> bool:
    """True for a PyTorch checkpoint (.ckpt, .pth, .pt)."""
    return Path(path).suffix.lower() in CHECKPOINT_SUFFIXES


def load_predictor(path: Union[str, "os.PathLike[str]"], config: Optional[Any] = None, overrides: Sequence[str] = (),
                   device: str = "cpu", num_threads: Optional[int] = None, **kwargs: Any) -> Any:
    """A predictor for `path` (see the table above); every one has `predict(images)` returning
    `Detections` in original-image pixels.

    Args:
        config: YAML path or loaded config; required for a checkpoint, ignored otherwise (exported
            models carry their own metadata).
        overrides: config overrides (checkpoint only).
        device: torch device (checkpoint only).
        num_threads: CPU threads (torch threads for a checkpoint, the runtime's otherwise).
        kwargs: go to the predictor (`batch_size`, `postprocess` for exported models).
    Raises:
        ValueError: a checkpoint without a config. `ModelFileError`: an unknown suffix.
        `MissingRuntimeError`: the runtime of the file is not installed (names the pip extra).
    """
    if is_checkpoint(path):
        if config is None:
            raise ValueError(f"{os.fspath(path)}: a checkpoint needs its config (exported models do not)")
        import torch

        from nanodet_ghost.inference.predictor import Predictor

        if num_threads:
            torch.set_num_threads(int(num_threads))
        return Predictor.from_checkpoint(config, path, device=device, overrides=overrides, **kwargs)
    if backend_kind(path) == "ONNX Runtime":
        from nanodet_ghost.inference.onnx_predictor import OnnxPredictor

        return OnnxPredictor(path, num_threads=num_threads, **kwargs)
    from nanodet_ghost.inference.exported_predictor import ExportedPredictor

    return ExportedPredictor(path, num_threads=num_threads, **kwargs)
