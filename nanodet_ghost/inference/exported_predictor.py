"""One predictor over every exported format, with numpy + OpenCV only (never imports torch).

`ExportedPredictor` wraps a backend (`nanodet_ghost.inference.backends`: ONNX Runtime, OpenVINO,
ncnn, MNN) with the same pre- and post-processing as the PyTorch `Predictor`: `preprocess_image`
(letterbox + BGR normalisation from the model's metadata), the backend's forward, then what the
graph's head leaves to do (`postprocess_np`, the numpy twin of `PostProcessor`):

| head | after the runtime |
|---|---|
| raw | decode, threshold, NMS, letterbox inverse |
| boxes | threshold, NMS, letterbox inverse |
| nms | letterbox inverse (and a stricter score threshold or fewer detections, if asked) |

Everything comes from the model's metadata: class names, input size, strides, reg_max, centre
offset, mean/std, keep_ratio, the head and the postprocess defaults, so no config is needed.
"""
from __future__ import annotations

import logging
import os
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np

from nanodet_ghost.inference.backends import Backend, load_backend
from nanodet_ghost.inference.common import (Detections, ImageInput, as_image_list, chunks, load_image,
                                            make_detections, preprocess_batch)
from nanodet_ghost.inference.metadata import PARAM_TYPES, ModelFileError
from nanodet_ghost.inference.postprocess_np import (PostprocessParams, map_boxes_to_original_np,
                                                    postprocess_image_np, postprocess_output_np)

logger = logging.getLogger(__name__)


