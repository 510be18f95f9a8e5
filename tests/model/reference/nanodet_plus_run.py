"""Runs the NanoDet-Plus equality cases (plus_cases.py) through NanoDet itself.

Needs a RangiLyu/nanodet checkout (`import_nanodet_plus(src)`). NanoDet's modules get our model's
weights: GhostPAN and NanoDetPlusHead through nanodet_names.py, SimpleConvHead under the same
names as our AuxiliaryHead, the stand-in backbone as a copy. The model cases run NanoDet's own
`NanoDetPlus.forward_train` on an instance whose parts are assigned instead of built from a config.
"""
from __future__ import annotations

import contextlib
import copy
import io
import os
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Dict, List, Optional, Tuple

import numpy as np
import torch
from torch import Tensor, nn

from nanodet_build import build_nanodet_neck
from nanodet_names import NANODET_ONLY, ours_from_nanodet
from plus_cases import AUX_HEAD, DETACH_EPOCH, HEAD, NECK, parts

LOSS_CFG = SimpleNamespace(loss_qfl=SimpleNamespace(beta=2.0, loss_weight=1.0),
                           loss_dfl=SimpleNamespace(loss_weight=0.25),
                           loss_bbox=SimpleNamespace(loss_weight=2.0))
# NanoDet's names of the loss terms -> ours.
TERM_NAMES = {"loss_qfl": "loss_qfl", "loss_dfl": "loss_dfl", "loss_bbox": "loss_giou"}


def import_nanodet_plus(src: str) -> SimpleNamespace:
    """The NanoDet classes the cases use (raises ImportError when `src` is not a nanodet checkout)."""
    if src not in sys.path:
        sys.path.insert(0, src)
    from nanodet.model.arch.nanodet_plus import NanoDetPlus
    from nanodet.model.fpn.ghost_pan import GhostPAN
    from nanodet.model.head.assigner.dsl_assigner import DynamicSoftLabelAssigner
    from nanodet.model.head.nanodet_plus_head import NanoDetPlusHead
    from nanodet.model.head.simple_conv_head import SimpleConvHead

    return SimpleNamespace(NanoDetPlus=NanoDetPlus, GhostPAN=GhostPAN, NanoDetPlusHead=NanoDetPlusHead,
                           SimpleConvHead=SimpleConvHead, DynamicSoftLabelAssigner=DynamicSoftLabelAssigner)


def nanodet_head(nd: SimpleNamespace) -> nn.Module:
    with contextlib.redirect_stdout(io.StringIO()):  # it prints when initialised
        return nd.NanoDetPlusHead(num_classes=HEAD["num_classes"], loss=LOSS_CFG, input_channel=HEAD["in_channels"],
                                  feat_channels=HEAD["feat_channels"], stacked_convs=HEAD["stacked_convs"],
                                  kernel_size=HEAD["kernel_size"], strides=list(HEAD["strides"]),
                                  reg_max=HEAD["reg_max"], activation="LeakyReLU")


def nanodet_aux_head(nd: SimpleNamespace) -> nn.Module:
    return nd.SimpleConvHead(num_classes=AUX_HEAD["num_classes"], input_channel=AUX_HEAD["in_channels"],
                             feat_channels=AUX_HEAD["feat_channels"], stacked_convs=AUX_HEAD["stacked_convs"],
                             strides=list(AUX_HEAD["strides"]), reg_max=AUX_HEAD["reg_max"], activation="LeakyReLU",
                             norm_cfg=dict(type="GN", num_groups=AUX_HEAD["num_groups"], requires_grad=True))


def load_from_ours(theirs: nn.Module, ours: nn.Module, rename: bool) -> Dict[str, str]:
    """Copy `ours`'s state into `theirs` (strictly); returns NanoDet parameter name -> ours."""
    own = ours.state_dict()
    names = {k: (ours_from_nanodet(k) if rename else k) for k in theirs.state_dict() if k not in NANODET_ONLY}
    state = {k: own[v] for k, v in names.items()}
    missing = set(own) - set(names.values())
    if missing:
        raise KeyError(f"not in NanoDet's module: {sorted(missing)}")
    theirs.load_state_dict({**theirs.state_dict(), **state}, strict=True)
    return {k: names[k] for k, _ in theirs.named_parameters()}


def nanodet_arch(nd: SimpleNamespace, model: nn.Module, epoch: int) -> Tuple[nn.Module, Dict[str, Tuple[str, str]]]:
    """NanoDet's `NanoDetPlus` holding copies of our model's parts, at `epoch`; and for each of its
    parameters (NanoDet name) the (part, name) of ours."""
    ours = parts(model)
    arch = nd.NanoDetPlus.__new__(nd.NanoDetPlus)
    nn.Module.__init__(arch)
    arch.backbone = copy.deepcopy(ours["backbone"])
    arch.fpn = build_nanodet_neck(nd.GhostPAN, NECK)
    arch.aux_fpn = build_nanodet_neck(nd.GhostPAN, NECK)
    arch.head = nanodet_head(nd)
    arch.aux_head = nanodet_aux_head(nd)
    arch.detach_epoch = DETACH_EPOCH
    arch.epoch = epoch
    mapping: Dict[str, Tuple[str, str]] = {f"backbone.{k}": ("backbone", k) for k, _ in arch.backbone.named_parameters()}
    for attr, part, rename in (("fpn", "neck", True), ("aux_fpn", "aux_neck", True), ("head", "head", True),
                               ("aux_head", "aux_head", False)):
        names = load_from_ours(getattr(arch, attr), ours[part], rename)
        mapping.update({f"{attr}.{k}": (part, v) for k, v in names.items()})
    return arch.train(), mapping


