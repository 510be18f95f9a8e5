"""Shapes, parameter counts and feature_info of backbone, neck, head and the whole detector."""
import pytest
import torch

from omegaconf import OmegaConf

from nanodet_ghost.config import ConfigError, load_config
from nanodet_ghost.model import build_model
from nanodet_ghost.model.backbone.ghostnet import GhostNet
from nanodet_ghost.model.head.gfl_head import GFLHead
from nanodet_ghost.model.neck.pan import PAN
from nanodet_ghost.paths import CONFIG_DIR


def n_params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def test_ghostnet_shapes_and_feature_info():
    net = GhostNet().eval()
    with torch.no_grad():
        outs = net(torch.zeros(1, 3, 320, 320))
    assert [tuple(o.shape) for o in outs] == [(1, 40, 40, 40), (1, 112, 20, 20), (1, 960, 10, 10)]
    assert net.out_channels == [40, 112, 960]
    assert net.strides == [8, 16, 32]
    assert [f.stage for f in net.feature_info] == [4, 6, 9]


def test_ghostnet_parameter_count():
    assert n_params(GhostNet(width=1.0)) == 2_671_428


def test_ghostnet_other_stages_and_width():
    net = GhostNet(width=0.5, out_stages=(2, 4)).eval()
    with torch.no_grad():
        outs = net(torch.zeros(1, 3, 64, 96))
    assert [o.shape[1] for o in outs] == net.out_channels
    assert net.strides == [4, 8]
    assert [tuple(o.shape[-2:]) for o in outs] == [(16, 24), (8, 12)]
    with pytest.raises(ValueError, match="out_stages"):
        GhostNet(out_stages=(4, 11))


def test_pan_parameter_count_and_shapes():
    pan = PAN([40, 112, 960], 96)
    assert n_params(pan) == 107_040
    feats = [torch.randn(1, 40, 40, 40), torch.randn(1, 112, 20, 20), torch.randn(1, 960, 10, 10)]
    assert [tuple(o.shape) for o in pan(feats)] == [(1, 96, 40, 40), (1, 96, 20, 20), (1, 96, 10, 10)]


def test_pan_handles_odd_sizes():
    pan = PAN([8, 8, 8], 4)
    feats = [torch.randn(1, 8, 13, 7), torch.randn(1, 8, 7, 4), torch.randn(1, 8, 4, 2)]
    assert [tuple(o.shape[-2:]) for o in pan(feats)] == [(13, 7), (7, 4), (4, 2)]


def test_gfl_head_parameter_count_and_prior():
    head = GFLHead(num_classes=80, in_channels=96)
    assert n_params(head) == 95_376
    bias = head.predictors[0].bias[:80]
    assert torch.allclose(bias.sigmoid(), torch.full_like(bias, 0.01))


def test_detector_parameter_count_and_output_shape():
    cfg = load_config(CONFIG_DIR / "nanodet_ghost_320.yml")
    model = build_model(cfg.model).eval()
    assert n_params(model) == 2_873_844
    assert n_params(model.backbone) == 2_671_428
    assert n_params(model.neck) == 107_040
    assert n_params(model.head) == 95_376
    with torch.no_grad():
        raw = model(torch.zeros(2, 3, 320, 320))
    assert tuple(raw.shape) == (2, 40 * 40 + 20 * 20 + 10 * 10, 80 + 4 * 8)


def test_detector_non_square_input():
    cfg = load_config(CONFIG_DIR / "nanodet_ghost_320.yml", ["model.head.num_classes=3"])
    model = build_model(cfg.model).eval()
    with torch.no_grad():
        raw = model(torch.zeros(1, 3, 256, 320))
    assert tuple(raw.shape) == (1, 32 * 40 + 16 * 20 + 8 * 10, 3 + 32)


def test_mismatched_strides_fail_at_load_and_at_build():
    path = CONFIG_DIR / "nanodet_ghost_320.yml"
    with pytest.raises(ConfigError, match=r"nanodet_ghost_320\.yml: model\.head\.strides \[8, 16, 64\]"):
        load_config(path, ["model.head.strides=[8,16,64]"])
    model_cfg = OmegaConf.to_container(load_config(path).model)
    model_cfg["head"]["strides"] = [8, 16, 64]
    with pytest.raises(ValueError, match="strides"):
        build_model(model_cfg)
