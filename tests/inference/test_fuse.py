"""BatchNorm folding: same outputs (1e-5), same detections, no BN left, original untouched."""
from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from inference_helpers import assert_same_detections, read_images
from nanodet_ghost.inference.predictor import Predictor
from nanodet_ghost.model.fuse import fuse_conv_bn, fuse_model, remaining_batchnorms


@pytest.mark.parametrize("groups", [1, 4])
def test_fuse_conv_bn_unit(groups: int) -> None:
    torch.manual_seed(0)
    conv = nn.Conv2d(8, 12, 3, 2, 1, groups=groups, bias=groups == 4)
    bn = nn.BatchNorm2d(12)
    bn.running_mean.normal_(0, 1)
    bn.running_var.uniform_(0.2, 3)
    bn.weight.data.normal_(1, 0.3)
    bn.bias.data.normal_(0, 0.3)
    seq = nn.Sequential(conv, bn).eval()
    x = torch.randn(2, 8, 9, 11)
    with torch.no_grad():
        torch.testing.assert_close(fuse_conv_bn(conv, bn)(x), seq(x), atol=1e-5, rtol=1e-5)


def test_fused_detector_matches(cfg320, model320, photo_paths) -> None:
    reference = copy.deepcopy(model320.state_dict())
    fused = fuse_model(model320)
    assert remaining_batchnorms(model320), "the original must keep its BatchNorm layers"
    assert remaining_batchnorms(fused) == []
    assert not fused.training
    for k, v in model320.state_dict().items():
        assert torch.equal(v, reference[k]), f"fuse_model modified the original ({k})"

    images = read_images(photo_paths)
    batch, _ = Predictor.from_config(cfg320, model320).preprocess(images)
    with torch.no_grad():
        raw, raw_fused = model320(batch), fused(batch)
    scale = raw.abs().max().item()
    assert scale > 1.0  # non-trivial outputs
    # float32: the two graphs round differently through ~100 layers (activations up to ~20), so
    # the bound is 1e-5 relative to the output scale (measured: 1.5e-5 abs on logits up to 6.2).
    assert (raw_fused - raw).abs().max().item() < 1e-5 * scale
    # The folding itself is exact: in float64 the difference is rounding noise (~1e-14).
    model64 = copy.deepcopy(model320).double()
    crop = batch[:2, :, 96:224, 96:224].double()  # float64 convs are slow: a 128x128 crop suffices
    with torch.no_grad():
        diff64 = (fuse_model(model64)(crop) - model64(crop)).abs().max().item()
    assert diff64 < 1e-9

    paths = [str(p) for p in photo_paths]
    plain = Predictor.from_config(cfg320, model320).predict(paths, score_thr=0.3)
    folded = Predictor.from_config(cfg320, model320, fuse=True).predict(paths, score_thr=0.3)
    assert len(plain) == len(folded) == len(paths)
    assert sum(len(d) for d in plain) > 10
    for a, b in zip(plain, folded):
        assert_same_detections(a, b, box_atol=1e-3, score_atol=1e-5)
