"""Detector weights in checkpoint files, read safely (`weights_only=True`, no pickled code).

A training checkpoint is a Lightning checkpoint whose `state_dict` holds the live weights under
`model.` and the EMA weights under `ema.module.`. A plain detector state dict is accepted too, as a
torch file (.pth, .ckpt, ...) or a `.safetensors` file (read by `safetensors`, no pickle at all).
`nanodet_ghost.model.load_detector(cfg, ckpt)` builds a detector from a config and loads one.

This module imports only torch and safetensors, so every part of the package (the backbone
included) can use it.
"""
from __future__ import annotations

import logging
import os
from typing import Dict, List, Mapping, Sequence, Tuple

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file
from torch import Tensor, nn

logger = logging.getLogger(__name__)

MODEL_PREFIX = "model."
EMA_PREFIX = "ema.module."
MAX_LISTED = 10  # keys listed per kind of mismatch; the rest are counted
SAFETENSORS_SUFFIX = ".safetensors"


class CheckpointMismatchError(ValueError):
    """A checkpoint cannot be read safely, or does not fit the model built from the config."""


def is_safetensors(path: str | os.PathLike) -> bool:
    """True for a `.safetensors` file name."""
    return os.fspath(path).lower().endswith(SAFETENSORS_SUFFIX)


def read_safetensors(path: str | os.PathLike) -> Dict[str, Tensor]:
    """The tensors of a `.safetensors` file, on the CPU (no pickle, `torch.load` is never called).

    Raises:
        FileNotFoundError: no such file.
        CheckpointMismatchError: not a readable safetensors file.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"checkpoint not found: {path}")
    try:
        return load_file(path, device="cpu")
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointMismatchError(
            f"{path}: cannot be read as a safetensors file ({type(exc).__name__}: "
            f"{str(exc).splitlines()[0] if str(exc) else 'no detail'})") from None


def read_checkpoint(path: str | os.PathLike) -> dict:
    """Load a checkpoint: a `.safetensors` file with `read_safetensors`, any other with
    `torch.load(weights_only=True)` (a file that needs pickled code is refused).

    Raises:
        FileNotFoundError: no such file.
        CheckpointMismatchError: not a weights-only torch file or a safetensors file, or not a dict.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"checkpoint not found: {path}")
    if is_safetensors(path):
        return read_safetensors(path)
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # UnpicklingError for foreign objects, RuntimeError for broken zips
        raise CheckpointMismatchError(
            f"{path}: cannot be read as a weights-only checkpoint ({type(exc).__name__}: "
            f"{str(exc).splitlines()[0]}). Files that need arbitrary pickled code are not loaded."
        ) from None
    if not isinstance(checkpoint, dict):
        raise CheckpointMismatchError(f"{path}: expected a dict checkpoint, got {type(checkpoint).__name__}")
    return checkpoint


def detector_state_dict(checkpoint: Mapping, prefer_ema: bool = True) -> Tuple[Dict[str, Tensor], str]:
    """The detector weights inside a checkpoint and where they came from ("ema", "model", "plain")."""
    state = checkpoint.get("state_dict", checkpoint)
    if prefer_ema and any(k.startswith(EMA_PREFIX) for k in state):
        return {k[len(EMA_PREFIX):]: v for k, v in state.items() if k.startswith(EMA_PREFIX)}, "ema"
    if any(k.startswith(MODEL_PREFIX) for k in state):
        return {k[len(MODEL_PREFIX):]: v for k, v in state.items() if k.startswith(MODEL_PREFIX)}, "model"
    return {k: v for k, v in state.items() if isinstance(v, Tensor)}, "plain"


def compare_state_dicts(own: Mapping[str, Tensor], loaded: Mapping[str, Tensor],
                        ignore_unexpected: Sequence[str] = ()) -> Tuple[List[str], List[str], List[str]]:
    """Missing keys, unexpected keys and shape mismatches ("key: file (..) vs model (..)").

    Args:
        own: the model's state dict.
        loaded: the state dict read from a file.
        ignore_unexpected: key prefixes of the file that may be absent from the model.
    """
    ignore = tuple(ignore_unexpected)
    missing = sorted(k for k in own if k not in loaded)
    unexpected = sorted(k for k in loaded if k not in own and not (ignore and k.startswith(ignore)))
    mismatched = sorted(
        f"{k}: file {tuple(loaded[k].shape)} vs model {tuple(own[k].shape)}"
        for k in own
        if k in loaded and loaded[k].shape != own[k].shape
    )
    return missing, unexpected, mismatched


def describe_mismatch(title: str, missing: Sequence[str], unexpected: Sequence[str],
                      mismatched: Sequence[str]) -> str:
    """`title`, then one line per kind of problem (at most `MAX_LISTED` keys each, then a count)."""
    lines = [title]
    for kind, items in (("shape mismatches", mismatched), ("missing keys", missing),
                        ("unexpected keys", unexpected)):
        if items:
            more = f" ... and {len(items) - MAX_LISTED} more" if len(items) > MAX_LISTED else ""
            lines.append(f"  {kind} ({len(items)}): " + "; ".join(items[:MAX_LISTED]) + more)
    return "\n".join(lines)


def load_detector_weights(model: nn.Module, path: str | os.PathLike, prefer_ema: bool = True,
                          ignore_unexpected: Sequence[str] = ()) -> str:
    """Load a checkpoint's detector weights into `model`, strictly.

    Returns the source of the weights ("ema", "model" or "plain"). A checkpoint of another
    architecture or class count raises `CheckpointMismatchError` listing every mismatch.
    Keys of the file under an `ignore_unexpected` prefix (a training-only module the model was built
    without) are left out.
    """
    state, source = detector_state_dict(read_checkpoint(path), prefer_ema)
    ignore = tuple(ignore_unexpected)
    state = {k: v for k, v in state.items() if not (ignore and k.startswith(ignore))}
    missing, unexpected, mismatched = compare_state_dicts(model.state_dict(), state)
    if missing or unexpected or mismatched:
        message = describe_mismatch(f"{path}: checkpoint does not match the model built from the config",
                                    missing, unexpected, mismatched)
        if any("predictors" in m for m in mismatched):
            message += "\n  (the head's output size differs: is model.head.num_classes the same as in training?)"
        raise CheckpointMismatchError(message)
    model.load_state_dict(state, strict=True)
    logger.info("loaded %s weights from %s", source, path)
    return source


def load_for_finetune(model: nn.Module, path: str | os.PathLike) -> List[str]:
    """Load what fits from another checkpoint (`load_from:`): tensors whose shape differs, such as
    a head trained for another class count, keep their fresh initialisation. Returns skipped keys.
    """
    state, source = detector_state_dict(read_checkpoint(path), prefer_ema=True)
    own = model.state_dict()
    missing, unexpected, mismatched = compare_state_dicts(own, state)
    usable = {k: v for k, v in state.items() if k in own and v.shape == own[k].shape}
    model.load_state_dict(usable, strict=False)
    skipped = mismatched + [f"{k}: not in checkpoint" for k in missing] + [f"{k}: not in model" for k in unexpected]
    if skipped:
        logger.warning("load_from %s: %d tensors loaded, %d skipped and left at initialisation:\n  %s",
                       path, len(usable), len(skipped), "\n  ".join(skipped))
    else:
        logger.info("load_from %s: all %d tensors loaded (%s weights)", path, len(usable), source)
    return skipped
