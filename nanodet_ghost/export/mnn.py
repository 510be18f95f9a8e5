"""MNN export: MNN's own converter from the ONNX export, with a json sidecar carrying the metadata.

The converter and the quantizer are the C++ tools inside the `MNN` wheel (`_tools.mnnconvert`,
`_tools.mnnquant`), run in a subprocess: the wheel's `mnnconvert` / `mnnquant` scripts also send
usage logs over the network, which an export must not. fp32: weights stay fp32 (no `--fp16`).
INT8 (`mnn-int8`): MNN's offline quantizer on the fp32 model, KL-divergence activation ranges and
max-abs weights, calibrated on our calibration images (the validation preprocessing, written back
as the letterboxed 8-bit images MNN reads, with our mean and 1/std as its normalisation). An
`.mnn` file has no room for metadata, so `<name>.mnn.json` holds `metadata` (exactly the ONNX
export's key/value strings, plus `precision` and `quantization` for INT8) and `mnn` (the input and
output tensor names in the head's output order).
"""
from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Dict, Optional, Sequence, Union

import numpy as np

from nanodet_ghost.export.onnx import read_metadata
from nanodet_ghost.inference.backends import import_runtime
from nanodet_ghost.inference.backends.mnn import sidecar_path
from nanodet_ghost.inference.metadata import HEAD_OUTPUTS

logger = logging.getLogger(__name__)

CONVERT_TIMEOUT_S = 600
# The converter's C++ entry point, without the wheel's Python wrapper: that one sends usage logs
# and, to do so, pip-installs a logging SDK that downgrades protobuf below what onnx needs. The
# entry point returns True whether or not it converted; success is its message plus the file.
_CONVERT = "import sys, _tools; _tools.mnnconvert(['mnnconvert'] + sys.argv[1:])"
_SUCCESS = "Converted Success"
_QUANTIZE = "import sys, _tools; _tools.mnnquant(['mnnquant'] + sys.argv[1:])"
_QUANTIZED = "Quantize model done"


def _run_tool(command: Sequence[str], success: str, what: str, out_path: str) -> None:
    proc = subprocess.run(list(command), capture_output=True, text=True, timeout=CONVERT_TIMEOUT_S)
    if proc.returncode != 0 or success not in proc.stdout or not os.path.isfile(out_path):
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        raise RuntimeError(f"MNN's {what} failed (exit code {proc.returncode}): {' | '.join(tail)}")
    logger.debug("MNN %s output:\n%s", what, proc.stdout)


def _quantize(fp32_path: str, out_path: str, images: np.ndarray, metadata: Dict[str, str]) -> None:
    """MNN offline INT8 quantization of `fp32_path` on float32 [K, 3, H, W] preprocessed images."""
    import cv2

    mean = np.asarray(json.loads(metadata["mean"]), np.float32)
    std = np.asarray(json.loads(metadata["std"]), np.float32)
    with tempfile.TemporaryDirectory(prefix="nanodet_mnnquant_") as folder:
        for i, chw in enumerate(images):  # back to the 8-bit BGR canvas the normalisation came from
            hwc = np.rint(chw.transpose(1, 2, 0) * std + mean).clip(0, 255).astype(np.uint8)
            cv2.imwrite(os.path.join(folder, f"{i:05d}.png"), hwc)
        config = {"format": "BGR", "mean": mean.tolist(), "normal": (1.0 / std).tolist(),
                  "width": int(images.shape[3]), "height": int(images.shape[2]), "path": folder + os.sep,
                  "used_image_num": int(len(images)), "feature_quantize_method": "KL",
                  "weight_quantize_method": "MAX_ABS"}
        config_path = os.path.join(folder, "quant.json")
        Path(config_path).write_text(json.dumps(config))
        _run_tool([sys.executable, "-c", _QUANTIZE, fp32_path, out_path, config_path], _QUANTIZED, "quantizer",
                  out_path)


def export_mnn(onnx_path: Union[str, "os.PathLike[str]"], out_path: Union[str, "os.PathLike[str]"],
               images: Optional[np.ndarray] = None, calibration_note: str = "") -> str:
    """Convert the ONNX export at `onnx_path` (metadata in its `metadata_props`) to MNN at `out_path`.

    Args:
        images: calibration inputs float32 [K, 3, H, W] (validation preprocessing): quantize to INT8.
        calibration_note: what the images are, for the metadata.
    Returns:
        `out_path` (`<name>.mnn.json` written beside it).
    Raises:
        MissingRuntimeError: the `MNN` wheel is not installed (names the `mnn` extra).
        RuntimeError: the converter or the quantizer failed (its last lines quoted).
    """
    import onnx

    onnx_path, out_path = os.fspath(onnx_path), os.fspath(out_path)
    import_runtime("MNN", "MNN", "mnn", out_path)
    os.makedirs(os.path.dirname(os.path.abspath(out_path)) or ".", exist_ok=True)
    model = onnx.load(onnx_path, load_external_data=False)
    metadata = read_metadata(model)
    outputs = list(HEAD_OUTPUTS[metadata.get("head", "raw")])
    if [o.name for o in model.graph.output] != outputs:
        raise RuntimeError(f"{onnx_path}: outputs {[o.name for o in model.graph.output]}, expected {outputs}")
    with tempfile.TemporaryDirectory(prefix="nanodet_mnn_") as tmp:
        fp32_path = out_path if images is None else os.path.join(tmp, "fp32.mnn")
        _run_tool([sys.executable, "-c", _CONVERT, "-f", "ONNX", "--modelFile", onnx_path, "--MNNModel", fp32_path,
                   "--bizCode", "nanodet_ghost"], _SUCCESS, "converter", fp32_path)
        if images is not None:
            _quantize(fp32_path, out_path, images, metadata)
            metadata.update({"precision": "int8", "quantization": f"MNN offline quantizer, KL activations, "
                                                                   f"max-abs weights; {calibration_note}"})
    sidecar = {"metadata": metadata, "mnn": {"input": model.graph.input[0].name, "outputs": outputs}}
    Path(sidecar_path(out_path)).write_text(json.dumps(sidecar, indent=2) + "\n")
    logger.info("wrote %s and %s", out_path, sidecar_path(out_path))
    return out_path
