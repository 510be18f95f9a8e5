"""The exact ONNX rewrites applied to every export (`nanodet_ghost.export.graph`)."""
from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper

from nanodet_ghost.export.graph import global_pool_reduce_means


def _run(model: onnx.ModelProto, x: np.ndarray) -> list:
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, {"x": x})


def test_spatial_reduce_mean_becomes_global_average_pool() -> None:
    """ReduceMean over H, W with keepdims (attribute axes, opset 13) is replaced; other reductions stay."""
    nodes = [helper.make_node("ReduceMean", ["x"], ["spatial"], axes=[2, 3], keepdims=1, name="se_mean"),
             helper.make_node("ReduceMean", ["x"], ["channels"], axes=[1], keepdims=1, name="channel_mean"),
             helper.make_node("ReduceMean", ["x"], ["flat"], axes=[-2, -1], keepdims=0, name="no_keepdims")]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 5, 7, 9])],
                              [helper.make_tensor_value_info("spatial", TensorProto.FLOAT, [2, 5, 1, 1]),
                               helper.make_tensor_value_info("channels", TensorProto.FLOAT, [2, 1, 7, 9]),
                               helper.make_tensor_value_info("flat", TensorProto.FLOAT, [2, 5])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    x = np.random.default_rng(0).standard_normal((2, 5, 7, 9)).astype(np.float32)
    before = _run(model, x)
    assert global_pool_reduce_means(model) == 1
    onnx.checker.check_model(model)
    assert [n.op_type for n in model.graph.node] == ["GlobalAveragePool", "ReduceMean", "ReduceMean"]
    after = _run(model, x)
    for a, b in zip(before, after):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6)


def test_exported_detector_has_no_spatial_reduce_mean(export_cfg, export_model, tmp_path) -> None:
    from nanodet_ghost.export.onnx import export_onnx

    model = onnx.load(export_onnx(export_model, export_cfg, tmp_path / "m.onnx", input_size=(128, 96)))
    ops = [n.op_type for n in model.graph.node]
    assert "ReduceMean" not in ops
    se_blocks = sum(1 for m in export_model.modules() if type(m).__name__ == "SqueezeExcite")
    assert ops.count("GlobalAveragePool") == se_blocks > 0
