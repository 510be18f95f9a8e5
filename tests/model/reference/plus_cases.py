"""The NanoDet-Plus equality cases, our side: seeded inputs, targets and the small model.

Needs no NanoDet. make_plus_oracle.py runs these cases through NanoDet and writes plus_oracle.npz;
tests/model/test_dsl_assigner.py and test_plus_loss.py run them through nanodet_ghost and compare.

Every random weight, image and head output is rounded to a value float16 can hold, so that the npz
stores it exactly in half the bytes (the computations themselves run in float32 on both sides).
"""
from __future__ import annotations

import copy
import math
from typing import Dict, List, Sequence, Tuple

import numpy as np
import torch
from torch import Tensor, nn

from nanodet_ghost.model.detector import Detector
from nanodet_ghost.model.head.aux_head import AuxiliaryGuidance, AuxiliaryHead
from nanodet_ghost.model.head.decode import grid_points
from nanodet_ghost.model.head.gfl_head import GFLHead
from nanodet_ghost.model.head.postprocess import PostProcessor
from nanodet_ghost.model.loss.plus_loss import NanoDetPlusLoss
from nanodet_ghost.model.neck.ghost_pan import GhostPAN

NUM_CLASSES, REG_MAX = 3, 7
STRIDES = [8, 16, 32, 64]
BACKBONE_CHANNELS = [6, 8, 8]
NECK = dict(in_channels=BACKBONE_CHANNELS, out_channels=8, kernel_size=5, expand=1.0, num_blocks=1,
            use_res=False, num_extra_level=1, activation="LeakyReLU")
HEAD = dict(num_classes=NUM_CLASSES, in_channels=8, feat_channels=8, stacked_convs=2, kernel_size=5,
            strides=STRIDES, reg_max=REG_MAX)
AUX_HEAD = dict(num_classes=NUM_CLASSES, in_channels=16, feat_channels=8, stacked_convs=2, strides=STRIDES,
                reg_max=REG_MAX, num_groups=4)
DETACH_EPOCH = 2
# Sizes halve exactly down to stride 64 (NanoDet's GhostPAN upsamples by x2), and the stride-64
# level is 2x2: at 1x1 its batch-statistics BN and GroupNorm would normalise 3 or 2 values, whose
# gradients are rounding noise.
MODEL_HW = (128, 128)
IMAGE_UPSAMPLING = 8
MODEL_EPOCHS = {"model_before_detach": 0, "model_after_detach": DETACH_EPOCH}
LOSS_HW = (32, 64)
LOSS_CASES = ("loss_aux", "loss_self")
DSL_CASES = ("random", "no_gt", "tiny", "border", "overlapping", "no_candidate", "many_gts")
DSL_HW = (64, 96)


def half_exact(x: Tensor) -> Tensor:
    """`x` rounded to the nearest float16 value, as float32."""
    return x.half().float()


class TinyBackbone(nn.Module):
    """Stand-in backbone: stride-2 3x3 convs + LeakyReLU; levels at strides 8, 16 and 32.

    `forward(Tensor[B, 3, H, W])` -> `Tensor[B, BACKBONE_CHANNELS[i], H / s, W / s]` for s = 8, 16, 32.
    """

    def __init__(self) -> None:
        super().__init__()
        def block(cin: int, cout: int) -> nn.Sequential:
            return nn.Sequential(nn.Conv2d(cin, cout, 3, 2, 1), nn.LeakyReLU(0.1))
        self.stem = nn.Sequential(block(3, 4), block(4, 4))
        chans = [4] + BACKBONE_CHANNELS
        self.stages = nn.ModuleList(block(a, b) for a, b in zip(chans, chans[1:]))

    def forward(self, x: Tensor) -> Tuple[Tensor, ...]:
        x = self.stem(x)
        outs = []
        for stage in self.stages:
            x = stage(x)
            outs.append(x)
        return tuple(outs)


