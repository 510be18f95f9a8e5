"""ONNX export of the detector: a thin wrapper around the same `Detector.forward`.

The exported graph has one input `images: float32 [B, 3, H, W]` (normalised BGR, as produced by
`preprocess_image`) and the outputs of its head (`nanodet_ghost.export.heads`): by default `raw`,
one output `output: float32 [B, N, C + 4 * (reg_max + 1)]`, the class scores after sigmoid, then the
l, t, r, b distribution logits (NanoDet-Plus layout); `boxes` and `nms` end in decoded boxes or in
detections. Everything a runtime needs to pre- and post-process (class names, input size,
strides, reg_max, mean/std, the head, ...) is written into the model's `metadata_props`, so
`OnnxPredictor` runs with no config.
"""
from __future__ import annotations

import json
import logging
import os
import warnings
from typing import Any, Dict, Mapping, Optional, Sequence, Union

import torch
from torch import nn

from nanodet_ghost.config import load_config
from nanodet_ghost.export.heads import HEAD_OUTPUTS, export_head
from nanodet_ghost.export.graph import global_pool_reduce_means, remove_identity_slices
from nanodet_ghost.model import load_detector
from nanodet_ghost.model.fuse import fuse_model

logger = logging.getLogger(__name__)

FORMAT_VERSION = "1"
SCORE_LAYOUT = "sigmoid_scores[C]+distribution_logits[4*(reg_max+1)] (l,t,r,b)"
INPUT_NAME = "images"
DEFAULT_OPSET = 13


def build_metadata(cfg: Any, input_size: Sequence[int], head: str = "raw") -> Dict[str, str]:
    """The `metadata_props` of an exported model (all values are strings; lists are json).

    Keys: format_version, class_names, num_classes, input_size ([W, H]), strides, reg_max, mean,
    std (BGR), keep_ratio, center_offset, score_layout, color_order, head, and the postprocess
    defaults score_thr, nms_iou, nms_pre, max_detections (with the `nms` head: fixed in the graph).
    """
    model_head, post, data = cfg.model.head, cfg.model.postprocess, cfg.data
    names = list(data.class_names) or [f"class_{i}" for i in range(int(model_head.num_classes))]
    return {
        "format_version": FORMAT_VERSION,
        "producer": "nanodet_ghost",
        "class_names": json.dumps([str(n) for n in names]),
        "num_classes": str(int(model_head.num_classes)),
        "input_size": json.dumps([int(input_size[0]), int(input_size[1])]),
        "strides": json.dumps([int(s) for s in model_head.strides]),
        "reg_max": str(int(model_head.reg_max)),
        "mean": json.dumps([float(v) for v in data.mean]),
        "std": json.dumps([float(v) for v in data.std]),
        "keep_ratio": json.dumps(bool(data.keep_ratio)),
        "color_order": "BGR",
        "center_offset": str(float(model_head.center_offset)),
        "score_layout": SCORE_LAYOUT,
        "head": head,
        "score_thr": str(float(post.score_thr)),
        "nms_iou": str(float(post.nms_iou)),
        "nms_pre": str(int(post.nms_pre)),
        "max_detections": str(int(post.max_detections)),
    }


def _simplify(model: Any) -> Any:
    """`model` (a ModelProto) simplified by onnxsim, or `model` itself when onnxsim is missing or
    cannot validate its result."""
    try:
        import onnxsim  # optional
    except ImportError:
        logger.info("onnxsim not installed: the graph is not simplified")
        return model
    simplified, ok = onnxsim.simplify(model)
    if not ok:
        logger.warning("onnxsim could not validate the simplified graph; keeping the original")
        return model
    logger.info("simplified with onnxsim")
    return simplified


def verify_with_onnxruntime(path: str, model: nn.Module, cfg: Any, input_size: Sequence[int], seed: int = 0) -> float:
    """Max abs difference between ONNX Runtime and the unfused `model` with the same head
    (`export.parity.output_difference`) on one random input (`[1, 3, H, W]`, standard normal);
    logged (a warning above 1e-4 relative to the largest output, or when the outputs differ in
    shape: then inf), NaN when onnxruntime is missing."""
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        logger.info("onnxruntime not installed: the export is not verified")
        return float("nan")
    from nanodet_ghost.export.parity import output_difference

    width, height = int(input_size[0]), int(input_size[1])
    x = torch.randn(1, 3, height, width, generator=torch.Generator().manual_seed(seed)).numpy()
    try:
        diff, largest = output_difference(model, path, x, cfg)
    except ValueError as err:  # an output of another shape
        logger.warning("ONNX Runtime vs PyTorch on a random input: %s", err)
        return float("inf")
    scale = max(1.0, largest)  # random inputs drive activations into the hundreds
    (logger.warning if diff > 1e-4 * scale else logger.info)(
        "ONNX Runtime vs PyTorch on a random input: max abs diff %.3g (outputs up to %.3g)", diff, scale)
    return diff


def read_metadata(model: Any) -> Dict[str, str]:
    """The `metadata_props` of the ONNX `model` (a ModelProto) as a dict."""
    return {entry.key: entry.value for entry in model.metadata_props}


