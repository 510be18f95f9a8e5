"""PyTorch inference: validation preprocessing → `model(images)` → `model.predict` → numpy results."""
from __future__ import annotations

import logging
import os
from typing import Any, List, Optional, Sequence, Union

import numpy as np
import torch
from torch import nn

from nanodet_ghost.config import load_config
from nanodet_ghost.inference.common import (
    Detections,
    ImageInput,
    as_image_list,
    chunks,
    load_image,
    make_detections,
    preprocess_batch,
)
from nanodet_ghost.inference.model_files import is_checkpoint, load_exported_predictor
from nanodet_ghost.model import load_detector

logger = logging.getLogger(__name__)


class Predictor:
    """Runs a detector on BGR images or image files.

    Args:
        model: a `Detector` (`forward` + `predict`), put in eval mode here.
        class_names: names of the C classes, in label order.
        input_size: (W, H) of the network input.
        keep_ratio: letterbox (True) or stretch (False), as in validation.
        mean, std: per-channel BGR normalisation.
        device: torch device.
        batch_size: images per forward when a list is given (<= 0: all at once).
        fuse: run an inference copy instead (`nanodet_ghost.model.fuse.optimize_for_inference`:
            BatchNorm folded into the convolutions, channels-last weights), for speed.
    """

    def __init__(
        self,
        model: nn.Module,
        class_names: Sequence[str],
        input_size: Sequence[int],
        keep_ratio: bool = True,
        mean: Sequence[float] = (103.53, 116.28, 123.675),
        std: Sequence[float] = (57.375, 57.12, 58.395),
        device: Union[str, torch.device] = "cpu",
        batch_size: int = 8,
        fuse: bool = False,
    ) -> None:
        self.device = torch.device(device)
        if fuse:
            from nanodet_ghost.model.fuse import optimize_for_inference

            model = optimize_for_inference(model)
        self.model = model.to(self.device).eval()
        self.class_names = [str(n) for n in class_names]
        self.input_size = (int(input_size[0]), int(input_size[1]))
        self.keep_ratio = bool(keep_ratio)
        self.mean = [float(v) for v in mean]
        self.std = [float(v) for v in std]
        self.batch_size = int(batch_size)
        num_classes = getattr(model, "num_classes", len(self.class_names))
        if num_classes != len(self.class_names):
            raise ValueError(f"the model has {num_classes} classes but {len(self.class_names)} class names "
                             "were given")

    @classmethod
    def from_model(cls, path: Union[str, os.PathLike], config: Any = None, overrides: Sequence[str] = (),
                   device: Union[str, torch.device] = "cpu", num_threads: Optional[int] = None,
                   **kwargs: Any) -> Any:
        """The predictor for any model file, by suffix: `.ckpt` → `Predictor` (needs `config`),
        `.onnx` → `OnnxPredictor`, OpenVINO `.xml` / ncnn `.param` → `ExportedPredictor`; all
        share `predict`. Arguments: see `nanodet_ghost.inference.factory.load_predictor`."""
        if not is_checkpoint(path):
            return load_exported_predictor(path, num_threads=num_threads, **kwargs)
        if config is None:
            raise ValueError(f"{os.fspath(path)}: a checkpoint needs its config (exported models do not)")
        if num_threads:
            torch.set_num_threads(int(num_threads))
        return cls.from_checkpoint(config, path, device=device, overrides=overrides, **kwargs)

    @classmethod
    def from_checkpoint(cls, config: Any, ckpt: Union[str, os.PathLike], device: Union[str, torch.device] = "cpu",
                        overrides: Sequence[str] = (), fuse: bool = True, **kwargs: Any) -> "Predictor":
        """Build the model of `config` (a YAML path or a loaded DictConfig, with `overrides`) and
        load the checkpoint's weights (EMA preferred); fused for inference unless `fuse=False`.
        `kwargs` go to the constructor (`batch_size`)."""
        cfg = load_config(config, overrides) if isinstance(config, (str, os.PathLike)) else config
        return cls.from_config(cfg, load_detector(cfg, ckpt, prefer_ema=True), device=device, fuse=fuse, **kwargs)

    @classmethod
    def from_config(cls, cfg: Any, model: nn.Module, device: Union[str, torch.device] = "cpu",
                    **kwargs: Any) -> "Predictor":
        """A predictor for `model` with the preprocessing settings of `cfg.data`."""
        names = list(cfg.data.class_names) or [f"class_{i}" for i in range(model.num_classes)]
        return cls(model, names, list(cfg.data.input_size), bool(cfg.data.keep_ratio), list(cfg.data.mean),
                   list(cfg.data.std), device=device, **kwargs)

    def preprocess(self, images: Sequence[np.ndarray]) -> tuple:
        """uint8 BGR images → (float32 Tensor [B, 3, H, W] on the device, metas)."""
        batch, metas = preprocess_batch(images, self.input_size, self.keep_ratio, self.mean, self.std)
        return torch.from_numpy(batch).to(self.device), metas

    @torch.inference_mode()
    def forward(self, batch: torch.Tensor) -> torch.Tensor:
        """`Tensor[B, 3, H, W]` → raw head output `Tensor[B, N, C + 4 * (reg_max + 1)]`."""
        return self.model(batch)

    @torch.inference_mode()
    def predict(self, images: Union[ImageInput, Sequence[ImageInput]],
                score_thr: Optional[float] = None) -> Union[Detections, List[Detections]]:
        """Detect objects.

        Args:
            images: a uint8 [H, W, 3] BGR array, an image path, or a list of either.
            score_thr: overrides the config's `model.postprocess.score_thr`.
        Returns:
            One `Detections` for a single input, else a list (boxes in original-image pixels).
        """
        items, single = as_image_list(images)
        loaded = [load_image(item) for item in items]
        results: List[Detections] = []
        for part in chunks(len(loaded), self.batch_size):
            imgs = [img for img, _ in loaded[part]]
            batch, metas = self.preprocess(imgs)
            raw = self.model(batch)
            preds = self.model.predict(raw, metas, tuple(batch.shape[-2:]), score_thr=score_thr)
            for pred, meta, (_, path) in zip(preds, metas, loaded[part]):
                results.append(make_detections(
                    pred["boxes"].cpu().numpy(), pred["scores"].cpu().numpy(), pred["labels"].cpu().numpy(),
                    self.class_names, meta["orig_hw"], path))
        return results[0] if single else results
