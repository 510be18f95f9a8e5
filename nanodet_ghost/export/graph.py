"""Small exact ONNX graph rewrites, applied to every export.

`remove_identity_slices`: GhostModule returns `cat(primary, cheap)[:, :out_chs]`; whenever the
concatenation already has `out_chs` channels (every block of GhostNet 1.0x) the traced `Slice` is
a no-op, but ONNX Runtime still runs it and, worse, has to reorder the tensor out of and back
into its blocked (NCHWc) convolution layout around it. Removing these slices is exact.

`global_pool_reduce_means`: the squeeze-excite blocks average with `x.mean((2, 3), keepdim=True)`,
traced as `ReduceMean(axes=[2, 3], keepdims=1)`. `GlobalAveragePool` computes the same, and ONNX
Runtime's quantizer has an int8 kernel for it (`QLinearGlobalAveragePool`) but none for
ReduceMean, which otherwise stays in float between a DequantizeLinear, a QuantizeLinear and two
layout transposes in the INT8 model.
"""
from __future__ import annotations

import logging
from typing import Dict, List, Optional

import numpy as np
import onnx
from onnx import numpy_helper, shape_inference

logger = logging.getLogger(__name__)

_INT64_MAX = np.iinfo(np.int64).max


def _constants(model: onnx.ModelProto) -> Dict[str, np.ndarray]:
    values = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    for node in model.graph.node:
        if node.op_type == "Constant" and node.attribute and node.attribute[0].name == "value":
            values[node.output[0]] = numpy_helper.to_array(node.attribute[0].t)
    return values


def _static_shapes(model: onnx.ModelProto) -> Dict[str, List[Optional[int]]]:
    inferred = shape_inference.infer_shapes(model)
    shapes: Dict[str, List[Optional[int]]] = {}
    graph = inferred.graph
    for info in list(graph.value_info) + list(graph.input) + list(graph.output):
        dims = info.type.tensor_type.shape.dim
        shapes[info.name] = [d.dim_value if d.HasField("dim_value") else None for d in dims]
    return shapes


def _is_identity_slice(node: onnx.NodeProto, consts: Dict[str, np.ndarray],
                       shapes: Dict[str, List[Optional[int]]]) -> bool:
    inputs = list(node.input) + [""] * (5 - len(node.input))
    data, starts, ends, axes, steps = inputs[:5]
    shape = shapes.get(data)
    if shape is None or starts not in consts or ends not in consts:
        return False
    starts_v, ends_v = consts[starts].reshape(-1), consts[ends].reshape(-1)
    if axes and axes not in consts or steps and steps not in consts:
        return False
    axes_v = consts[axes].reshape(-1) if axes else np.arange(len(starts_v))
    steps_v = consts[steps].reshape(-1) if steps else np.ones(len(starts_v), np.int64)
    for start, end, axis, step in zip(starts_v, ends_v, axes_v, steps_v):
        dim = shape[int(axis)] if -len(shape) <= int(axis) < len(shape) else None
        if dim is None or step != 1:
            return False
        if not (start == 0 or start <= -dim) or not (end >= dim or end == _INT64_MAX):
            return False
    return True


def _drop_unused_constants(model: onnx.ModelProto) -> None:
    used = {name for node in model.graph.node for name in node.input}
    used |= {o.name for o in model.graph.output}
    keep = [n for n in model.graph.node if n.op_type != "Constant" or n.output[0] in used]
    del model.graph.node[:]
    model.graph.node.extend(keep)


def remove_identity_slices(model: onnx.ModelProto) -> int:
    """Remove `Slice` nodes that return their whole input (static shapes only); in place.

    Returns the number of slices removed. Slices whose output is a graph output are kept.
    """
    consts, shapes = _constants(model), _static_shapes(model)
    graph_outputs = {o.name for o in model.graph.output}
    rename: Dict[str, str] = {}
    keep = []
    for node in model.graph.node:
        node.input[:] = [rename.get(name, name) for name in node.input]
        if node.op_type == "Slice" and node.output[0] not in graph_outputs and _is_identity_slice(node, consts, shapes):
            rename[node.output[0]] = node.input[0]
            continue
        keep.append(node)
    if rename:
        del model.graph.node[:]
        model.graph.node.extend(keep)
        infos = [v for v in model.graph.value_info if v.name not in rename]
        del model.graph.value_info[:]
        model.graph.value_info.extend(infos)
        _drop_unused_constants(model)
        logger.info("removed %d no-op Slice nodes", len(rename))
    return len(rename)


def _reduce_axes(node: onnx.NodeProto, consts: Dict[str, np.ndarray]) -> Optional[List[int]]:
    for attr in node.attribute:
        if attr.name == "axes":
            return list(attr.ints)
    if len(node.input) > 1 and node.input[1] in consts:
        return [int(a) for a in consts[node.input[1]].reshape(-1)]
    return None


def global_pool_reduce_means(model: onnx.ModelProto) -> int:
    """Replace `ReduceMean` over the spatial axes of a 4-D tensor (keepdims) by `GlobalAveragePool`; in place.

    Returns the number of nodes replaced."""
    consts, shapes = _constants(model), _static_shapes(model)
    count = 0
    for index, node in enumerate(model.graph.node):
        if node.op_type != "ReduceMean" or len(shapes.get(node.input[0]) or []) != 4:
            continue
        keepdims = next((a.i for a in node.attribute if a.name == "keepdims"), 1)
        axes = _reduce_axes(node, consts)
        if keepdims != 1 or axes is None or sorted(a % 4 for a in axes) != [2, 3]:
            continue
        pool = onnx.helper.make_node("GlobalAveragePool", [node.input[0]], list(node.output), name=node.name)
        model.graph.node.remove(node)
        model.graph.node.insert(index, pool)
        count += 1
    if count:
        _drop_unused_constants(model)
        logger.info("replaced %d spatial ReduceMean nodes by GlobalAveragePool", count)
    return count
