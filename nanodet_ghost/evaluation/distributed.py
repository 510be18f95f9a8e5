"""Collecting per-image predictions from all processes of a distributed run."""
from __future__ import annotations

import logging
from typing import Any, Dict, Mapping

logger = logging.getLogger(__name__)


def _to_cpu(pred: Mapping[str, Any]) -> Dict[str, Any]:
    """Tensors -> numpy arrays, so that pickled predictions never hold a (foreign) CUDA device."""
    return {k: (v.detach().cpu().numpy() if hasattr(v, "detach") else v) for k, v in pred.items()}


def gather_predictions(local: Mapping[Any, Mapping[str, Any]]) -> Dict[int, Dict[str, Any]]:
    """Merge every rank's `{image_id: prediction}` into one dict, on every rank.

    Uses `torch.distributed.all_gather_object` when a process group is initialised; otherwise it
    returns `local` as a plain dict (same objects, nothing copied or converted).

    In the distributed case tensors are moved to numpy (CPU) before pickling, image ids become
    Python ints, and an image id seen on several ranks (a `DistributedSampler` pads its last batch
    with repeated samples) is kept once, from the lowest rank. The result is sorted by image id, so
    every rank gets the same dict and may evaluate it with identical results.

    Args:
        local: this rank's predictions, `{image_id: dict(boxes, scores, labels)}`.

    Returns:
        `{image_id: dict(boxes, scores, labels)}` over all ranks.
    """
    try:
        import torch.distributed as dist
    except ImportError:  # evaluation works without torch (e.g. scoring ONNX results)
        return dict(local)
    if not (dist.is_available() and dist.is_initialized()):
        return dict(local)
    return _merge_ranks(dist, {int(k): _to_cpu(v) for k, v in local.items()})


def gather_unreadable(local: Mapping[int, str]) -> Dict[int, str]:
    """Merge every rank's `{image_id: "file_name: problem"}` of unreadable images, on every rank.

    The same collective as `gather_predictions`: every rank must call it, in the same order,
    even with nothing to report. Without a process group it returns `local` as a plain dict.
    """
    try:
        import torch.distributed as dist
    except ImportError:
        return dict(local)
    if not (dist.is_available() and dist.is_initialized()):
        return dict(local)
    return _merge_ranks(dist, {int(k): str(v) for k, v in local.items()})


def _merge_ranks(dist: Any, payload: Dict[int, Any]) -> Dict[int, Any]:
    """all_gather_object of `{image_id: value}`; an id seen on several ranks is kept once, from
    the lowest rank; sorted by image id."""
    parts: list = [None] * dist.get_world_size()
    dist.all_gather_object(parts, payload)
    merged: Dict[int, Any] = {}
    duplicates = 0
    for part in parts:
        for image_id, value in (part or {}).items():
            if image_id in merged:
                duplicates += 1
                continue
            merged[image_id] = value
    logger.debug("gathered %d images from %d ranks (%d duplicates dropped)",
                 len(merged), len(parts), duplicates)
    return dict(sorted(merged.items()))

