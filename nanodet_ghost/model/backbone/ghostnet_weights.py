"""ImageNet weights for `GhostNet`, from a local file (never downloaded).

The official GhostNet 1.0x state dict (timm's `ghostnet_100` has the same keys) loads strictly into
the full network. A shallower network (depth < 1) or one with dynamic convolutions gets what fits,
block by block from the block it was kept from, and the log says how many tensors loaded.
"""
from __future__ import annotations

import logging
import os
from typing import Dict, Mapping

import torch
from torch import Tensor, nn

from nanodet_ghost.model.backbone.dynamic_conv import DynamicConv2d
from nanodet_ghost.model.weights import (
    CheckpointMismatchError,
    compare_state_dicts,
    describe_mismatch,
    read_checkpoint,
)

logger = logging.getLogger(__name__)

CLASSIFIER_PREFIXES = ("conv_head.", "classifier.")


def load_imagenet_weights(net: nn.Module, path: str) -> None:
    """Load an official ImageNet GhostNet 1.0x state dict into the `GhostNet` `net`.

    Accepts a bare state dict or one wrapped in `state_dict`/`model`, with or without a
    `module.` prefix, in a torch or a `.safetensors` file; classifier weights are dropped.
    BatchNorm `num_batches_tracked` counters may be absent (they are not weights). The file
    must be a GhostNet 1.0x state dict: any other missing or unexpected key, or a shape
    mismatch, raises a `CheckpointMismatchError` that lists them (whatever the network's
    depth or experts). Any width but 1.0 raises it too: ImageNet weights exist for 1.0x only.
    """
    if net.width != 1.0:
        raise CheckpointMismatchError(
            f"{path}: ImageNet GhostNet weights exist only for width 1.0, but this backbone has width "
            f"{net.width}; set model.backbone.pretrained to null or model.backbone.width to 1.0")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"pretrained GhostNet weights not found: {path}")
    state = read_checkpoint(path)
    for wrapper in ("state_dict", "model"):
        if isinstance(state.get(wrapper), dict):
            state = state[wrapper]
    cleaned = {k[len("module."):] if k.startswith("module.") else k: v for k, v in state.items()}
    cleaned = {k: v for k, v in cleaned.items() if not k.startswith(CLASSIFIER_PREFIXES)}
    with torch.device("meta"):  # the full network's keys and shapes, allocating nothing
        reference = type(net)(out_stages=net.out_stages).state_dict()
    for key in reference:  # a counter, not a weight: some exports leave it out
        if key.endswith(".num_batches_tracked"):
            cleaned.setdefault(key, torch.tensor(0, dtype=torch.long))
    # Blocks past the last out stage are not built; their weights are expected and dropped.
    num_stages = len(net.kept_blocks)
    unbuilt_prefixes = [f"blocks.{i}." for i in range(len(net.blocks), num_stages + 1)]
    missing, unexpected, mismatched = compare_state_dicts(reference, cleaned, ignore_unexpected=unbuilt_prefixes)
    if missing or unexpected or mismatched:
        raise CheckpointMismatchError(describe_mismatch(
            f"{path}: not a GhostNet 1.0x state dict", missing, unexpected, mismatched))
    own = net.state_dict()
    if own.keys() == reference.keys():  # depth 1.0 and no dynamic experts
        net.load_state_dict({k: cleaned[k] for k in own}, strict=True)
        logger.info("loaded pretrained GhostNet weights from %s (%d tensors)", path, len(own))
    else:
        _load_partial(net, path, own, {k: v for k, v in cleaned.items() if k in reference})


def _load_partial(net: nn.Module, path: str, own: Mapping[str, Tensor], source: Mapping[str, Tensor]) -> None:
    """Load what fits of the full 1.0x `source` into the shallower and/or dynamic `net`."""
    experts = {f"{name}.weight" for name, m in net.named_modules() if isinstance(m, DynamicConv2d)}
    loaded: Dict[str, Tensor] = {}
    for key, target in own.items():
        value = source.get(net.source_key(key))
        if value is not None and value.shape == target.shape:
            loaded[key] = value
        elif (key in experts and value is not None and value.shape[1:] == target.shape[1:]
              and target.shape[0] % value.shape[0] == 0):
            loaded[key] = value.repeat(target.shape[0] // value.shape[0], 1, 1, 1)  # every expert: the kernel
    net.load_state_dict(loaded, strict=False)
    left = [k for k in own if k not in loaded]
    others = [k for k in left if ".routing." not in k]
    notes = [f"{len(left) - len(others)} routing tensors of the dynamic convolutions"] if experts else []
    if others:
        more = f" ... and {len(others) - 4} more" if len(others) > 4 else ""
        notes.append(f"{len(others)}: " + ", ".join(others[:4]) + more)
    remapped = ", ".join(f"blocks.{s}.{j} <- blocks.{s}.{i}" for s, kept in enumerate(net.kept_blocks)
                         if s < len(net.blocks) for j, i in enumerate(kept) if i != j)
    logger.info("pretrained GhostNet weights %s: loaded %d of %d tensors (depth %g%s); %d left at their "
                "initialisation%s; %d tensors of the file unused", path, len(loaded), len(own), net.depth,
                f": {remapped}" if remapped else "", len(left), f" ({'; '.join(notes)})" if notes else "",
                len(set(source) - {net.source_key(k) for k in loaded}))
    if experts:
        logger.info("dynamic convolution: %d of %d primary convs start with all their %d experts equal to the "
                    "pretrained kernel; the routing layers keep their initialisation",
                    len(experts & loaded.keys()), len(experts), net.dynamic_experts)
