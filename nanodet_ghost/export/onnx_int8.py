"""ONNX Runtime static INT8 quantization (QDQ format, per-channel weights) of an fp32 export.

The recipe (`Int8Recipe`) says which nodes stay in float and how the calibration ranges are
found; `DEFAULT_RECIPE` is the measured choice (docs/benchmarks.md, "Deployment formats"). The
exporter's metadata is copied into the quantized model, with a `quantization` entry added.
"""
from __future__ import annotations

import logging
import os
import tempfile
from dataclasses import dataclass
from typing import Dict, Iterator, List, Optional, Union

import numpy as np
import onnx

from nanodet_ghost.export.onnx import read_metadata, write_metadata
from nanodet_ghost.inference.backends import import_runtime

logger = logging.getLogger(__name__)

CALIBRATION_METHODS = ("minmax", "entropy", "percentile")


@dataclass(frozen=True)
class Int8Recipe:
    """How a model is quantized.

    Attributes:
        calibration: minmax, entropy or percentile (ORT's calibrators).
        float_outputs: keep the head's last convolutions (the class and distribution logits) and
            everything after them in float: their outputs feed a sigmoid and a softmax whose
            shape, not only their argmax, decides boxes and scores.
        per_channel: per-output-channel weight scales.
        activation_type: "uint8" or "int8" activations (weights are int8). uint8 (ORT's U8S8) is
            what its x86 VNNI kernels are fastest with; int8 activations ran 2-3x slower here.
    """

    calibration: str = "minmax"
    float_outputs: bool = True
    per_channel: bool = True
    activation_type: str = "uint8"

    def describe(self) -> str:
        return (f"QDQ, {'per-channel' if self.per_channel else 'per-tensor'} int8 weights, {self.activation_type} "
                f"activations, {self.calibration} calibration; float: "
                f"{'head output convs' if self.float_outputs else 'nothing'}")


DEFAULT_RECIPE = Int8Recipe()


class CalibrationReader:
    """ORT `CalibrationDataReader` over float32 [K, 3, H, W] images, one image per batch."""

    def __init__(self, input_name: str, images: np.ndarray) -> None:
        self.input_name = input_name
        self.images = np.asarray(images, np.float32)
        self._iter: Optional[Iterator[Dict[str, np.ndarray]]] = None
        self.rewind()

    def get_next(self) -> Optional[Dict[str, np.ndarray]]:
        return next(self._iter, None)  # type: ignore[arg-type]

    def rewind(self) -> None:
        self._iter = iter([{self.input_name: img[None]} for img in self.images])


def head_output_nodes(model: onnx.ModelProto) -> List[str]:
    """Names of the nodes from the last convolution of each head branch to the graph output:
    walking back from the output, every node until (and including) the first Conv on each path."""
    producers = {out: node for node in model.graph.node for out in node.output}
    selected: List[str] = []
    seen = set()
    stack = [o.name for o in model.graph.output]
    while stack:
        node = producers.get(stack.pop())
        if node is None or node.name in seen:
            continue
        seen.add(node.name)
        selected.append(node.name)
        if node.op_type != "Conv":
            stack.extend(node.input)
    return selected


def _ort_enums(recipe: Int8Recipe):
    from onnxruntime.quantization import CalibrationMethod, QuantType

    methods = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
               "percentile": CalibrationMethod.Percentile}
    if recipe.calibration not in methods:
        raise ValueError(f"unknown calibration method {recipe.calibration!r}, expected one of {CALIBRATION_METHODS}")
    types = {"uint8": QuantType.QUInt8, "int8": QuantType.QInt8}
    if recipe.activation_type not in types:
        raise ValueError(f"activation_type must be uint8 or int8, got {recipe.activation_type!r}")
    return methods[recipe.calibration], types[recipe.activation_type], QuantType.QInt8


def quantize_onnx(fp32_path: Union[str, "os.PathLike[str]"], out_path: Union[str, "os.PathLike[str]"],
                  images: np.ndarray, recipe: Int8Recipe = DEFAULT_RECIPE,
                  calibration_note: str = "") -> str:
    """Quantize the fp32 export at `fp32_path` into `out_path` (QDQ) with ORT static quantization.

    Args:
        images: calibration inputs, float32 [K, 3, H, W] after the validation preprocessing.
        recipe: see `Int8Recipe`.
        calibration_note: what the images are, for the metadata (e.g. "200 images of data.train").
    Returns:
        `out_path`.
    """
    fp32_path, out_path = os.fspath(fp32_path), os.fspath(out_path)
    import_runtime("onnxruntime.quantization", "ONNX Runtime", "export", out_path)
    from onnxruntime.quantization import QuantFormat, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    method, activation_type, weight_type = _ort_enums(recipe)
    source = onnx.load(fp32_path)
    os.makedirs(os.path.dirname(os.path.abspath(out_path)) or ".", exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="nanodet_int8_") as tmp:
        prepared = os.path.join(tmp, "prepared.onnx")
        # Shape inference and ORT's graph optimisations first, so that the quantizer sees the
        # fused graph the runtime will execute.
        quant_pre_process(fp32_path, prepared, skip_optimization=False, skip_symbolic_shape=False)
        prepared_model = onnx.load(prepared)
        exclude = head_output_nodes(prepared_model) if recipe.float_outputs else []
        input_name = prepared_model.graph.input[0].name
        logger.info("quantizing %s (%s); %d nodes stay in float", fp32_path, recipe.describe(), len(exclude))
        quantize_static(prepared, out_path, CalibrationReader(input_name, images), quant_format=QuantFormat.QDQ,
                        per_channel=recipe.per_channel, activation_type=activation_type, weight_type=weight_type,
                        calibrate_method=method, nodes_to_exclude=exclude,
                        calibration_providers=["CPUExecutionProvider"])
    note = recipe.describe() + (f"; calibrated on {calibration_note}" if calibration_note else "")
    metadata = read_metadata(source)
    write_metadata(out_path, {**metadata, "quantization": note, "precision": "int8"})
    logger.info("wrote %s", out_path)
    return out_path

