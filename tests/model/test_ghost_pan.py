"""GhostPAN and the NanoDet-Plus head (GFLHead, kernel 5, four levels) equal NanoDet's, given the
same weights: against the stored oracle (CI), against a live NanoDet checkout ($NANODET_SRC), and
shapes, levels, odd sizes and gradients on their own."""
from __future__ import annotations

import copy
import json
import logging
import os
from pathlib import Path
from typing import Any, Dict, List, Mapping, Sequence, Tuple

import numpy as np
import pytest
import torch

from nanodet_ghost.model.backbone.ghostnet import GhostModule
from nanodet_ghost.model.head.decode import featmap_sizes
from nanodet_ghost.model.head.gfl_head import GFLHead
from nanodet_ghost.model.neck.ghost_pan import GhostPAN
from nanodet_ghost.model.neck.pan import PAN
from reference.nanodet_build import (
    NANODET_SRC_ENV, build_nanodet_head, build_nanodet_neck, import_nanodet, randomize_)
from reference.nanodet_names import map_state_dict

logger = logging.getLogger(__name__)

ORACLE = Path(__file__).resolve().parent / "reference" / "neck_head_oracle.npz"
TOL = 1e-5


def max_abs_diff(a: Any, b: Any) -> float:
    a = a.detach().numpy() if isinstance(a, torch.Tensor) else np.asarray(a)
    b = b.detach().numpy() if isinstance(b, torch.Tensor) else np.asarray(b)
    assert a.shape == b.shape, f"shape {a.shape} vs {b.shape}"
    return float(np.abs(a - b).max())


def load_nanodet_weights(module: torch.nn.Module, nanodet_state: Mapping[str, torch.Tensor]) -> None:
    """Load NanoDet-named weights into our module: every tensor used, none missing."""
    module.load_state_dict(map_state_dict(nanodet_state), strict=True)


# --- (a) the stored oracle -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def oracle() -> Tuple[Dict[str, np.ndarray], Dict[str, Any]]:
    with np.load(ORACLE) as data:
        arrays = {k: data[k] for k in data.files}
    return arrays, json.loads(str(arrays.pop("meta")))


def unpack(flat: np.ndarray, layout: Sequence[Sequence[Any]], part: str) -> Dict[str, torch.Tensor]:
    """The NanoDet-named tensors of `part` ("neck" or "head") from a packed weight vector."""
    out, offset = {}, 0
    for owner, name, shape in layout:
        size = int(np.prod(shape, dtype=np.int64))
        if owner == part:
            out[name] = torch.from_numpy(flat[offset: offset + size].copy()).reshape(shape)
        offset += size
    assert offset == flat.size, "layout and weights disagree"
    return out


@pytest.mark.parametrize("case", ["plus", "no_extra", "res"])
def test_matches_stored_nanodet_outputs(oracle, case: str) -> None:
    arrays, meta = oracle
    cfg = meta["config"][case]
    source = cfg.get("weights_from", case)
    neck = GhostPAN(**cfg["neck"])
    neck_state = unpack(arrays[f"{source}.weights"], meta["layout"][source], "neck")
    if source != case:  # the source neck's extra-level convs are not part of this one
        neck_state = {k: v for k, v in neck_state.items() if not k.startswith("extra_lvl_")}
    load_nanodet_weights(neck, neck_state)
    head = None
    if "head" in cfg:
        head = GFLHead(**cfg["head"])
        load_nanodet_weights(head, unpack(arrays[f"{case}.weights"], meta["layout"][case], "head"))
    inputs = [torch.from_numpy(arrays[f"input.{i}"]) for i in range(len(cfg["neck"]["in_channels"]))]

    for mode in cfg["modes"]:
        run_neck, run_head = copy.deepcopy(neck).train(mode == "train"), copy.deepcopy(head)
        batch = inputs if mode == "eval" else [x[:1] for x in inputs]
        with torch.no_grad():
            outs = run_neck(batch)
            assert len(outs) == neck.num_levels
            diffs = {f"neck.{i}": max_abs_diff(o, arrays[f"{case}.{mode}.neck.{i}"])
                     for i, o in enumerate(outs) if f"{case}.{mode}.neck.{i}" in arrays}
            if run_head is not None:
                raw = run_head.train(mode == "train")(outs)
                diffs["head"] = max_abs_diff(raw, arrays[f"{case}.{mode}.head"])
        logger.info("%s %s: max abs diff %s", case, mode, {k: f"{v:.2e}" for k, v in diffs.items()})
        assert diffs and max(diffs.values()) <= TOL, (case, mode, diffs)


