"""ONNX Runtime inference with numpy + OpenCV only: importing this module never imports torch.

Everything comes from the model's metadata (written by `nanodet_ghost.export.onnx`): class names,
input size, strides, reg_max, mean/std, keep_ratio and the postprocess defaults. Pre- and
post-processing are the same as the PyTorch `Predictor` (`preprocess_image`, then
`postprocess_np`, the numpy twin of `PostProcessor`).
"""
from __future__ import annotations

import json
import logging
import os
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np

from nanodet_ghost.inference.common import (
    Detections,
    ImageInput,
    as_image_list,
    chunks,
    load_image,
    make_detections,
    preprocess_batch,
)
from nanodet_ghost.inference.postprocess_np import PostprocessParams, postprocess_output_np

logger = logging.getLogger(__name__)

SUPPORTED_FORMAT_VERSIONS = ("1",)
REQUIRED_KEYS = ("class_names", "input_size", "strides", "reg_max", "mean", "std", "keep_ratio")
PARAM_TYPES = {"score_thr": float, "nms_iou": float, "nms_pre": int, "max_detections": int}


class OnnxModelError(ValueError):
    """The ONNX file is not a nanodet_ghost export (missing or unsupported metadata)."""


def read_metadata(session: Any, path: str) -> Dict[str, Any]:
    """Parsed `metadata_props` of an exported model (json values decoded)."""
    props = dict(session.get_modelmeta().custom_metadata_map)
    missing = [k for k in REQUIRED_KEYS if k not in props]
    if missing:
        raise OnnxModelError(f"{path}: not a nanodet_ghost export, metadata lacks {missing} "
                             "(export with tools/export_onnx.py)")
    version = props.get("format_version", "1")
    if version not in SUPPORTED_FORMAT_VERSIONS:
        raise OnnxModelError(f"{path}: metadata format_version {version} is not supported "
                             f"(supported: {SUPPORTED_FORMAT_VERSIONS})")
    meta: Dict[str, Any] = {}
    for key, value in props.items():
        try:
            meta[key] = json.loads(value)
        except (json.JSONDecodeError, TypeError):
            meta[key] = value
    return meta


