"""One entry point over every deployment format: `export_model(model, cfg, fmt, out_path, ...)`.

| format | file | how |
|---|---|---|
| onnx | .onnx | `torch.onnx.export` of the fused detector + metadata (`nanodet_ghost.export.onnx`) |
| onnx-int8 | .onnx | ONNX Runtime static quantization, QDQ, per-channel (`nanodet_ghost.export.onnx_int8`) |
| openvino | .xml + .bin | `openvino.convert_model` of the ONNX export, rt_info metadata |
| openvino-int8 | .xml + .bin | the same IR quantized by NNCF on the same calibration images |
| ncnn | .param + .bin + .json | pnnx from the traced detector, json sidecar with the metadata |
| mnn | .mnn + .mnn.json | MNN's converter from the ONNX export, json sidecar with the metadata |
| mnn-int8 | .mnn + .mnn.json | the same, quantized by MNN's offline quantizer on the calibration images |
| safetensors | .safetensors | deployable weights + config as metadata (`nanodet_ghost.export.safetensors_export`) |

Each format ends in the chosen head (`nanodet_ghost.export.heads`: raw, boxes or nms) where its
runtime has the operators: `FORMAT_HEADS` says which; `check_head` refuses the others in one line.

INT8 formats calibrate on `calib_images` images of `data.<calib_split>` through the validation
preprocessing (`nanodet_ghost.export.calibration`).
"""
from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path
from typing import Any, Dict, Optional, Sequence, Tuple, Union

import numpy as np
from torch import nn

from nanodet_ghost.config import load_config
from nanodet_ghost.export.calibration import calibration_images
from nanodet_ghost.export.heads import HEADS
from nanodet_ghost.export.onnx import build_metadata, export_onnx

logger = logging.getLogger(__name__)

# format -> the suffix of the file named on the command line
FORMATS: Dict[str, str] = {"onnx": ".onnx", "onnx-int8": ".onnx", "openvino": ".xml", "openvino-int8": ".xml",
                           "ncnn": ".param", "mnn": ".mnn", "mnn-int8": ".mnn", "safetensors": ".safetensors"}
INT8_FORMATS = ("onnx-int8", "openvino-int8", "mnn-int8")
# The largest COCO mAP@[.5:.95] an export may lose against the PyTorch checkpoint.
MAP_TOLERANCE = {"onnx": 0.002, "openvino": 0.002, "ncnn": 0.002, "mnn": 0.002, "onnx-int8": 0.010,
                 "openvino-int8": 0.010, "mnn-int8": 0.010}
# format -> the heads its runtime can hold; the reason why not for the others.
FORMAT_HEADS: Dict[str, Tuple[str, ...]] = {fmt: HEADS for fmt in FORMATS}
FORMAT_HEADS["ncnn"] = ("raw", "boxes")
FORMAT_HEADS["safetensors"] = ("raw",)
MISSING_OP = {"ncnn": "ncnn has no NonMaxSuppression layer",
              "safetensors": "safetensors holds the weights, not a graph"}


def check_head(fmt: str, head: str) -> None:
    """`ValueError` (one line naming the format, the missing operator and the heads that work) for
    a head the format's runtime cannot hold, or an unknown head."""
    if head not in HEADS:
        raise ValueError(f"unknown head {head!r}, expected one of {list(HEADS)}")
    if head not in FORMAT_HEADS[fmt]:
        raise ValueError(f"--format {fmt} cannot hold --head {head}: {MISSING_OP[fmt]}; use --head "
                         f"{' or '.join(FORMAT_HEADS[fmt])} (and NMS in the predictor)")