# --- (b) a live NanoDet checkout ----------------------------------------------------------------


@pytest.fixture(scope="module")
def nanodet() -> Tuple[type, type]:
    src = os.environ.get(NANODET_SRC_ENV)
    if not src:
        pytest.skip(f"set {NANODET_SRC_ENV} to a RangiLyu/nanodet checkout to compare with NanoDet live")
    try:
        return import_nanodet(src)
    except Exception as exc:  # noqa: BLE001 - any failure to import the reference is a skip
        pytest.skip(f"nanodet could not be imported from {NANODET_SRC_ENV}={src}: {exc!r}")


def _neck_cfg(in_channels: List[int], out_channels: int, **kw: Any) -> Dict[str, Any]:
    cfg = dict(in_channels=in_channels, out_channels=out_channels, kernel_size=5, expand=1.0, num_blocks=1,
               use_res=False, num_extra_level=0, activation="LeakyReLU")
    cfg.update(kw)
    return cfg


LIVE_CASES = {
    # NanoDet-Plus-m's neck and head on GhostNet 1.0x taps, 80 classes
    "plus_m": (_neck_cfg([40, 112, 160], 96, num_extra_level=1),
               dict(num_classes=80, in_channels=96, feat_channels=96, stacked_convs=2, kernel_size=5,
                    strides=[8, 16, 32, 64], reg_max=7)),
    "four_inputs_k3": (_neck_cfg([8, 16, 24, 32], 16, kernel_size=3),
                       dict(num_classes=2, in_channels=16, feat_channels=24, stacked_convs=1, kernel_size=3,
                            strides=[4, 8, 16, 32], reg_max=5)),
    "res_expand2_silu": (_neck_cfg([12, 20, 28], 16, expand=2.0, use_res=True, num_extra_level=1,
                                   activation="SiLU"),
                         dict(num_classes=1, in_channels=16, feat_channels=16, stacked_convs=3, kernel_size=5,
                              strides=[8, 16, 32, 64], reg_max=7)),
    "relu6_expand_half": (_neck_cfg([16, 24, 32], 32, expand=0.5, activation="ReLU6", num_extra_level=1), None),
}


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("name", list(LIVE_CASES))
def test_matches_live_nanodet(nanodet, name: str, seed: int) -> None:
    ghost_pan_cls, head_cls = nanodet
    neck_cfg, head_cfg = LIVE_CASES[name]
    gen = torch.Generator().manual_seed(seed)
    ref_neck = build_nanodet_neck(ghost_pan_cls, neck_cfg)
    randomize_(ref_neck, gen)
    neck = GhostPAN(**neck_cfg)
    load_nanodet_weights(neck, ref_neck.state_dict())
    ref_head = head = None
    if head_cfg is not None:
        ref_head = build_nanodet_head(head_cls, head_cfg)
        randomize_(ref_head, gen)
        head = GFLHead(**head_cfg)
        load_nanodet_weights(head, ref_head.state_dict())

    n = len(neck_cfg["in_channels"])
    coarsest = [(2, 3), (3, 1)][seed % 2]  # exact halving: NanoDet upsamples by scale_factor=2
    feats = [torch.randn(2, c, coarsest[0] * 2 ** (n - 1 - i), coarsest[1] * 2 ** (n - 1 - i), generator=gen)
             for i, c in enumerate(neck_cfg["in_channels"])]
    pairs = [(ref_neck, neck)] + ([(ref_head, head)] if head is not None else [])
    for train in (False, True):
        for ref, ours in pairs:
            ref.train(train)
            ours.train(train)
        with torch.no_grad():
            ref_outs, outs = ref_neck([f.clone() for f in feats]), neck([f.clone() for f in feats])
            diffs = [max_abs_diff(o, r) for o, r in zip(outs, ref_outs)]
            assert len(outs) == len(ref_outs) == neck.num_levels
            if head is not None:
                diffs.append(max_abs_diff(head(list(outs)), ref_head(list(ref_outs))))
        logger.info("%s seed %d train=%s: max abs diff %.2e", name, seed, train, max(diffs))
        assert max(diffs) <= TOL, (name, seed, train, diffs)
    # the train-mode pass updated the running statistics alike
    for ref, ours in pairs:
        ref_state = map_state_dict(ref.state_dict())
        assert max(max_abs_diff(v.float(), ref_state[k].float()) for k, v in ours.state_dict().items()) <= TOL


