"""ncnn export through pnnx: `.param` + `.bin`, with a json sidecar carrying the metadata.

The fused detector with its export head (`raw` or `boxes`: the module the ONNX export traces;
ncnn has no NonMaxSuppression layer, so no `nms` head) is traced with TorchScript and converted
by the pnnx tool with fp32 weights (`fp16=0`; pnnx's default fp16 weights move the
outputs by about 1e-3). The sidecar `<name>.json` holds `metadata` (exactly the key/value strings
the ONNX export embeds) and `ncnn` (the input blob name, the output blob names in the head's
output order, and the input shape), so nothing
about pre-processing, layout or decoding is left to guess.
"""
from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import tempfile
import warnings
from pathlib import Path
from typing import Mapping, Sequence, Union

import torch
from torch import nn

from nanodet_ghost.export.heads import HEAD_OUTPUTS, export_head
from nanodet_ghost.inference.backends import import_runtime
from nanodet_ghost.inference.backends.ncnn import sidecar_path, weights_path
from nanodet_ghost.model.fuse import fuse_model

logger = logging.getLogger(__name__)

INPUT_BLOB = "in0"  # pnnx's names: in0, in1, ... and out0, out1, ...
PNNX_TIMEOUT_S = 600


def pnnx_executable(out_path: str) -> str:
    """Path of the pnnx tool shipped in the `pnnx` wheel; `MissingRuntimeError` (naming the
    `export` extra) without it."""
    return import_runtime("pnnx", "pnnx", "export", out_path).EXEC_PATH


def write_sidecar(param_path: Union[str, "os.PathLike[str]"], metadata: Mapping[str, str],
                  input_shape: Sequence[int]) -> Path:
    """Write `<name>.json` beside `param_path`: the metadata strings and the blob names."""
    path = sidecar_path(param_path)
    outputs = [f"out{i}" for i in range(len(HEAD_OUTPUTS[metadata.get("head", "raw")]))]
    sidecar = {"metadata": {str(k): str(v) for k, v in metadata.items()},
               "ncnn": {"input": INPUT_BLOB, "outputs": outputs, "input_shape": [int(v) for v in input_shape]}}
    path.write_text(json.dumps(sidecar, indent=2) + "\n")
    return path


def export_ncnn(model: nn.Module, cfg, metadata: Mapping[str, str], out_path: Union[str, "os.PathLike[str]"],
                input_size: Sequence[int], fuse: bool = True) -> str:
    """Convert `model` (a `Detector` with its weights) to ncnn at `out_path` (.param; .bin and .json beside it).

    Args:
        cfg: the loaded config (the `boxes` head's strides, reg_max and centre offset).
        metadata: the strings `build_metadata` gives (the ONNX export's metadata); its `head` is
            the graph's ending, `raw` or `boxes`.
        input_size: (W, H).
        fuse: fold BatchNorm first (pnnx folds it too; fusing here keeps the traced graph the
            one the ONNX export traces).
    Returns:
        `out_path`.
    """
    out_path = os.fspath(out_path)
    if not out_path.lower().endswith(".param"):
        raise ValueError(f"an ncnn model is written as a .param file (.bin and .json beside it), got {out_path}")
    executable = pnnx_executable(out_path)
    width, height = int(input_size[0]), int(input_size[1])
    head = metadata.get("head", "raw")
    if head == "nms":
        raise ValueError("ncnn has no NonMaxSuppression layer: --format ncnn takes --head raw or boxes")
    wrapper = export_head(fuse_model(model) if fuse else model, head, cfg, (width, height))
    os.makedirs(os.path.dirname(os.path.abspath(out_path)) or ".", exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="nanodet_pnnx_") as tmp:
        traced_path = os.path.join(tmp, "model.pt")
        with torch.no_grad(), warnings.catch_warnings():
            warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
            warnings.filterwarnings("ignore", category=FutureWarning)  # torch.jit.trace: pnnx reads TorchScript
            torch.jit.trace(wrapper, torch.zeros(1, 3, height, width)).save(traced_path)
        outputs = {name: os.path.join(tmp, f"model{suffix}") for name, suffix in (
            ("pnnxparam", ".pnnx.param"), ("pnnxbin", ".pnnx.bin"), ("pnnxpy", "_pnnx.py"),
            ("pnnxonnx", ".pnnx.onnx"), ("ncnnparam", ".ncnn.param"), ("ncnnbin", ".ncnn.bin"),
            ("ncnnpy", "_ncnn.py"))}
        command = [executable, traced_path, f"inputshape=[1,3,{height},{width}]f32", "fp16=0"]
        command += [f"{key}={value}" for key, value in outputs.items()]
        proc = subprocess.run(command, capture_output=True, text=True, timeout=PNNX_TIMEOUT_S, cwd=tmp)
        if proc.returncode != 0 or not os.path.isfile(outputs["ncnnparam"]):
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
            raise RuntimeError(f"pnnx failed to convert the model (exit code {proc.returncode}): {' | '.join(tail)}")
        logger.debug("pnnx output:\n%s", proc.stdout)
        shutil.move(outputs["ncnnparam"], out_path)
        shutil.move(outputs["ncnnbin"], weights_path(out_path))
    write_sidecar(out_path, metadata, (1, 3, height, width))
    logger.info("wrote %s, %s and %s", out_path, weights_path(out_path), sidecar_path(out_path))
    return out_path