class ExportedPredictor:
    """Runs an exported detector (.onnx, OpenVINO .xml, ncnn .param or .mnn), whatever its head.

    Args:
        model: a model file (the backend is chosen by its suffix) or a loaded backend.
        num_threads: runtime threads (None: the runtime's default); only used with a file.
        postprocess: overrides of the metadata's postprocess defaults (score_thr, nms_iou, ...). With
            the `nms` head the graph fixed them: only a higher score_thr or fewer max_detections
            can be applied afterwards; anything else is a `ModelFileError`.
        batch_size: images per forward when a list is given and the model takes any batch (a
            model with a fixed batch is run in batches of that size, the last one padded).
    """

    def __init__(self, model: Union[str, "os.PathLike[str]", Backend], num_threads: Optional[int] = None,
                 postprocess: Optional[Mapping[str, Any]] = None, batch_size: int = 8) -> None:
        self.backend: Backend = load_backend(model, num_threads) if isinstance(model, (str, os.PathLike)) else model
        self.path = self.backend.path
        meta = self.backend.metadata
        self.model_metadata = meta
        self.metadata: Dict[str, Any] = dict(meta.values)
        self.class_names: List[str] = list(meta.class_names)
        self.num_classes = meta.num_classes
        self.input_size: Tuple[int, int] = meta.input_size
        self.strides = list(meta.strides)
        self.reg_max = meta.reg_max
        self.mean, self.std = list(meta.mean), list(meta.std)
        self.keep_ratio = meta.keep_ratio
        self.center_offset = meta.center_offset
        self.head = meta.head
        settings = dict(meta.postprocess)
        settings.update(dict(postprocess or {}))
        unknown = sorted(set(settings) - set(PARAM_TYPES))
        if unknown:
            raise ValueError(f"unknown postprocess settings {unknown}, expected some of {sorted(PARAM_TYPES)}")
        self.params = PostprocessParams(**{k: PARAM_TYPES[k](v) for k, v in settings.items()})
        if self.head == "nms":
            self._check_fixed_settings(self.params)
        self.batch_size = int(batch_size)

    def _check_fixed_settings(self, params: PostprocessParams, score_thr: Optional[float] = None) -> None:
        """The `nms` head's graph holds its thresholds: refuse settings it cannot honour."""
        fixed = PostprocessParams(**self.model_metadata.postprocess)
        wanted = params.score_thr if score_thr is None else float(score_thr)
        problems = []
        if wanted < fixed.score_thr - 1e-9:
            problems.append(f"score_thr {wanted:g} < {fixed.score_thr:g}")
        if abs(params.nms_iou - fixed.nms_iou) > 1e-9:
            problems.append(f"nms_iou {params.nms_iou:g} != {fixed.nms_iou:g}")
        if params.nms_pre != fixed.nms_pre:
            problems.append(f"nms_pre {params.nms_pre} != {fixed.nms_pre}")
        if params.max_detections > fixed.max_detections:
            problems.append(f"max_detections {params.max_detections} > {fixed.max_detections}")
        if problems:
            raise ModelFileError(f"{self.path}: its nms head fixed score_thr {fixed.score_thr:g}, nms_iou "
                                 f"{fixed.nms_iou:g}, nms_pre {fixed.nms_pre}, max_detections {fixed.max_detections} "
                                 f"in the graph; asked for {', '.join(problems)} (export again with these "
                                 "model.postprocess settings, or with --head raw or boxes)")

    @classmethod
    def from_config(cls, path: Union[str, "os.PathLike[str]"], model_cfg: Optional[Any] = None,
                    **kwargs: Any) -> "ExportedPredictor":
        """A predictor whose postprocess settings come from `model_cfg.postprocess` (the evaluation
        uses this so an export and the checkpoint are scored with the same thresholds)."""
        post = None
        if model_cfg is not None and model_cfg.get("postprocess") is not None:
            post = {k: model_cfg.postprocess[k] for k in PARAM_TYPES}
        predictor = cls(path, postprocess=post, **kwargs)
        if model_cfg is not None and int(model_cfg.head.num_classes) != predictor.num_classes:
            raise ModelFileError(f"{os.fspath(path)}: the model has {predictor.num_classes} classes, the config "
                                 f"{int(model_cfg.head.num_classes)}")
        return predictor

    def run(self, batch: np.ndarray) -> Dict[str, np.ndarray]:
        """float32 [B, 3, H, W] → the head's outputs by name (`HEAD_OUTPUTS[self.head]`).

        A model with a fixed batch is run in batches of that size (the last one padded with zeros)."""
        batch = np.ascontiguousarray(batch, dtype=np.float32)
        static_hw = self.backend.input_hw
        if batch.ndim != 4 or any(d is not None and d != b for d, b in zip(static_hw, batch.shape[2:])):
            raise ModelFileError(f"{self.path}: expects input [B, 3, {static_hw[0]}, {static_hw[1]}], got "
                                 f"{list(batch.shape)} (export again with --input-size W H)")
        fixed = self.backend.fixed_batch
        if fixed is None or batch.shape[0] == fixed:
            return self.backend.run(batch)
        parts = []
        for start in range(0, batch.shape[0], fixed):
            part = batch[start:start + fixed]
            if len(part) < fixed:
                part = np.concatenate([part, np.zeros((fixed - len(part),) + part.shape[1:], np.float32)])
            parts.append(self.backend.run(part))
        return {name: np.concatenate([p[name] for p in parts])[: batch.shape[0]] for name in parts[0]}

    def forward(self, batch: np.ndarray) -> np.ndarray:
        """float32 [B, 3, H, W] → the raw output [B, N, C + 4(R+1)] (class scores after sigmoid).

        Only for a model with the `raw` head; `run` gives any head's outputs."""
        if self.head != "raw":
            raise ModelFileError(f"{self.path}: has the {self.head} head; forward() gives the raw output only, "
                                 "use run()")
        return self.run(batch)["output"]

    def postprocess(self, output: np.ndarray, metas: Sequence[Optional[Mapping[str, Any]]],
                    input_hw: Tuple[int, int], score_thr: Optional[float] = None
                    ) -> List[Tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """Raw output [B, N, C + 4(R+1)] → per image (boxes [K, 4] original px, scores [K], labels [K])."""
        hw = (int(input_hw[0]), int(input_hw[1]))
        return [postprocess_output_np(out, self.num_classes, self.reg_max, self.strides, hw, meta, self.params,
                                      score_thr, self.center_offset) for out, meta in zip(output, metas)]

    def postprocess_outputs(self, outputs: Mapping[str, np.ndarray], metas: Sequence[Optional[Mapping[str, Any]]],
                            input_hw: Tuple[int, int], score_thr: Optional[float] = None
                            ) -> List[Tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """`run`'s outputs, whatever the head → per image (boxes [K, 4] original px, scores [K],
        labels [K] int64), sorted by decreasing score."""
        if self.head == "raw":
            return self.postprocess(outputs["output"], metas, input_hw, score_thr)
        if self.head == "boxes":
            return [postprocess_image_np(s, b, meta, self.params, score_thr)
                    for b, s, meta in zip(outputs["boxes"], outputs["scores"], metas)]
        self._check_fixed_settings(self.params, score_thr)
        threshold = self.params.score_thr if score_thr is None else float(score_thr)
        results = []
        for found, count, meta in zip(outputs["detections"], outputs["num_detections"], metas):
            found = found[: int(count)]
            found = found[found[:, 4] > threshold][: self.params.max_detections]
            boxes = found[:, :4].astype(np.float32)
            if meta is not None and "warp_matrix" in meta and "orig_hw" in meta:
                boxes = map_boxes_to_original_np(boxes, meta["warp_matrix"], (int(meta["orig_hw"][0]),
                                                                             int(meta["orig_hw"][1])))
            results.append((boxes, found[:, 4].astype(np.float32), found[:, 5].astype(np.int64)))
        return results

    def predict_batch(self, images: np.ndarray, metas: Sequence[Mapping[str, Any]],
                      score_thr: Optional[float] = None) -> List[Dict[str, np.ndarray]]:
        """Already preprocessed float32 [B, 3, H, W] (e.g. a collated val batch) and their metas
        → per image dict(boxes [K, 4] xyxy original px, scores [K], labels [K])."""
        images = np.asarray(images, np.float32)
        results = self.postprocess_outputs(self.run(images), metas, tuple(images.shape[-2:]), score_thr)
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
            found = self.postprocess_outputs(self.run(batch), metas, batch.shape[-2:], score_thr)
            for (b, s, lab), meta, (_, path) in zip(found, metas, loaded[part]):
                results.append(make_detections(b, s, lab, self.class_names, meta["orig_hw"], path))
        return results[0] if single else results
