"""Batching of pipeline samples (docs/contracts.md "Samples and batches")."""
from __future__ import annotations

import math
from typing import Any, Dict, List, Sequence, Tuple

import numpy as np
import torch
from torch.utils.data import get_worker_info

SIZE_DIVISOR = 32


def _ceil_to(value: int, divisor: int) -> int:
    return (value + divisor - 1) // divisor * divisor


def _empty_batch(shape: Tuple[int, ...]) -> torch.Tensor:
    """Uninitialised float32 tensor; in a DataLoader worker it lives in shared memory.

    Without this the whole batch is copied into shared memory once more when it is sent to the
    main process (torch's default_collate allocates the same way).
    """
    if get_worker_info() is None:
        # numpy's allocation: first touch of a fresh torch.empty batch is ~3x slower (measured).
        return torch.from_numpy(np.empty(shape, np.float32))
    proto = torch.empty(0, dtype=torch.float32)
    try:  # the allocation torch's own default_collate uses; private, so keep a fallback
        storage = proto._typed_storage()._new_shared(math.prod(shape), device="cpu")
    except (AttributeError, TypeError, RuntimeError):
        return torch.empty(shape, dtype=torch.float32)
    return proto.new(storage).view(shape)


def collate(samples: Sequence[Dict[str, Any]]) -> Dict[str, Any]:
    """Stack samples into a batch.

    Args:
        samples: pipeline samples, `img` float32 [3, H_i, W_i] (numpy or tensor), `gt_boxes`
            [N_i, 4], `gt_labels` [N_i], `gt_ignore` [M_i, 4], `meta` dict; or the stand-ins of
            unreadable images (`loader.unreadable_sample`: `unreadable` and `meta` only).
    Returns:
        dict(images=Tensor[B, 3, H, W] float32, each image at the top-left and zero-padded to the
        largest height / width of the batch rounded up to a multiple of 32 (boxes stay valid),
        targets=[dict(boxes=Tensor[N_i, 4] float32, labels=Tensor[N_i] long,
        ignore=Tensor[M_i, 4] float32)], metas=[meta],
        dropped=[dict(image_id, file_name, problem)] for the unreadable stand-ins). B counts the
        readable samples only; when there is none, images is Tensor[0, 3, 32, 32].
    """
    if not samples:
        raise ValueError("collate() needs at least one sample")
    dropped = [dict(image_id=s["meta"]["image_id"], file_name=s["meta"]["file_name"],
                    problem=s["unreadable"]) for s in samples if "unreadable" in s]
    samples = [s for s in samples if "unreadable" not in s]
    if not samples:
        return dict(images=torch.zeros((0, 3, SIZE_DIVISOR, SIZE_DIVISOR)), targets=[], metas=[],
                    dropped=dropped)
    imgs = [np.asarray(s["img"], np.float32) for s in samples]
    height = _ceil_to(max(i.shape[1] for i in imgs), SIZE_DIVISOR)
    width = _ceil_to(max(i.shape[2] for i in imgs), SIZE_DIVISOR)
    images_t = _empty_batch((len(imgs), 3, height, width))
    images = images_t.numpy()
    # Each pixel is written once: padding is zeroed explicitly instead of a torch.zeros + copy.
    for k, img in enumerate(imgs):
        h, w = img.shape[1:]
        images[k, :, :h, :w] = img
        images[k, :, h:, :] = 0.0
        images[k, :, :h, w:] = 0.0
    targets: List[Dict[str, torch.Tensor]] = [
        dict(
            boxes=torch.as_tensor(np.asarray(s["gt_boxes"], np.float32)).reshape(-1, 4),
            labels=torch.as_tensor(np.asarray(s["gt_labels"], np.int64)).reshape(-1),
            ignore=torch.as_tensor(np.asarray(s["gt_ignore"], np.float32)).reshape(-1, 4),
        )
        for s in samples
    ]
    metas = [s["meta"] for s in samples]
    return dict(images=images_t, targets=targets, metas=metas, dropped=dropped)