# --- (c) shapes, levels, odd sizes, gradients ----------------------------------------------------


def _feats(channels: Sequence[int], sizes: Sequence[Tuple[int, int]], batch: int = 2) -> List[torch.Tensor]:
    return [torch.randn(batch, c, h, w) for c, (h, w) in zip(channels, sizes)]


@pytest.mark.parametrize("in_channels, num_extra_level, expected", [
    ([16, 24, 32], 0, [(16, 24), (8, 12), (4, 6)]),
    ([16, 24, 32], 1, [(16, 24), (8, 12), (4, 6), (2, 3)]),
    ([8, 16, 24, 32], 0, [(32, 48), (16, 24), (8, 12), (4, 6)]),
    ([8, 16, 24, 32], 1, [(32, 48), (16, 24), (8, 12), (4, 6), (2, 3)]),
    ([16, 24, 32], 2, [(16, 24), (8, 12), (4, 6), (2, 3), (1, 2)]),
])
def test_levels_and_shapes(in_channels: List[int], num_extra_level: int, expected: List[Tuple[int, int]]) -> None:
    neck = GhostPAN(in_channels, 16, num_extra_level=num_extra_level).eval()
    assert neck.num_levels == len(expected) and neck.num_extra_level == num_extra_level
    sizes = expected[:len(in_channels)]
    with torch.no_grad():
        outs = neck(_feats(in_channels, sizes))
    assert isinstance(outs, tuple)
    assert [tuple(o.shape) for o in outs] == [(2, 16, h, w) for h, w in expected]


def test_odd_input_size_with_the_plus_head() -> None:
    """A 100x76 (H x W) image: features 13x10, 7x5, 4x3; the extra level 2x2 is where the
    post-processing puts stride 64, and the head's rows line up with its points."""
    strides = [8, 16, 32, 64]
    sizes = featmap_sizes((100, 76), strides)
    assert sizes == [(13, 10), (7, 5), (4, 3), (2, 2)]
    neck = GhostPAN([40, 112, 160], 32, num_extra_level=1).eval()
    head = GFLHead(num_classes=3, in_channels=32, feat_channels=32, kernel_size=5, strides=strides).eval()
    with torch.no_grad():
        outs = neck(_feats([40, 112, 160], sizes[:3], batch=1))
        raw = head(outs)
    assert [tuple(o.shape[-2:]) for o in outs] == sizes
    assert tuple(raw.shape) == (1, sum(h * w for h, w in sizes), 3 + 4 * 8)


def test_output_layout_is_levels_in_order_row_major() -> None:
    head = GFLHead(num_classes=2, in_channels=8, feat_channels=8, kernel_size=5, strides=[8, 16, 32, 64]).eval()
    feats = _feats([8] * 4, [(4, 6), (2, 3), (1, 2), (1, 1)], batch=1)
    with torch.no_grad():
        raw = head(feats)
        level1 = head.predictors[1](head.towers[1](feats[1]))  # [1, C + 4(R+1), 2, 3]
    start = 4 * 6
    # row 1, column 2 of level 1 is row start + 1 * 3 + 2 of the output
    assert torch.equal(raw[0, start + 1 * 3 + 2], level1[0, :, 1, 2])