def gt_meta(images: Tensor, targets: List[Dict[str, Tensor]]) -> Dict[str, Any]:
    return {"img": images,
            "gt_bboxes": [t["boxes"].numpy().astype(np.float32).reshape(-1, 4) for t in targets],
            "gt_labels": [t["labels"].numpy().astype(np.int64) for t in targets],
            "gt_bboxes_ignore": None}


def record_assignments(head: nn.Module) -> List[Tensor]:
    """Wraps `head.assigner.assign`: each call appends its gt index per point (-1 negative)."""
    calls: List[Tensor] = []
    assign = head.assigner.assign

    def recording(*args: Any, **kwargs: Any) -> Any:
        result = assign(*args, **kwargs)
        calls.append(result.gt_inds.clone() - 1)
        return result
    head.assigner.assign = recording
    return calls


def flat_losses(loss: Tensor, states: Dict[str, Tensor]) -> Dict[str, float]:
    out = {"loss": loss.item()}
    for key, value in states.items():
        prefix = "aux_" if key.startswith("aux_") else ""
        out[prefix + TERM_NAMES[key[len(prefix):]]] = value.item()
    return out


def run_model_case(nd: SimpleNamespace, model: nn.Module, images: Tensor, targets: List[Dict[str, Tensor]],
                   epoch: int) -> Dict[str, Any]:
    """NanoDet's forward_train + backward: losses, assignments per image, and the gradient of each
    of our parameters, by our `"part.name"`."""
    arch, mapping = nanodet_arch(nd, model, epoch)
    calls = record_assignments(arch.head)
    _, loss, states = arch.forward_train(gt_meta(images, targets))
    loss.backward()
    grads = {".".join(mapping[name]): (p.grad.clone() if p.grad is not None else torch.zeros_like(p))
             for name, p in arch.named_parameters()}
    return {"losses": flat_losses(loss, states), "assignments": torch.stack(calls), "grads": grads}


def run_loss_case(nd: SimpleNamespace, raw: Tensor, aux_raw: Optional[Tensor], targets: List[Dict[str, Tensor]],
                  input_hw: Tuple[int, int]) -> Dict[str, Any]:
    """NanoDetPlusHead.loss on given head outputs: losses, assignments and the gradients of the
    outputs (`raw`, `aux_raw`)."""
    head = nanodet_head(nd)
    calls = record_assignments(head)
    raw = raw.clone().requires_grad_(True)
    aux = aux_raw.clone().requires_grad_(True) if aux_raw is not None else None
    images = torch.zeros(raw.shape[0], 3, *input_hw)
    loss, states = head.loss(raw, gt_meta(images, targets), aux_preds=aux)
    loss.backward()
    grads = {"raw": raw.grad.clone()}
    if aux is not None:
        grads["aux_raw"] = aux.grad.clone()
    return {"losses": flat_losses(loss, states), "assignments": torch.stack(calls), "grads": grads}


def run_dsl_case(nd: SimpleNamespace, inputs: Dict[str, Tensor]) -> Tuple[Tensor, Tensor]:
    """NanoDet's DynamicSoftLabelAssigner: (gt index per point, -1 negative; soft label per point,
    0 for negatives)."""
    points = inputs["points"]
    strides = torch.zeros(points.shape[0], 2)  # the assigner reads only the centres of its priors
    result = nd.DynamicSoftLabelAssigner(topk=13, iou_factor=3.0).assign(
        inputs["cls_logits"], torch.cat((points, strides), dim=1), inputs["decoded_boxes"], inputs["gt_boxes"],
        inputs["gt_labels"])
    gt_indices = result.gt_inds - 1
    soft = torch.where(gt_indices >= 0, result.max_overlaps, torch.zeros_like(result.max_overlaps))
    return gt_indices, soft


def nanodet_or_skip() -> SimpleNamespace:
    """`import_nanodet_plus($NANODET_SRC)`, or skip the calling test when that is unset, absent or
    not importable."""
    import pytest

    hint = "set NANODET_SRC to a RangiLyu/nanodet checkout to compare with NanoDet itself"
    src = os.environ.get("NANODET_SRC")
    if not src:
        pytest.skip(f"NANODET_SRC is not set: {hint}")
    if not Path(src).is_dir():
        pytest.skip(f"NANODET_SRC={src} does not exist: {hint}")
    try:
        return import_nanodet_plus(src)
    except Exception as exc:  # ImportError, or a nanodet import failing on a missing dependency
        pytest.skip(f"NANODET_SRC={src} is not importable ({type(exc).__name__}: {exc}): {hint}")