def build_ours() -> Detector:
    """The small NanoDet-Plus: stand-in backbone, GhostPAN, GFLHead (kernel 5), auxiliary guidance."""
    backbone, neck = TinyBackbone(), GhostPAN(**NECK)
    aux = AuxiliaryGuidance(copy.deepcopy(neck), AuxiliaryHead(**AUX_HEAD), detach_epoch=DETACH_EPOCH)
    return Detector(backbone, neck, GFLHead(**HEAD), NanoDetPlusLoss(NUM_CLASSES, STRIDES, REG_MAX),
                    PostProcessor(NUM_CLASSES, STRIDES, REG_MAX), aux=aux)  # post-processing is not compared


def parts(model: Detector) -> Dict[str, nn.Module]:
    """Our model's parts under the names the npz uses."""
    return {"backbone": model.backbone, "neck": model.neck, "head": model.head,
            "aux_neck": model.aux.neck, "aux_head": model.aux.head}


@torch.no_grad()
def randomize_model_(model: Detector, generator: torch.Generator) -> None:
    """Random weights of every part, rounded to float16 values: convs std 1/sqrt(fan_in), norm
    affines and BN statistics around their neutral values, the auxiliary scales around 1."""
    for module in model.modules():
        params = dict(module.named_parameters(recurse=False))
        if isinstance(module, nn.Conv2d):
            params["weight"].copy_(torch.randn(params["weight"].shape, generator=generator)
                                   / math.sqrt(params["weight"][0].numel()))
            if "bias" in params:
                params["bias"].copy_(torch.randn(params["bias"].shape, generator=generator) * 0.1)
        elif isinstance(module, (nn.BatchNorm2d, nn.GroupNorm)):
            params["weight"].copy_(0.5 + torch.rand(params["weight"].shape, generator=generator))
            params["bias"].copy_(torch.randn(params["bias"].shape, generator=generator) * 0.2)
        elif "scale" in params:
            params["scale"].fill_(float(0.8 + 0.4 * torch.rand(1, generator=generator)))
    for tensor in model.state_dict().values():
        if tensor.is_floating_point():
            tensor.copy_(half_exact(tensor))


def model_images_lowres(generator: torch.Generator) -> Tensor:
    """`Tensor[3, 3, 16, 16]` float16-exact: the images before `upsample_images`."""
    h, w = (size // IMAGE_UPSAMPLING for size in MODEL_HW)
    return half_exact(torch.randn(3, 3, h, w, generator=generator))


def upsample_images(lowres: Tensor) -> Tensor:
    """Nearest-neighbour upsampling to `MODEL_HW`, `[B, 3, h, w] -> [B, 3, 8h, 8w]` (stored small, exact)."""
    return lowres.repeat_interleave(IMAGE_UPSAMPLING, dim=2).repeat_interleave(IMAGE_UPSAMPLING, dim=3)


def model_targets() -> List[Dict[str, Tensor]]:
    """Image 0: five overlapping boxes; image 1: a box smaller than a stride, one reaching past
    the border, one with no point inside; image 2: none."""
    def target(boxes: Sequence[Sequence[float]], labels: Sequence[int]) -> Dict[str, Tensor]:
        return {"boxes": torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
                "labels": torch.tensor(labels, dtype=torch.long)}
    return [
        target([[12, 20, 80, 88], [24, 8, 100, 76], [40, 36, 116, 120], [4, 48, 60, 124], [32, 32, 88, 88]],
               [0, 1, 2, 1, 0]),
        target([[45.5, 29, 50.5, 35], [-24, 60, 44, 150], [81, 81, 87, 87], [60, 10, 126, 70]], [2, 0, 1, 2]),
        target([], []),
    ]


def loss_inputs(case: str, generator: torch.Generator) -> Tuple[Tensor, Tensor | None, List[Dict[str, Tensor]]]:
    """(raw, aux_raw or None, targets) of a loss-only case: float16-exact head outputs `[2, N, C + 32]`
    at 32x64; image 0 with four boxes (two overlapping, one partly outside, one with no point
    inside), image 1 with none."""
    num_points = grid_points(LOSS_HW, STRIDES)[0].shape[0]
    shape = (2, num_points, NUM_CLASSES + 4 * (REG_MAX + 1))
    def head_output() -> Tensor:
        out = torch.randn(shape, generator=generator) * 1.5
        out[..., :NUM_CLASSES] -= 1.5
        return half_exact(out)
    raw = head_output()
    aux_raw = head_output() if case == "loss_aux" else None
    targets = [
        {"boxes": torch.tensor([[4.0, 4.0, 30.0, 28.0], [10.0, 2.0, 36.0, 24.0], [40.0, 8.0, 70.0, 40.0],
                                [33.0, 17.0, 37.5, 22.0]]),
         "labels": torch.tensor([0, 2, 1, 1])},
        {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.long)},
    ]
    return raw, aux_raw, targets