def set_metadata(model: Any, metadata: Mapping[str, str]) -> None:
    """Replace the `metadata_props` of the ONNX `model` (a ModelProto) by `metadata`."""
    del model.metadata_props[:]
    for key, value in metadata.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = str(key), str(value)


def write_metadata(path: Union[str, os.PathLike], metadata: Mapping[str, str]) -> None:
    """Replace the `metadata_props` of the ONNX file at `path` by `metadata`, check, save."""
    import onnx

    model = onnx.load(os.fspath(path))
    set_metadata(model, metadata)
    onnx.checker.check_model(model)
    onnx.save(model, os.fspath(path))


def export_onnx(
    model: nn.Module,
    cfg: Any,
    out_path: Union[str, os.PathLike],
    input_size: Optional[Sequence[int]] = None,
    dynamic_batch: bool = False,
    head: str = "raw",
    opset: int = DEFAULT_OPSET,
    fuse: bool = True,
    simplify: bool = True,
    verify: bool = True,
) -> str:
    """Export `model` (a `Detector` with its weights loaded) to ONNX with metadata.

    Args:
        model: the detector (put in eval mode); fusing works on a copy, its weights are untouched.
        cfg: the loaded config (class names, preprocessing and head settings for the metadata).
        out_path: the .onnx file to write.
        input_size: (W, H); default `cfg.data.input_size`.
        dynamic_batch: make the batch dimension symbolic (`batch`); else it is 1. Not with the
            `nms` head, whose batch is static.
        head: what the graph ends with: raw, boxes or nms (`nanodet_ghost.export.heads`).
        opset: ONNX opset (>= 13).
        fuse: fold BatchNorm into the convolutions first.
        simplify: run onnxsim when it is installed.
        verify: compare ONNX Runtime with the (unfused) PyTorch model on a random input.
    Returns:
        The path written.
    """
    import onnx

    if opset < 13:
        raise ValueError(f"opset must be >= 13, got {opset}")
    if head == "nms" and dynamic_batch:
        raise ValueError("the nms head has a static batch: export it without --dynamic-batch")
    width, height = [int(v) for v in (input_size or cfg.data.input_size)]
    if width % 32 or height % 32:
        logger.warning("input size %dx%d is not a multiple of 32 (the largest stride)", width, height)
    detector = fuse_model(model) if fuse else model
    wrapper = export_head(detector, head, cfg, (width, height))
    outputs = list(HEAD_OUTPUTS[head])
    dummy = torch.zeros(1, 3, height, width)
    out_path = os.fspath(out_path)
    os.makedirs(os.path.dirname(os.path.abspath(out_path)), exist_ok=True)
    dynamic_axes = {name: {0: "batch"} for name in [INPUT_NAME] + outputs} if dynamic_batch else None
    with torch.no_grad(), warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=DeprecationWarning)  # TorchScript-based exporter
        # The TorchScript-based exporter: the dynamo one needs onnxscript, not a dependency here.
        torch.onnx.export(wrapper, (dummy,), out_path, input_names=[INPUT_NAME], output_names=outputs,
                          dynamic_axes=dynamic_axes, opset_version=opset, do_constant_folding=True,
                          dynamo=False)
    exported = onnx.load(out_path)
    remove_identity_slices(exported)
    global_pool_reduce_means(exported)
    onnx.checker.check_model(exported)
    if simplify:
        exported = _simplify(exported)
    if head == "nms":  # the slice to max_det leaves a symbolic length; it is static
        exported.graph.output[0].type.tensor_type.shape.dim[1].dim_value = int(cfg.model.postprocess.max_detections)
    set_metadata(exported, build_metadata(cfg, (width, height), head))
    onnx.checker.check_model(exported)
    onnx.save(exported, out_path)
    if verify and head == "nms":
        # Random inputs give near-tied scores whose NMS order flips with the last bit; the nms head
        # is checked on photos (tests/export/test_heads.py, tools/export.py --check-map).
        logger.info("nms head: not compared with PyTorch on a random input")
    elif verify:
        verify_with_onnxruntime(out_path, model, cfg, (width, height))
    logger.info("exported %s (input 1x3x%dx%d%s, opset %d%s, %s head)", out_path, height, width,
                ", dynamic batch" if dynamic_batch else "", opset, ", BN fused" if fuse else "", head)
    return out_path


def export_checkpoint(config: Any, ckpt: Union[str, os.PathLike], out_path: Union[str, os.PathLike],
                      overrides: Sequence[str] = (), **kwargs: Any) -> str:
    """Load `config` (path or DictConfig), build the model, load the checkpoint (EMA weights
    preferred) and `export_onnx` it. `kwargs` go to `export_onnx`."""
    cfg = load_config(config, overrides) if isinstance(config, (str, os.PathLike)) else config
    model = load_detector(cfg, ckpt, prefer_ema=True)
    logger.info("exporting the weights of %s", ckpt)
    return export_onnx(model, cfg, out_path, **kwargs)
