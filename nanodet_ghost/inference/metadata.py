"""The metadata every exported model carries, parsed and checked (numpy-free, torch-free).

`nanodet_ghost.export.onnx.build_metadata` writes it as string key/values: into the ONNX
`metadata_props`, into the OpenVINO IR's `rt_info` (section `nanodet_ghost`) and into the json
sidecar beside an ncnn `.param`. Each backend hands those strings here, so every runtime reads the
class names, input size, strides, reg_max, centre offset, mean/std (BGR) and letterbox mode the
same way, and nothing about pre- or post-processing is left to guess.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Tuple

SUPPORTED_FORMAT_VERSIONS = ("1",)
REQUIRED_KEYS = ("class_names", "input_size", "strides", "reg_max", "mean", "std", "keep_ratio")
PARAM_TYPES = {"score_thr": float, "nms_iou": float, "nms_pre": int, "max_detections": int}
# What the graph ends with (`nanodet_ghost.export.heads`) -> its outputs, in graph order. A model
# exported before the key existed has no `head` entry: it is `raw`.
HEADS = ("raw", "boxes", "nms")
HEAD_OUTPUTS = {"raw": ("output",), "boxes": ("boxes", "scores"), "nms": ("detections", "num_detections")}


class ModelFileError(ValueError):
    """An exported model that cannot be used: unreadable, not a nanodet_ghost export, or its
    metadata disagrees with the graph or the config. The message names the file."""


@dataclass(frozen=True)
class ModelMetadata:
    """Decoded metadata of one exported model.

    Attributes:
        class_names: C names in label order.
        num_classes: C.
        input_size: (W, H) of the network input.
        strides: level strides in output order, e.g. (8, 16, 32).
        reg_max: distribution bins per side minus one; the output has C + 4 * (reg_max + 1) channels.
        mean, std: per-channel BGR normalisation.
        keep_ratio: letterbox (True) or stretch (False).
        center_offset: a cell's point is `((x + offset) * s, (y + offset) * s)`.
        postprocess: the exporter's postprocess defaults (score_thr, nms_iou, nms_pre, max_detections);
            with the `nms` head, the settings fixed in the graph.
        head: what the graph ends with, one of `HEADS` (outputs: `HEAD_OUTPUTS[head]`).
        values: every key decoded (json where it parses, else the string).
        raw: the key/value strings as stored.
    """

    class_names: List[str]
    num_classes: int
    input_size: Tuple[int, int]
    strides: Tuple[int, ...]
    reg_max: int
    mean: Tuple[float, float, float]
    std: Tuple[float, float, float]
    keep_ratio: bool
    center_offset: float
    head: str = "raw"
    postprocess: Dict[str, Any] = field(default_factory=dict)
    values: Dict[str, Any] = field(default_factory=dict)
    raw: Dict[str, str] = field(default_factory=dict)

    @property
    def output_channels(self) -> int:
        """C + 4 * (reg_max + 1)."""
        return self.num_classes + 4 * (self.reg_max + 1)


def _decode(value: str) -> Any:
    try:
        return json.loads(value)
    except (json.JSONDecodeError, TypeError):
        return value


def parse_metadata(props: Mapping[str, str], path: str, hint: str = "tools/export.py") -> ModelMetadata:
    """`ModelMetadata` from the stored strings of the model at `path`.

    Raises:
        ModelFileError: a required key is missing or malformed, or the format version is unknown;
            the message names `path` and says how to re-export (`hint`).
    """
    missing = [k for k in REQUIRED_KEYS if k not in props]
    if missing:
        raise ModelFileError(f"{path}: not a nanodet_ghost export, metadata lacks {missing} (export with {hint})")
    version = str(props.get("format_version", "1"))
    if version not in SUPPORTED_FORMAT_VERSIONS:
        raise ModelFileError(f"{path}: metadata format_version {version} is not supported "
                             f"(supported: {SUPPORTED_FORMAT_VERSIONS})")
    raw = {str(k): str(v) for k, v in props.items()}
    values = {k: _decode(v) for k, v in raw.items()}
    try:
        names = [str(n) for n in values["class_names"]]
        width, height = (int(v) for v in values["input_size"])
        meta = ModelMetadata(
            class_names=names,
            num_classes=int(values.get("num_classes", len(names))),
            input_size=(width, height),
            strides=tuple(int(s) for s in values["strides"]),
            reg_max=int(values["reg_max"]),
            mean=tuple(float(v) for v in values["mean"]),  # type: ignore[arg-type]
            std=tuple(float(v) for v in values["std"]),  # type: ignore[arg-type]
            keep_ratio=bool(values["keep_ratio"]),
            center_offset=float(values.get("center_offset", 0.5)),
            head=str(raw.get("head", "raw")),
            postprocess={k: PARAM_TYPES[k](values[k]) for k in PARAM_TYPES if k in values},
            values=values,
            raw=raw,
        )
    except (TypeError, ValueError) as exc:
        raise ModelFileError(f"{path}: malformed metadata ({exc})") from None
    if meta.head not in HEADS:
        raise ModelFileError(f"{path}: metadata head {meta.head!r} is not one of {list(HEADS)}")
    if meta.head == "nms" and any(k not in meta.postprocess for k in PARAM_TYPES):
        raise ModelFileError(f"{path}: an nms-head model must record {list(PARAM_TYPES)}, the settings in its graph")
    if len(meta.mean) != 3 or len(meta.std) != 3:
        raise ModelFileError(f"{path}: metadata mean/std must have 3 values (BGR), got {list(meta.mean)} / "
                             f"{list(meta.std)}")
    return meta