def dsl_inputs(case: str, seed: int) -> Dict[str, Tensor]:
    """One image's assigner inputs (float16-exact): `cls_logits [N, 4]`, `points [N, 2]` (64x96,
    strides 8-32, offset 0), `decoded_boxes [N, 4]`, `gt_boxes [G, 4]`, `gt_labels [G]`."""
    g = torch.Generator().manual_seed(seed)
    points, strides = grid_points(DSL_HW, (8, 16, 32), offset=0.0)
    n = points.shape[0]
    logits = half_exact(torch.randn(n, 4, generator=g) * 2 - 2)
    distances = half_exact(torch.rand(n, 4, generator=g) * 4) * strides[:, None]
    boxes = torch.cat((points - distances[:, :2], points + distances[:, 2:]), dim=1)
    num_gt = {"random": 4, "no_gt": 0, "tiny": 5, "border": 4, "overlapping": 8, "no_candidate": 3,
              "many_gts": 30}[case]
    height, width = DSL_HW
    centres = torch.rand(num_gt, 2, generator=g) * torch.tensor([width, height])
    sizes = 6 + torch.rand(num_gt, 2, generator=g) * 40
    if case == "tiny":  # around points, so that most of them have one candidate
        centres = points[torch.randint(0, n, (num_gt,), generator=g)] + (torch.rand(num_gt, 2, generator=g) - 0.5) * 3
        sizes = 0.5 + torch.rand(num_gt, 2, generator=g) * 7
    if case == "overlapping":
        centres = torch.tensor([width / 2, height / 2]) + torch.randn(num_gt, 2, generator=g) * 5
        sizes = 12 + torch.rand(num_gt, 2, generator=g) * 24
    gt = half_exact(torch.cat((centres - sizes / 2, centres + sizes / 2), dim=1))
    if case == "border":
        gt[:, :2] -= 24
        gt[:, 2:] += 16
    if case == "no_candidate":
        gt[0] = torch.tensor([1.0, 1.0, 7.0, 7.0])  # between the stride-8 points, none strictly inside
    labels = torch.randint(0, 4, (num_gt,), generator=g)
    return {"cls_logits": logits, "points": points, "decoded_boxes": boxes, "gt_boxes": gt, "gt_labels": labels}


def rel_diff(ours: Tensor, ref: Tensor) -> float:
    """`max |ours - ref| / max |ref|` over a tensor (0 when both are all zero)."""
    ours, ref = ours.double(), ref.double()
    scale = ref.abs().max().item() if ref.numel() else 0.0
    err = (ours - ref).abs().max().item() if ref.numel() else 0.0
    if scale == 0.0:
        return 0.0 if err == 0.0 else math.inf
    return err / scale


def pack(tensors: Dict[str, Tensor], dtype: np.dtype) -> Tuple[np.ndarray, List[Tuple[str, List[int]]]]:
    """Tensors as one flat array of `dtype`, and their (name, shape) layout."""
    layout = [(name, list(t.shape)) for name, t in tensors.items()]
    flat = [t.detach().double().reshape(-1).numpy() for t in tensors.values()]
    return (np.concatenate(flat) if flat else np.zeros(0)).astype(dtype), layout


