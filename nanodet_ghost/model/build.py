"""Model assembly: the `model:` config section → a `Detector`.

Each section maps onto one constructor. Where a section offers several classes, a key picks one from
a plain dict (`NECKS` by `neck.type`, `LOSSES` by `loss.assigner`) and the section's other keys are
that class's arguments; a key the chosen class does not take must keep its default.

`check_model_config` builds the model on the meta device (no memory, no weights read) so that a bad
combination fails when the config is loaded, with the key named: a width of 0, taps the neck cannot
fuse, head strides that are not the neck's levels, an auxiliary head without the dsl assigner.
"""
from __future__ import annotations

import copy
import inspect
from typing import Any, Dict, List, Mapping, Sequence

import torch
from omegaconf import DictConfig, OmegaConf
from torch import nn

from nanodet_ghost.model.backbone.ghostnet import GhostNet
from nanodet_ghost.model.detector import Detector
from nanodet_ghost.model.head.aux_head import AuxiliaryGuidance, AuxiliaryHead
from nanodet_ghost.model.head.gfl_head import GFLHead
from nanodet_ghost.model.head.postprocess import PostProcessor
from nanodet_ghost.model.loss.gfl_loss import GFLLoss
from nanodet_ghost.model.loss.plus_loss import NanoDetPlusLoss
from nanodet_ghost.model.neck.ghost_pan import GhostPAN
from nanodet_ghost.model.neck.pan import PAN

NECKS: Dict[str, type] = {"pan": PAN, "ghost_pan": GhostPAN}
LOSSES: Dict[str, type] = {"atss": GFLLoss, "dsl": NanoDetPlusLoss}
# Keys of a section that choose or place a class rather than being one of its arguments.
_SELECTORS = {"neck": ("type",), "loss": ("assigner",), "head": ("center_offset",)}


def _plain(section: Any) -> dict:
    if section is None:
        return {}
    return OmegaConf.to_container(section, resolve=True) if isinstance(section, DictConfig) else dict(section)


def _signature_defaults(classes: Sequence[type]) -> Dict[str, Any]:
    """Default value of every constructor argument of `classes` (the config schema uses the same)."""
    defaults: Dict[str, Any] = {}
    for cls in classes:
        for name, param in inspect.signature(cls.__init__).parameters.items():
            if param.default is not inspect.Parameter.empty:
                defaults.setdefault(name, param.default)
    return defaults


def _arguments(section_name: str, values: Mapping[str, Any], cls: type, registry: Sequence[type],
               chooser: str) -> Dict[str, Any]:
    """The entries of `values` that `cls.__init__` takes. An entry meant for another class of the
    same section (`registry`) must keep its default: set, it would be silently unused."""
    accepted = set(inspect.signature(cls.__init__).parameters)
    defaults = _signature_defaults(registry)
    args = {}
    for key, value in values.items():
        if key in _SELECTORS.get(section_name, ()):
            continue
        if key in accepted:
            args[key] = value
        elif key in defaults and value != defaults[key]:
            raise ValueError(f"model.{section_name}.{key} is not an argument of {cls.__name__} ({chooser}); "
                             f"remove it or choose a {section_name} that takes it")
    return args


def _choose(section_name: str, registry: Mapping[str, type], values: Mapping[str, Any], key: str) -> type:
    choice = values.get(key)
    if choice not in registry:
        raise ValueError(f"model.{section_name}.{key}: unknown '{choice}', expected one of {', '.join(registry)}")
    return registry[choice]


def _construct(section: str, cls: type, **kwargs: Any) -> nn.Module:
    try:
        return cls(**kwargs)
    except ValueError as exc:  # the constructors name their argument; add the config section
        raise ValueError(f"model.{section}: {exc}") from None


def _level_strides(backbone_strides: Sequence[int], num_extra_level: int) -> List[int]:
    strides = list(backbone_strides)
    for _ in range(num_extra_level):
        strides.append(strides[-1] * 2)
    return strides


