"""Model assembly. `build_model(cfg.model)` calls each constructor explicitly;
`load_detector(cfg, ckpt)` builds one and loads trained weights into it.

`load_detector` lives here rather than in `model.weights` because the backbone imports
`model.weights` (the same key comparison for pretrained weights): `model.weights` must stay a leaf.
"""
from __future__ import annotations

import os
from typing import Any, Mapping

from omegaconf import DictConfig, OmegaConf

from nanodet_ghost.model.backbone.ghostnet import GhostNet
from nanodet_ghost.model.detector import Detector
from nanodet_ghost.model.head.gfl_head import GFLHead
from nanodet_ghost.model.head.postprocess import PostProcessor
from nanodet_ghost.model.loss.gfl_loss import GFLLoss
from nanodet_ghost.model.neck.pan import PAN
from nanodet_ghost.model.weights import load_detector_weights

__all__ = ["Detector", "build_model", "load_detector"]


def _plain(section: Any) -> dict:
    return OmegaConf.to_container(section, resolve=True) if isinstance(section, DictConfig) else dict(section)


def build_model(model_cfg: Mapping[str, Any]) -> Detector:
    """Build the detector from the `model:` config section (or an equivalent mapping)."""
    backbone = GhostNet(**_plain(model_cfg["backbone"]))
    neck = PAN(in_channels=backbone.out_channels, **_plain(model_cfg["neck"]))
    head_args = _plain(model_cfg["head"])
    head = GFLHead(in_channels=neck.out_channels, **head_args)
    if list(head.strides) != backbone.strides:
        raise ValueError(
            f"model.head.strides {head.strides} do not match the backbone's output strides {backbone.strides} "
            f"(out_stages {list(backbone.out_stages)})"
        )
    loss_fn = GFLLoss(head.num_classes, head.strides, head.reg_max, **_plain(model_cfg["loss"]))
    postprocess = PostProcessor(head.num_classes, head.strides, head.reg_max, **_plain(model_cfg["postprocess"]))
    return Detector(backbone, neck, head, loss_fn, postprocess)


def load_detector(cfg: Any, ckpt: str | os.PathLike, prefer_ema: bool = True) -> Detector:
    """`build_model(cfg.model)` with the weights of checkpoint `ckpt` (EMA preferred), in eval mode.

    Raises:
        FileNotFoundError: no such file.
        CheckpointMismatchError: unsafe or unreadable file, or weights of another architecture or
            class count (every mismatch is listed).
    """
    model = build_model(cfg.model)
    load_detector_weights(model, ckpt, prefer_ema=prefer_ema)
    return model.eval()