def unpack(flat: np.ndarray, layout: Sequence[Tuple[str, Sequence[int]]]) -> Dict[str, Tensor]:
    """Inverse of `pack`, as float32 tensors."""
    out, start = {}, 0
    for name, shape in layout:
        size = int(np.prod(shape)) if shape else 1
        out[name] = torch.from_numpy(flat[start:start + size].astype(np.float32)).reshape(shape)
        start += size
    return out


ZERO_GRAD = 1e-6  # below this fraction of its part's largest gradient, a gradient is zero up to rounding


def grad_differences(ours: Dict[str, Tensor], ref: Dict[str, Tensor]) -> Dict[str, Tuple[float, float]]:
    """Per parameter `"part.name"`: (per-tensor, part-relative) difference.

    per-tensor: `max |ours - ref| / max |ref|` over the tensor; 0 for a gradient that is zero up to
        rounding (`max |ref|` under `ZERO_GRAD` times its part's largest, e.g. a BN bias whose shift
        the next batch-statistics BN removes), which only the part-relative figure can judge.
    part-relative: `max |ours - ref|` over the tensor / the largest `|ref|` of its part (backbone,
        neck, head, aux_neck, aux_head).
    """
    part_max: Dict[str, float] = {}
    for key, grad in ref.items():
        part = key.split(".", 1)[0]
        part_max[part] = max(part_max.get(part, 0.0), grad.abs().max().item())
    out = {}
    for key, grad in ref.items():
        scale = part_max[key.split(".", 1)[0]]
        err = (ours[key].double() - grad.double()).abs().max().item()
        part_relative = err / scale if scale else (0.0 if err == 0 else math.inf)
        per_tensor = rel_diff(ours[key], grad) if grad.abs().max().item() >= ZERO_GRAD * scale else 0.0
        out[key] = (per_tensor, part_relative)
    return out


def record_assignments(loss_fn: NanoDetPlusLoss) -> List[Tensor]:
    """Wraps `loss_fn.assigner.assign`: each call appends its `gt_indices`."""
    calls: List[Tensor] = []
    assign = loss_fn.assigner.assign

    def recording(*args, **kwargs):
        result = assign(*args, **kwargs)
        calls.append(result.gt_indices.clone())
        return result
    loss_fn.assigner.assign = recording
    return calls


def run_ours_model(model: Detector, images: Tensor, targets: List[Dict[str, Tensor]], epoch: int) -> Dict[str, object]:
    """`model.forward_train` + backward on a copy: losses, assignments, gradients by `"part.name"`."""
    model = copy.deepcopy(model).train()
    calls = record_assignments(model.loss_fn)
    _, losses = model.forward_train(images, targets, epoch=epoch)
    losses["loss"].backward()
    grads = {f"{part}.{name}": (p.grad if p.grad is not None else torch.zeros_like(p))
             for part, module in parts(model).items() for name, p in module.named_parameters()}
    return {"losses": {k: v.item() for k, v in losses.items() if k != "num_pos"},
            "assignments": torch.stack(calls), "grads": grads}


def run_ours_loss(raw: Tensor, aux_raw: Tensor | None, targets: List[Dict[str, Tensor]]) -> Dict[str, object]:
    """`NanoDetPlusLoss` + backward on head outputs: losses, assignments, gradients of the outputs."""
    loss_fn = NanoDetPlusLoss(NUM_CLASSES, STRIDES, REG_MAX)
    calls = record_assignments(loss_fn)
    raw = raw.clone().requires_grad_(True)
    aux = aux_raw.clone().requires_grad_(True) if aux_raw is not None else None
    losses = loss_fn(raw, targets, LOSS_HW, aux_raw=aux)
    losses["loss"].backward()
    grads = {"raw": raw.grad}
    if aux is not None:
        grads["aux_raw"] = aux.grad
    return {"losses": {k: v.item() for k, v in losses.items() if k != "num_pos"},
            "assignments": torch.stack(calls), "grads": grads}
