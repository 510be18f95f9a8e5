"""The one-stage detector: backbone → neck → head, plus its loss and post-processing."""
from __future__ import annotations

from typing import Any, Dict, List, Mapping, Sequence, Tuple

from torch import Tensor, nn

from nanodet_ghost.model.head.postprocess import PostProcessor
from nanodet_ghost.model.loss.gfl_loss import GFLLoss


class Detector(nn.Module):
    """Plain `nn.Module`, usable without Lightning.

    - `forward(images: Tensor[B, 3, H, W]) -> Tensor[B, N, C + 4 * (reg_max + 1)]` (raw logits).
    - `loss(raw, targets, input_hw) -> dict` of named losses (`loss` is the total).
    - `predict(raw, metas, input_hw) -> list` of per-image `boxes`/`scores`/`labels` dicts, boxes
      xyxy in original-image pixels.
    """

    def __init__(self, backbone: nn.Module, neck: nn.Module, head: nn.Module, loss_fn: GFLLoss,
                 postprocess: PostProcessor) -> None:
        super().__init__()
        self.backbone = backbone
        self.neck = neck
        self.head = head
        self.loss_fn = loss_fn
        self.postprocess = postprocess

    @property
    def num_classes(self) -> int:
        return self.head.num_classes

    def forward(self, images: Tensor) -> Tensor:
        return self.head(self.neck(self.backbone(images)))

    def loss(self, raw: Tensor, targets: List[Dict[str, Tensor]], input_hw: Tuple[int, int]) -> Dict[str, Tensor]:
        return self.loss_fn(raw, targets, tuple(input_hw))

    def predict(
        self,
        raw: Tensor,
        metas: Sequence[Mapping[str, Any]],
        input_hw: Tuple[int, int],
        score_thr: float | None = None,
    ) -> List[Dict[str, Tensor]]:
        return self.postprocess(raw, metas, tuple(input_hw), score_thr=score_thr)
