"""Small ONNX graph clean-ups that onnxsim would also do, without needing onnxsim.

`remove_identity_slices`: GhostModule returns `cat(primary, cheap)[:, :out_chs]`; whenever the
concatenation already has `out_chs` channels (every block of GhostNet 1.0x) the traced `Slice` is
a no-op, but ONNX Runtime still runs it and, worse, has to reorder the tensor out of and back
into its blocked (NCHWc) convolution layout around it. Removing these slices is exact.
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