def build_model(model_cfg: Mapping[str, Any]) -> Detector:
    """Build the detector from the `model:` config section (or an equivalent mapping)."""
    backbone = _construct("backbone", GhostNet, **_plain(model_cfg["backbone"]))
    strides = backbone.strides
    if any(b != 2 * a for a, b in zip(strides, strides[1:])):
        raise ValueError(
            f"model.backbone.out_stages {list(backbone.out_stages)} give strides {strides}: the neck fuses "
            "levels by x2 resizing, so each tap must have twice the stride of the one before (e.g. [4, 6, 9] "
            "or [4, 6, 8] for strides 8/16/32)")

    neck_values = _plain(model_cfg["neck"])
    neck_cls = _choose("neck", NECKS, neck_values, "type")
    chooser = f"model.neck.type: {neck_values['type']}"
    neck = _construct("neck", neck_cls, in_channels=backbone.out_channels,
                      **_arguments("neck", neck_values, neck_cls, list(NECKS.values()), chooser))
    neck_strides = _level_strides(strides, int(getattr(neck, "num_extra_level", 0)))

    head_values = _plain(model_cfg["head"])
    center_offset = float(head_values.get("center_offset", 0.5))
    head = _construct("head", GFLHead, in_channels=neck.out_channels,
                      **_arguments("head", head_values, GFLHead, [GFLHead], "model.head"))
    if list(head.strides) != neck_strides:
        raise ValueError(
            f"model.head.strides {list(head.strides)} do not match the neck's levels {neck_strides} "
            f"(backbone out_stages {list(backbone.out_stages)}, neck num_extra_level "
            f"{getattr(neck, 'num_extra_level', 0)})")

    loss_values = _plain(model_cfg["loss"])
    loss_cls = _choose("loss", LOSSES, loss_values, "assigner")
    loss_fn = _construct("loss", loss_cls, num_classes=head.num_classes, strides=head.strides, reg_max=head.reg_max,
                         center_offset=center_offset,
                         **_arguments("loss", loss_values, loss_cls, list(LOSSES.values()),
                                      f"model.loss.assigner: {loss_values['assigner']}"))

    aux = None
    aux_values = _plain(model_cfg.get("aux_head"))
    if aux_values:
        if loss_cls is not NanoDetPlusLoss:
            raise ValueError("model.aux_head needs model.loss.assigner: dsl (the auxiliary head guides the dynamic "
                             f"soft-label assignment; the '{loss_values['assigner']}' assigner does not use it)")
        detach_epoch = int(aux_values.pop("detach_epoch"))
        aux_head = _construct("aux_head", AuxiliaryHead, num_classes=head.num_classes,
                              in_channels=2 * neck.out_channels, strides=head.strides, reg_max=head.reg_max,
                              **aux_values)
        aux = AuxiliaryGuidance(copy.deepcopy(neck), aux_head, detach_epoch=detach_epoch)

    postprocess = _construct("postprocess", PostProcessor, num_classes=head.num_classes, strides=head.strides,
                             reg_max=head.reg_max, center_offset=center_offset, **_plain(model_cfg["postprocess"]))
    return Detector(backbone, neck, head, loss_fn, postprocess, aux=aux)


def check_model_config(model_cfg: Mapping[str, Any]) -> None:
    """Build `model_cfg` on the meta device (no memory, no pretrained file read).

    Raises:
        ValueError: naming the key, for any combination `build_model` would refuse.
    """
    values = _plain(model_cfg)
    values["backbone"] = {**values["backbone"], "pretrained": None}
    with torch.device("meta"):
        build_model(values)


def count_parameters(model: nn.Module) -> int:
    """Parameters of what is deployed: the auxiliary (training-only) module is not counted."""
    aux = getattr(model, "aux", None)
    skip = {id(p) for p in aux.parameters()} if aux is not None else set()
    return sum(p.numel() for p in model.parameters() if id(p) not in skip)
