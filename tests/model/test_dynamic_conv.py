"""DynamicConv2d: the mixture of experts is exact, per image and trainable; GhostNet with K = 0 is
unchanged; a detector with dynamic experts exports to ONNX and OpenVINO with fp32 parity."""
import numpy as np
import pytest
import torch
from torch import nn

from nanodet_ghost.config import load_config
from nanodet_ghost.model import build_model
from nanodet_ghost.model.backbone.dynamic_conv import DynamicConv2d, fuse_dynamic_conv_bn
from nanodet_ghost.model.backbone.ghostnet import GhostModule, GhostNet
from nanodet_ghost.paths import CONFIG_DIR

CONV_CASES = [dict(kernel_size=1, bias=False), dict(kernel_size=3, stride=2, padding=1, bias=True)]


@pytest.mark.parametrize("case", CONV_CASES)
def test_equal_experts_are_a_plain_conv(case) -> None:
    torch.manual_seed(0)
    conv = nn.Conv2d(6, 10, **case)
    dynamic = DynamicConv2d(6, 10, num_experts=4, **case)
    with torch.no_grad():
        dynamic.weight.copy_(conv.weight.repeat(4, 1, 1, 1))
        if conv.bias is not None:
            dynamic.bias.copy_(conv.bias.expand_as(dynamic.bias))
    x = torch.randn(3, 6, 9, 11)
    torch.testing.assert_close(dynamic(x), conv(x), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("case", CONV_CASES)
def test_batch_items_are_independent(case) -> None:
    torch.manual_seed(1)
    dynamic = DynamicConv2d(6, 10, num_experts=3, **case)
    x = torch.randn(4, 6, 9, 11)
    batched = dynamic(x)
    single = torch.cat([dynamic(x[i:i + 1]) for i in range(4)])
    torch.testing.assert_close(batched, single, rtol=1e-5, atol=1e-5)
    # and each image uses its own mixture: the explicit sum of the experts' outputs
    attention = dynamic.routing_weights(x)
    explicit = sum(attention[:, k, None, None, None] * nn.functional.conv2d(
        x, dynamic.weight.split(10)[k], dynamic.bias[k] if dynamic.bias is not None else None, dynamic.stride,
        dynamic.padding) for k in range(3))
    torch.testing.assert_close(batched, explicit, rtol=1e-5, atol=1e-5)


def test_gradients_reach_experts_and_routing() -> None:
    torch.manual_seed(2)
    dynamic = DynamicConv2d(6, 10, 1, num_experts=4, bias=True)
    dynamic(torch.randn(2, 6, 8, 8)).square().mean().backward()
    for name, param in dynamic.named_parameters():
        assert param.grad is not None and param.grad.abs().sum() > 0, name
    assert all(g.abs().sum() > 0 for g in dynamic.weight.grad), "every expert gets a gradient"


@pytest.mark.filterwarnings("ignore::FutureWarning")  # torch.jit.trace is deprecated; pnnx still reads it
def test_traced_matmul_path_equals_the_grouped_conv() -> None:
    """Tracing (ONNX, pnnx) runs the batch-agnostic matmul form of the 1x1 case."""
    torch.manual_seed(3)
    dynamic = DynamicConv2d(6, 10, 1, num_experts=4, bias=True).eval()
    traced = torch.jit.trace(dynamic, torch.randn(1, 6, 8, 8))
    x = torch.randn(3, 6, 5, 7)
    torch.testing.assert_close(traced(x), dynamic(x), rtol=1e-5, atol=1e-5)


def test_batchnorm_folds_into_the_experts() -> None:
    torch.manual_seed(4)
    conv, bn = DynamicConv2d(6, 10, 3, padding=1, num_experts=3), nn.BatchNorm2d(10)
    with torch.no_grad():
        bn.running_mean.normal_()
        bn.running_var.uniform_(0.5, 2.0)
        bn.weight.normal_()
        bn.bias.normal_()
    bn.eval()
    x = torch.randn(2, 6, 8, 8)
    torch.testing.assert_close(fuse_dynamic_conv_bn(conv, bn)(x), bn(conv(x)), rtol=1e-5, atol=1e-5)


def test_zero_experts_is_the_plain_network() -> None:
    plain, dynamic = GhostNet(dynamic_experts=0), GhostNet(dynamic_experts=2)
    assert not any(isinstance(m, DynamicConv2d) for m in plain.modules())
    assert type(GhostModule(8, 16).primary_conv[0]) is nn.Conv2d
    assert sum(p.numel() for p in plain.parameters()) == 2_671_428
    keys = plain.state_dict().keys()
    assert "blocks.6.3.ghost1.primary_conv.0.weight" in keys and not any("routing" in k for k in keys)
    extra = set(dynamic.state_dict()) - set(keys)
    assert extra and all(".primary_conv.0.routing." in k for k in extra)
    assert dynamic.blocks[6][3].ghost1.primary_conv[0].weight.shape == (2 * 240, 80, 1, 1)


@pytest.fixture(scope="module")
def dynamic_detector():
    """A small detector (GhostNet 0.5x, depth 0.5, 4 experts) with calibrated BN statistics."""
    cfg = load_config(CONFIG_DIR / "nanodet_ghost_320.yml",
                      ["model.backbone.width=0.5", "model.head.num_classes=3"])
    torch.manual_seed(5)
    model = build_model(cfg.model)
    model.backbone = GhostNet(width=0.5, depth=0.5, out_stages=model.backbone.out_stages, dynamic_experts=4)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5)
                m.bias.normal_(0.0, 0.2)
                m.momentum = None
            elif isinstance(m, DynamicConv2d):
                m.routing.weight.normal_(0.0, 1.0)  # make the routing matter
        model.train()
        model(torch.randn(16, 3, 64, 64))  # enough images for well-conditioned BN statistics
    return cfg, model.eval()


