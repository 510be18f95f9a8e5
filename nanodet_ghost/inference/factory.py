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
from typing import Any, Optional, Sequence, Union

from nanodet_ghost.inference.model_files import CHECKPOINT_SUFFIXES, is_checkpoint, load_exported_predictor

__all__ = ["CHECKPOINT_SUFFIXES", "is_checkpoint", "load_predictor"]


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
        from nanodet_ghost.inference.predictor import Predictor  # torch: imported only for a checkpoint

        return Predictor.from_model(path, config, overrides=overrides, device=device, num_threads=num_threads,
                                    **kwargs)
    return load_exported_predictor(path, num_threads=num_threads, **kwargs)
