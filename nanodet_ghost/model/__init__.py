"""Model assembly. `build_model(cfg.model)` calls each constructor explicitly."""
from __future__ import annotations

from typing import Any, Mapping

from omegaconf import DictConfig, OmegaConf

from nanodet_ghost.model.backbone.ghostnet import GhostNet
from nanodet_ghost.model.detector import Detector
from nanodet_ghost.model.head.gfl_head import GFLHead
from nanodet_ghost.model.head.postprocess import PostProcessor
from nanodet_ghost.model.loss.gfl_loss import GFLLoss
from nanodet_ghost.model.neck.pan import PAN

__all__ = ["Detector", "build_model"]


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