class OnnxPredictor:
    """Runs an exported detector with ONNX Runtime.

    Args:
        path: the .onnx file.
        providers: ONNX Runtime execution providers (default: CPU).
        num_threads: intra-op threads (None: ONNX Runtime's default).
        postprocess: overrides of the metadata's postprocess defaults (score_thr, nms_iou, ...).
        batch_size: images per run when a list is given and the model has a dynamic batch
            (a model exported with batch 1 is run image by image).
    """

    def __init__(self, path: Union[str, os.PathLike], providers: Optional[Sequence[Any]] = None,
                 num_threads: Optional[int] = None, postprocess: Optional[Mapping[str, Any]] = None,
                 batch_size: int = 8) -> None:
        import onnxruntime as ort

        self.path = os.fspath(path)
        if not os.path.isfile(self.path):
            raise FileNotFoundError(f"ONNX model not found: {self.path}")
        options = ort.SessionOptions()
        if num_threads is not None:
            options.intra_op_num_threads = int(num_threads)
            options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        try:
            self.session = ort.InferenceSession(self.path, sess_options=options,
                                                providers=list(providers or ["CPUExecutionProvider"]))
        except Exception as exc:  # onnxruntime raises its own types (InvalidProtobuf, Fail, ...)
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise OnnxModelError(f"{self.path}: ONNX Runtime cannot load it ({first})") from None
        self.metadata = read_metadata(self.session, self.path)
        meta = self.metadata
        self.class_names: List[str] = [str(n) for n in meta["class_names"]]
        self.num_classes = int(meta.get("num_classes", len(self.class_names)))
        self.input_size: Tuple[int, int] = (int(meta["input_size"][0]), int(meta["input_size"][1]))
        self.strides = [int(s) for s in meta["strides"]]
        self.reg_max = int(meta["reg_max"])
        self.mean = [float(v) for v in meta["mean"]]
        self.std = [float(v) for v in meta["std"]]
        self.keep_ratio = bool(meta["keep_ratio"])
        self.center_offset = float(meta.get("center_offset", 0.5))
        settings = {k: meta[k] for k in PARAM_TYPES if k in meta}
        settings.update(dict(postprocess or {}))
        self.params = PostprocessParams(**{k: PARAM_TYPES[k](v) for k, v in settings.items()})
        model_input = self.session.get_inputs()[0]
        self.input_name = model_input.name
        self.output_name = self.session.get_outputs()[0].name
        self.fixed_batch = model_input.shape[0] if isinstance(model_input.shape[0], int) else None
        self.batch_size = int(batch_size)
        expected = self.num_classes + 4 * (self.reg_max + 1)
        out_dim = self.session.get_outputs()[0].shape[-1]
        if isinstance(out_dim, int) and out_dim != expected:
            raise OnnxModelError(f"{self.path}: output has {out_dim} channels, metadata implies {expected}")

    @classmethod
    def from_config(cls, path: Union[str, os.PathLike], model_cfg: Optional[Any] = None,
                    **kwargs: Any) -> "OnnxPredictor":
        """An `OnnxPredictor` whose postprocess settings come from `model_cfg.postprocess` (the
        evaluation hook uses this so ONNX and PyTorch evaluate with the same thresholds)."""
        post = None
        if model_cfg is not None and model_cfg.get("postprocess") is not None:
            post = {k: model_cfg.postprocess[k] for k in PARAM_TYPES}
        predictor = cls(path, postprocess=post, **kwargs)
        if model_cfg is not None and int(model_cfg.head.num_classes) != predictor.num_classes:
            raise OnnxModelError(f"{path}: the model has {predictor.num_classes} classes, the config "
                                 f"{int(model_cfg.head.num_classes)}")
        return predictor

    def forward(self, batch: np.ndarray) -> np.ndarray:
        """float32 [B, 3, H, W] → output [B, N, C + 4(R+1)] (class scores after sigmoid).

        A model exported with a fixed batch of 1 is run once per image."""
        batch = np.ascontiguousarray(batch, dtype=np.float32)
        static_hw = self.session.get_inputs()[0].shape[2:]
        if batch.ndim != 4 or any(isinstance(d, int) and d != b for d, b in zip(static_hw, batch.shape[2:])):
            raise OnnxModelError(f"{self.path}: expects input [B, 3, {static_hw[0]}, {static_hw[1]}], got "
                                 f"{list(batch.shape)} (export again with --input-size W H)")
        if self.fixed_batch is not None and batch.shape[0] != self.fixed_batch:
            return np.concatenate([self.forward(batch[i:i + 1]) for i in range(batch.shape[0])])
        return self.session.run([self.output_name], {self.input_name: batch})[0]

    def postprocess(self, output: np.ndarray, metas: Sequence[Optional[Mapping[str, Any]]],
                    input_hw: Tuple[int, int], score_thr: Optional[float] = None
                    ) -> List[Tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """Per image (boxes [K, 4] original px, scores [K], labels [K]); see `postprocess_np`."""
        hw = (int(input_hw[0]), int(input_hw[1]))
        return [postprocess_output_np(out, self.num_classes, self.reg_max, self.strides, hw, meta, self.params,
                                      score_thr, self.center_offset) for out, meta in zip(output, metas)]

    def predict_batch(self, images: np.ndarray, metas: Sequence[Mapping[str, Any]],
                      score_thr: Optional[float] = None) -> List[Dict[str, np.ndarray]]:
        """Already preprocessed float32 [B, 3, H, W] (e.g. a collated val batch) and their metas
        → per image dict(boxes [K, 4] xyxy original px, scores [K], labels [K])."""
        images = np.asarray(images, np.float32)
        output = self.forward(images)
        results = self.postprocess(output, metas, tuple(images.shape[-2:]), score_thr)
        return [dict(boxes=b, scores=s, labels=lab) for b, s, lab in results]

    def predict(self, images: Union[ImageInput, Sequence[ImageInput]],
                score_thr: Optional[float] = None) -> Union[Detections, List[Detections]]:
        """Detect objects in a uint8 BGR image, an image path or a list of either.

        Returns one `Detections` for a single input, else a list (boxes in original pixels)."""
        items, single = as_image_list(images)
        loaded = [load_image(item) for item in items]
        results: List[Detections] = []
        for part in chunks(len(loaded), self.batch_size):
            batch, metas = preprocess_batch([img for img, _ in loaded[part]], self.input_size, self.keep_ratio,
                                            self.mean, self.std)
            output = self.forward(batch)
            for (b, s, lab), meta, (_, path) in zip(self.postprocess(output, metas, batch.shape[-2:], score_thr),
                                                    metas, loaded[part]):
                results.append(make_detections(b, s, lab, self.class_names, meta["orig_hw"], path))
        return results[0] if single else results
