"""NanoDet's parameter names → nanodet_ghost's, for GhostPAN and NanoDetPlusHead state dicts.

The modules line up one to one; only some names differ:

- GhostPAN's 1x1 reductions are NanoDet `ConvModule`s (`conv`, `bn`), ours the backbone's
  `ConvBnAct` (`conv`, `bn1`); the Ghost blocks' residual `reduce_conv` has no norm in either.
- NanoDet's `DepthwiseConvModule` norms are `dwnorm`/`pwnorm`, our `DepthwiseSeparableConv`'s
  `dw_norm`/`pw_norm`.
- NanoDetPlusHead's per-level `cls_convs` / `gfl_cls` are GFLHead's `towers` / `predictors`.
"""
from __future__ import annotations

import re
from typing import Dict, Mapping, Pattern, Tuple, TypeVar

T = TypeVar("T")

_RULES: Tuple[Tuple[Pattern[str], str], ...] = (
    (re.compile(r"^(reduce_layers\.\d+)\.bn\."), r"\1.bn1."),
    (re.compile(r"\.dwnorm\."), ".dw_norm."),
    (re.compile(r"\.pwnorm\."), ".pw_norm."),
    (re.compile(r"^cls_convs\."), "towers."),
    (re.compile(r"^gfl_cls\."), "predictors."),
)
# In NanoDet's state dict but no weight: the head's constant `linspace(0, reg_max)` for decoding.
NANODET_ONLY = frozenset({"distribution_project.project"})


def ours_from_nanodet(name: str) -> str:
    """Our state-dict key for NanoDet's key `name`."""
    for pattern, replacement in _RULES:
        name = pattern.sub(replacement, name)
    return name


def map_state_dict(state: Mapping[str, T]) -> Dict[str, T]:
    """NanoDet's GhostPAN or NanoDetPlusHead state dict under our names (`NANODET_ONLY` dropped)."""
    mapped = {ours_from_nanodet(k): v for k, v in state.items() if k not in NANODET_ONLY}
    if len(mapped) != len(state) - len(NANODET_ONLY & set(state)):
        raise ValueError("two NanoDet keys map onto the same name")
    return mapped
