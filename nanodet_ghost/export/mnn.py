"""MNN export: MNN's own converter from the ONNX export, with a json sidecar carrying the metadata.

The converter is the C++ tool inside the `MNN` wheel (`_tools.mnnconvert`), run in a subprocess:
the wheel's `mnnconvert` script also sends usage logs over the network, which an export must not.
Weights stay fp32 (no `--fp16`, no weight quantization). An `.mnn` file has no room for metadata,
so `<name>.mnn.json` holds `metadata` (exactly the ONNX export's key/value strings) and `mnn` (the
input and output tensor names in the head's output order).
"""
from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path
from typing import Union

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


def export_mnn(onnx_path: Union[str, "os.PathLike[str]"], out_path: Union[str, "os.PathLike[str]"]) -> str:
    """Convert the ONNX export at `onnx_path` (metadata in its `metadata_props`) to MNN at `out_path`.

    Returns:
        `out_path` (`<name>.mnn.json` written beside it).
    Raises:
        MissingRuntimeError: the `MNN` wheel is not installed (names the `mnn` extra).
        RuntimeError: the converter failed (its last lines quoted).
    """
    import onnx

    onnx_path, out_path = os.fspath(onnx_path), os.fspath(out_path)
    import_runtime("MNN", "MNN", "mnn", out_path)
    os.makedirs(os.path.dirname(os.path.abspath(out_path)) or ".", exist_ok=True)
    command = [sys.executable, "-c", _CONVERT, "-f", "ONNX", "--modelFile", onnx_path, "--MNNModel", out_path,
               "--bizCode", "nanodet_ghost"]
    proc = subprocess.run(command, capture_output=True, text=True, timeout=CONVERT_TIMEOUT_S)
    if proc.returncode != 0 or _SUCCESS not in proc.stdout or not os.path.isfile(out_path):
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        raise RuntimeError(f"MNN's converter failed on {onnx_path} (exit code {proc.returncode}): {' | '.join(tail)}")
    logger.debug("MNN converter output:\n%s", proc.stdout)
    model = onnx.load(onnx_path, load_external_data=False)
    metadata = {entry.key: entry.value for entry in model.metadata_props}
    outputs = list(HEAD_OUTPUTS[metadata.get("head", "raw")])
    if [o.name for o in model.graph.output] != outputs:
        raise RuntimeError(f"{onnx_path}: outputs {[o.name for o in model.graph.output]}, expected {outputs}")
    sidecar = {"metadata": metadata, "mnn": {"input": model.graph.input[0].name, "outputs": outputs}}
    Path(sidecar_path(out_path)).write_text(json.dumps(sidecar, indent=2) + "\n")
    logger.info("wrote %s and %s", out_path, sidecar_path(out_path))
    return out_path
