"""OpenVINO IR export (`openvino.convert_model` from our ONNX), fp32 or INT8 (NNCF post-training
quantization on the same calibration images as ONNX Runtime's INT8).

The exporter's metadata goes into the IR's rt_info, section `nanodet_ghost` (read back by
`nanodet_ghost.inference.backends.openvino`). Weights are saved in fp32 (`compress_to_fp16=False`):
fp16 weights would break the parity with PyTorch.
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Any, List, Optional, Union

import numpy as np
import onnx

from nanodet_ghost.export.onnx import read_metadata
from nanodet_ghost.inference.backends import import_runtime
from nanodet_ghost.inference.backends.openvino import write_rt_metadata

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class NncfRecipe:
    """NNCF settings.

    Attributes:
        preset: "performance" (symmetric activations and weights) or "mixed" (asymmetric activations).
        float_outputs: keep the head's last convolutions (class and distribution logits) in float.
        fast_bias_correction: NNCF's fast bias correction (else the slower full one).
    """

    preset: str = "performance"
    float_outputs: bool = False  # measured on BCCD: the float head bought no mAP and cost 3 % time
    fast_bias_correction: bool = True

    def describe(self) -> str:
        return (f"NNCF {self.preset} preset, per-channel int8 weights"
                f"{'; float: head output convs' if self.float_outputs else ''}")


DEFAULT_NNCF_RECIPE = NncfRecipe()


def head_output_convolutions(model: Any) -> List[str]:
    """Friendly names of the last Convolution on every path back from the model's outputs."""
    names: List[str] = []
    seen = set()
    stack = [result for result in model.get_results()]
    while stack:
        node = stack.pop()
        if node.get_friendly_name() in seen:
            continue
        seen.add(node.get_friendly_name())
        if node.get_type_name() == "Convolution":
            names.append(node.get_friendly_name())
            continue
        stack.extend(value.get_node() for value in node.input_values())
    return names


def quantize_with_nncf(model: Any, images: np.ndarray, recipe: NncfRecipe = DEFAULT_NNCF_RECIPE) -> Any:
    """NNCF post-training INT8 quantization of an `openvino.Model` on float32 [K, 3, H, W] images."""
    nncf = import_runtime("nncf", "NNCF (needed for openvino-int8)", "export", "openvino-int8")
    presets = {"performance": nncf.QuantizationPreset.PERFORMANCE, "mixed": nncf.QuantizationPreset.MIXED}
    if recipe.preset not in presets:
        raise ValueError(f"unknown NNCF preset {recipe.preset!r}, expected one of {sorted(presets)}")
    ignored = nncf.IgnoredScope(names=head_output_convolutions(model) if recipe.float_outputs else [],
                                validate=False)
    dataset = nncf.Dataset([img[None] for img in np.asarray(images, np.float32)])
    nncf_logger = logging.getLogger("nncf")
    level = nncf_logger.level
    nncf_logger.setLevel(logging.WARNING)  # it lists every ignored node at INFO
    try:
        return nncf.quantize(model, dataset, preset=presets[recipe.preset], subset_size=len(images),
                             fast_bias_correction=recipe.fast_bias_correction, ignored_scope=ignored)
    finally:
        nncf_logger.setLevel(level)


def export_openvino(onnx_path: Union[str, "os.PathLike[str]"], out_path: Union[str, "os.PathLike[str]"],
                    images: Optional[np.ndarray] = None, recipe: NncfRecipe = DEFAULT_NNCF_RECIPE,
                    calibration_note: str = "") -> str:
    """Convert the ONNX export at `onnx_path` to an OpenVINO IR at `out_path` (.xml, .bin beside it).

    Args:
        images: calibration inputs float32 [K, 3, H, W]; when given the IR is quantized to INT8.
        recipe: NNCF settings (INT8 only).
        calibration_note: what the images are, for the metadata.
    Returns:
        `out_path`.
    """
    onnx_path, out_path = os.fspath(onnx_path), os.fspath(out_path)
    ov = import_runtime("openvino", "OpenVINO", "export", out_path)
    if not out_path.lower().endswith(".xml"):
        raise ValueError(f"an OpenVINO IR is written as a .xml file (its weights as .bin beside it), got {out_path}")
    metadata = read_metadata(onnx.load(onnx_path, load_external_data=False))
    model = ov.convert_model(onnx_path)
    if images is not None:
        logger.info("quantizing with NNCF (%s) on %d images", recipe.describe(), len(images))
        model = quantize_with_nncf(model, images, recipe)
        metadata.update(precision="int8", quantization=recipe.describe() + (
            f"; calibrated on {calibration_note}" if calibration_note else ""))
    write_rt_metadata(model, metadata)
    os.makedirs(os.path.dirname(os.path.abspath(out_path)) or ".", exist_ok=True)
    ov.save_model(model, out_path, compress_to_fp16=False)
    logger.info("wrote %s", out_path)
    return out_path