def check_format(fmt: str, out_path: Union[str, "os.PathLike[str]"]) -> None:
    """`ValueError` for an unknown format or an output file with the wrong suffix."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}, expected one of {list(FORMATS)}")
    path = Path(out_path)
    if path.suffix.lower() != FORMATS[fmt]:
        raise ValueError(f"--format {fmt} writes a {FORMATS[fmt]} file, got --out {os.fspath(out_path)}")
    # OpenVINO and ncnn both keep their weights in <name>.bin: one would overwrite the other's.
    other = {".xml": (".param", "ncnn"), ".param": (".xml", "OpenVINO")}.get(path.suffix.lower())
    if other is not None and path.with_suffix(other[0]).is_file():
        raise ValueError(f"--out {os.fspath(out_path)} would overwrite {path.with_suffix('.bin')}, the weights of the "
                         f"{other[1]} model {path.with_suffix(other[0])}; choose another name (e.g. "
                         f"{path.stem}.{'ncnn' if fmt == 'ncnn' else 'ov'}{path.suffix})")


def export_model(
    model: nn.Module,
    cfg: Any,
    fmt: str,
    out_path: Union[str, "os.PathLike[str]"],
    input_size: Optional[Sequence[int]] = None,
    calib_split: str = "train",
    calib_images: int = 200,
    images: Optional[np.ndarray] = None,
    dynamic_batch: bool = False,
    head: str = "raw",
) -> str:
    """Export `model` (a `Detector` with its weights) in `fmt` to `out_path`.

    Args:
        cfg: the loaded config (class names, preprocessing, head settings; the calibration split).
        fmt: one of `FORMATS`.
        input_size: (W, H); default `cfg.data.input_size`.
        calib_split, calib_images: the INT8 calibration set (validation preprocessing).
        images: calibration inputs float32 [K, 3, H, W] to use instead (INT8 formats only).
        dynamic_batch: symbolic batch dimension (onnx only; not with the nms head).
        head: what the graph ends with: raw, boxes or nms (`FORMAT_HEADS` says where each fits).
    Returns:
        The path written (the main file; .bin / .json siblings beside it).
    """
    check_format(fmt, out_path)
    check_head(fmt, head)
    out_path = os.fspath(out_path)
    size = [int(v) for v in (input_size or cfg.data.input_size)]
    if dynamic_batch and fmt != "onnx":
        raise ValueError(f"--dynamic-batch is for --format onnx only, not {fmt}")
    if fmt == "safetensors":
        from nanodet_ghost.export.safetensors_export import export_safetensors

        return export_safetensors(model, cfg, out_path)
    if fmt == "ncnn":
        from nanodet_ghost.export.ncnn import export_ncnn

        return export_ncnn(model, cfg, build_metadata(cfg, size, head), out_path, size)
    if fmt == "onnx":
        return export_onnx(model, cfg, out_path, input_size=size, dynamic_batch=dynamic_batch, head=head)
    note = ""
    if fmt in INT8_FORMATS:
        if images is None:
            images = calibration_images(cfg, calib_split, calib_images, size)
            note = f"{len(images)} images of data.{calib_split}"
        else:
            note = f"{len(images)} given images"
    with tempfile.TemporaryDirectory(prefix="nanodet_export_") as tmp:
        fp32_path = export_onnx(model, cfg, os.path.join(tmp, "model.onnx"), input_size=size, head=head)
        if fmt in ("mnn", "mnn-int8"):
            from nanodet_ghost.export.mnn import export_mnn

            return export_mnn(fp32_path, out_path, images if fmt == "mnn-int8" else None, calibration_note=note)
        if fmt == "onnx-int8":
            from nanodet_ghost.export.onnx_int8 import quantize_onnx

            return quantize_onnx(fp32_path, out_path, images, calibration_note=note)
        from nanodet_ghost.export.openvino import export_openvino

        return export_openvino(fp32_path, out_path, images if fmt == "openvino-int8" else None,
                               calibration_note=note)


def export_checkpoint_format(config: Any, ckpt: Union[str, "os.PathLike[str]"], fmt: str,
                             out_path: Union[str, "os.PathLike[str]"], overrides: Sequence[str] = (),
                             **kwargs: Any) -> str:
    """Load `config` (path or DictConfig), build the model, load the checkpoint (EMA weights
    preferred) and `export_model` it. `kwargs` go to `export_model`."""
    from nanodet_ghost.model import load_detector

    cfg = load_config(config, overrides) if isinstance(config, (str, os.PathLike)) else config
    check_format(fmt, out_path)
    model = load_detector(cfg, ckpt, prefer_ema=True)
    logger.info("exporting the weights of %s as %s", ckpt, fmt)
    return export_model(model, cfg, fmt, out_path, **kwargs)
