"""One predictor over every exported format, with numpy + OpenCV only (never imports torch).

`ExportedPredictor` wraps a backend (`nanodet_ghost.inference.backends`: ONNX Runtime, OpenVINO,
ncnn) with the same pre- and post-processing as the PyTorch `Predictor`: `preprocess_image`
(letterbox + BGR normalisation from the model's metadata), the backend's forward, then
`postprocess_np` (the numpy twin of `PostProcessor`). Everything comes from the model's metadata:
class names, input size, strides, reg_max, centre offset, mean/std, keep_ratio and the postprocess
defaults, so no config is needed.
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
from nanodet_ghost.inference.postprocess_np import PostprocessParams, postprocess_output_np

logger = logging.getLogger(__name__)


class ExportedPredictor:
    """Runs an exported detector (.onnx, OpenVINO .xml or ncnn .param).

    Args:
        model: a model file (the backend is chosen by its suffix) or a loaded backend.
        num_threads: runtime threads (None: the runtime's default); only used with a file.
        postprocess: overrides of the metadata's postprocess defaults (score_thr, nms_iou, ...).
        batch_size: images per forward when a list is given and the model takes any batch (a
            model with a fixed batch of 1 is run image by image).
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
        settings = dict(meta.postprocess)
        settings.update(dict(postprocess or {}))
        unknown = sorted(set(settings) - set(PARAM_TYPES))
        if unknown:
            raise ValueError(f"unknown postprocess settings {unknown}, expected some of {sorted(PARAM_TYPES)}")
        self.params = PostprocessParams(**{k: PARAM_TYPES[k](v) for k, v in settings.items()})
        self.batch_size = int(batch_size)

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

    def forward(self, batch: np.ndarray) -> np.ndarray:
        """float32 [B, 3, H, W] → output [B, N, C + 4(R+1)] (class scores after sigmoid).

        A model with a fixed batch is run once per image."""
        batch = np.ascontiguousarray(batch, dtype=np.float32)
        static_hw = self.backend.input_hw
        if batch.ndim != 4 or any(d is not None and d != b for d, b in zip(static_hw, batch.shape[2:])):
            raise ModelFileError(f"{self.path}: expects input [B, 3, {static_hw[0]}, {static_hw[1]}], got "
                                 f"{list(batch.shape)} (export again with --input-size W H)")
        fixed = self.backend.fixed_batch
        if fixed is not None and batch.shape[0] != fixed:
            return np.concatenate([self.backend.forward(batch[i:i + 1]) for i in range(batch.shape[0])])
        return self.backend.forward(batch)

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
