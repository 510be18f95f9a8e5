"""Batching of pipeline samples (docs/contracts.md "Samples and batches")."""
from __future__ import annotations

from typing import Any, Dict, List, Sequence

import numpy as np
import torch

SIZE_DIVISOR = 32


def _ceil_to(value: int, divisor: int) -> int:
    return (value + divisor - 1) // divisor * divisor


def collate(samples: Sequence[Dict[str, Any]]) -> Dict[str, Any]:
    """Stack samples into a batch.

    Args:
        samples: pipeline samples, `img` float32 [3, H_i, W_i] (numpy or tensor), `gt_boxes`
            [N_i, 4], `gt_labels` [N_i], `gt_ignore` [M_i, 4], `meta` dict.
    Returns:
        dict(images=Tensor[B, 3, H, W] float32, each image at the top-left and zero-padded to the
        largest height / width of the batch rounded up to a multiple of 32 (boxes stay valid),
        targets=[dict(boxes=Tensor[N_i, 4] float32, labels=Tensor[N_i] long,
        ignore=Tensor[M_i, 4] float32)], metas=[meta]).
    """
    if not samples:
        raise ValueError("collate() needs at least one sample")
    imgs = [torch.as_tensor(s["img"], dtype=torch.float32) for s in samples]
    height = _ceil_to(max(int(i.shape[1]) for i in imgs), SIZE_DIVISOR)
    width = _ceil_to(max(int(i.shape[2]) for i in imgs), SIZE_DIVISOR)
    images = torch.zeros((len(imgs), 3, height, width), dtype=torch.float32)
    for k, img in enumerate(imgs):
        images[k, :, : img.shape[1], : img.shape[2]] = img
    targets: List[Dict[str, torch.Tensor]] = [
        dict(
            boxes=torch.as_tensor(np.asarray(s["gt_boxes"], np.float32)).reshape(-1, 4),
            labels=torch.as_tensor(np.asarray(s["gt_labels"], np.int64)).reshape(-1),
            ignore=torch.as_tensor(np.asarray(s["gt_ignore"], np.float32)).reshape(-1, 4),
        )
        for s in samples
    ]
    return dict(images=images, targets=targets, metas=[s["meta"] for s in samples])
