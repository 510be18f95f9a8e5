"""The one-stage detector: backbone → neck → head, plus its loss and post-processing."""
from __future__ import annotations

from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

from torch import Tensor, nn

from nanodet_ghost.model.head.aux_head import AuxiliaryGuidance
from nanodet_ghost.model.head.postprocess import PostProcessor
from nanodet_ghost.model.loss.gfl_loss import GFLLoss
from nanodet_ghost.model.loss.plus_loss import NanoDetPlusLoss


class Detector(nn.Module):
    """Plain `nn.Module`, usable without Lightning.

    - `forward(images: Tensor[B, 3, H, W]) -> Tensor[B, N, C + 4 * (reg_max + 1)]` (raw logits);
      inference and export: never runs the auxiliary module.
    - `forward_train(images, targets, epoch) -> (raw, losses)`: the training step, with NanoDet-Plus's
      auxiliary guidance (`aux`) when the model has one.
    - `loss(raw, targets, input_hw) -> dict` of named losses (`loss` is the total), without the
      auxiliary head (validation).
    - `predict(raw, metas, input_hw) -> list` of per-image `boxes`/`scores`/`labels` dicts, boxes
      xyxy in original-image pixels.
    - `drop_training_parts()`: removes `aux`, so that the module (and its state dict) is what is
      deployed.
    """

    TRAINING_ONLY_PREFIX = "aux."  # state-dict keys of the training-only auxiliary module

    def __init__(self, backbone: nn.Module, neck: nn.Module, head: nn.Module,
                 loss_fn: Union[GFLLoss, NanoDetPlusLoss], postprocess: PostProcessor,
                 aux: Optional[AuxiliaryGuidance] = None) -> None:
        super().__init__()
        self.backbone = backbone
        self.neck = neck
        self.head = head
        self.loss_fn = loss_fn
        self.postprocess = postprocess
        self.aux = aux

    @property
    def num_classes(self) -> int:
        return self.head.num_classes

    def forward(self, images: Tensor) -> Tensor:
        return self.head(self.neck(self.backbone(images)))

    def forward_train(self, images: Tensor, targets: List[Dict[str, Tensor]],
                      epoch: int = 0) -> Tuple[Tensor, Dict[str, Tensor]]:
        """`images: Tensor[B, 3, H, W]` -> the raw head output `Tensor[B, N, C + 4 * (reg_max + 1)]` and
        the losses. With `aux`, the auxiliary head's output guides the assignment (and is trained);
        `epoch` decides whether it still sends gradients into the backbone and neck."""
        backbone_feats = self.backbone(images)
        neck_feats = self.neck(backbone_feats)
        raw = self.head(neck_feats)
        aux_raw = None if self.aux is None else self.aux(backbone_feats, neck_feats, epoch)
        return raw, self.loss_fn(raw, targets, tuple(images.shape[-2:]), aux_raw=aux_raw)

    def loss(self, raw: Tensor, targets: List[Dict[str, Tensor]], input_hw: Tuple[int, int]) -> Dict[str, Tensor]:
        return self.loss_fn(raw, targets, tuple(input_hw))

    def drop_training_parts(self) -> None:
        """Remove the auxiliary module: `forward` does not change; training goes on without guidance."""
        self.aux = None

    def predict(
        self,
        raw: Tensor,
        metas: Sequence[Mapping[str, Any]],
        input_hw: Tuple[int, int],
        score_thr: float | None = None,
    ) -> List[Dict[str, Tensor]]:
        return self.postprocess(raw, metas, tuple(input_hw), score_thr=score_thr)
