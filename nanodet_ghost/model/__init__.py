"""Model assembly. `build_model(cfg.model)` calls each constructor explicitly;
`load_detector(cfg, ckpt)` builds one and loads trained weights into it.

`load_detector` lives here rather than in `model.weights` because the backbone imports
`model.weights` (the same key comparison for pretrained weights): `model.weights` must stay a leaf.
"""
from __future__ import annotations

import os
from typing import Any

from nanodet_ghost.model.build import LOSSES, NECKS, build_model, check_model_config, count_parameters
from nanodet_ghost.model.detector import Detector
from nanodet_ghost.model.weights import load_detector_weights

__all__ = ["Detector", "LOSSES", "NECKS", "build_model", "check_model_config", "count_parameters", "load_detector"]


def load_detector(cfg: Any, ckpt: str | os.PathLike, prefer_ema: bool = True) -> Detector:
    """`build_model(cfg.model)` with the weights of checkpoint `ckpt` (EMA preferred), in eval mode,
    without its training-only parts (NanoDet-Plus's auxiliary head), as it is deployed.

    Raises:
        FileNotFoundError: no such file.
        CheckpointMismatchError: unsafe or unreadable file, or weights of another architecture or
            class count (every mismatch is listed).
    """
    model = build_model(cfg.model)
    model.drop_training_parts()
    load_detector_weights(model, ckpt, prefer_ema=prefer_ema, ignore_unexpected=(Detector.TRAINING_ONLY_PREFIX,))
    return model.eval()