def test_onnx_runtime_and_openvino_parity(dynamic_detector, tmp_path) -> None:
    pytest.importorskip("onnxruntime")
    import onnxruntime as ort

    from nanodet_ghost.export.heads import RawHead
    from nanodet_ghost.export.onnx import export_onnx

    cfg, model = dynamic_detector
    x = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(6))
    with torch.no_grad():
        expected = RawHead(model).eval()(x).numpy()
    path = export_onnx(model, cfg, tmp_path / "dynamic.onnx", input_size=(64, 64), verify=False)
    session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    got = session.run(None, {"images": x.numpy()})[0]
    assert got.shape == expected.shape and np.abs(got - expected).max() < 1e-4

    ov = pytest.importorskip("openvino")
    from nanodet_ghost.export.openvino import export_openvino

    xml = export_openvino(path, tmp_path / "dynamic.xml")
    compiled = ov.Core().compile_model(str(xml), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    got_ov = compiled(x.numpy())[compiled.output(0)]
    assert np.abs(got_ov - expected).max() < 1e-4


def test_dynamic_batch_export(dynamic_detector, tmp_path) -> None:
    """The export's batch dimension stays symbolic: the mixed kernels are not baked in as groups."""
    import onnxruntime as ort

    from nanodet_ghost.export.heads import RawHead
    from nanodet_ghost.export.onnx import export_onnx

    cfg, model = dynamic_detector
    path = export_onnx(model, cfg, tmp_path / "batch.onnx", input_size=(64, 64), dynamic_batch=True, verify=False)
    x = torch.randn(3, 3, 64, 64, generator=torch.Generator().manual_seed(7))
    with torch.no_grad():
        expected = RawHead(model).eval()(x).numpy()
    got = ort.InferenceSession(path, providers=["CPUExecutionProvider"]).run(None, {"images": x.numpy()})[0]
    assert np.abs(got - expected).max() < 1e-4