def test_gradients_reach_every_parameter() -> None:
    torch.manual_seed(0)
    neck = GhostPAN([8, 12, 16], 8, use_res=True, num_blocks=2, num_extra_level=1).train()
    head = GFLHead(num_classes=2, in_channels=8, feat_channels=8, kernel_size=5, strides=[8, 16, 32, 64]).train()
    feats = [f.requires_grad_() for f in _feats([8, 12, 16], [(12, 10), (6, 5), (3, 3)])]
    head(neck(feats)).square().mean().backward()
    for name, p in list(neck.named_parameters()) + list(head.named_parameters()):
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, f"no gradient reaches {name}"
    assert all(f.grad is not None and f.grad.abs().sum() > 0 for f in feats)


@pytest.mark.parametrize("out_channels, expand", [(96, 1.0), (128, 1.0), (96, 0.5), (15, 1.0), (18, 0.5)])
def test_ghost_module_slice_only_for_odd_widths(out_channels: int, expand: float) -> None:
    """NanoDet's GhostModule never slices: for even widths ours must not either; odd widths (which
    NanoDet cannot run) are trimmed to the width asked for."""
    neck = GhostPAN([8, 12, 16], out_channels, expand=expand, num_extra_level=1).eval()
    modules = [m for m in neck.modules() if isinstance(m, GhostModule)]
    odd = out_channels % 2 == 1 or int(out_channels * expand) % 2 == 1
    assert any(m.concat_chs != m.out_chs for m in modules) == odd
    with torch.no_grad():
        outs = neck(_feats([8, 12, 16], [(4, 6), (2, 3), (1, 2)], batch=1))
    assert all(o.shape[1] == out_channels for o in outs)


def test_num_blocks_chain() -> None:
    neck = GhostPAN([8, 12, 16], 8, num_blocks=3)
    blocks = neck.top_down_blocks[0].blocks
    assert [b.ghost1.primary_conv[0].in_channels for b in blocks] == [16, 8, 8]
    assert len(neck(_feats([8, 12, 16], [(4, 4), (2, 2), (1, 1)]))) == 3


@pytest.mark.parametrize("kwargs, match", [
    (dict(out_channels=0), "out_channels"), (dict(kernel_size=4), "kernel_size"),
    (dict(num_blocks=0), "num_blocks"), (dict(num_extra_level=-1), "num_extra_level"),
    (dict(expand=0.01), "expand"), (dict(in_channels=[]), "in_channels"),
    (dict(activation="Swish"), "activation"),
])
def test_bad_arguments_raise(kwargs: Dict[str, Any], match: str) -> None:
    args = dict(in_channels=[8, 12, 16], out_channels=8)
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        GhostPAN(**args)


def test_wrong_number_of_levels_raises() -> None:
    with pytest.raises(ValueError, match="3 feature maps"):
        GhostPAN([8, 12, 16], 8)(_feats([8, 12], [(4, 4), (2, 2)]))


def test_builds_on_the_meta_device() -> None:
    with torch.device("meta"):
        neck = GhostPAN([40, 112, 160], 96, num_extra_level=1)
    assert neck.reduce_layers[0].conv.weight.is_meta


def test_pan_levels_and_head_kernel() -> None:
    pan = PAN([8, 12, 16], 8)
    assert pan.num_extra_level == 0 and pan.num_levels == 3
    assert "num_extra_level" not in "".join(pan.state_dict())
    head3 = GFLHead(num_classes=80, in_channels=96)
    head5 = GFLHead(num_classes=80, in_channels=96, kernel_size=5)
    assert head3.kernel_size == 3 and head3.towers[0][0].depthwise.kernel_size == (3, 3)
    assert head5.towers[0][1].depthwise.kernel_size == (5, 5) and head5.towers[0][1].depthwise.padding == (2, 2)
    assert list(head3.state_dict()) == list(head5.state_dict())
    # 3 levels x 2 convs x 96 channels x (25 - 9) more depthwise weights
    assert sum(p.numel() for p in head5.parameters()) - sum(p.numel() for p in head3.parameters()) == 3 * 2 * 96 * 16
    with pytest.raises(ValueError, match="kernel_size"):
        GFLHead(num_classes=80, in_channels=96, kernel_size=4)
