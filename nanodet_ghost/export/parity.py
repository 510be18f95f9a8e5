"""Parity of an exported model with PyTorch: COCO mAP (ONNX Runtime, OpenVINO or ncnn vs PyTorch)
and the raw network output.

For mAP, both paths run through `nanodet_ghost.evaluation.evaluate_checkpoint` on the same split, with the
same preprocessing (the val pipeline), the same postprocess settings (`cfg.model.postprocess`) and
the same COCO scoring, so any difference comes from the exported graph and the numpy
post-processing alone.
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Any, Iterable, Mapping, Optional, Tuple, Union

from nanodet_ghost.evaluation.coco import STAT_NAMES, CocoEvalResult

logger = logging.getLogger(__name__)

DEFAULT_TOLERANCE = 0.002


@dataclass
class ParityResult:
    """The two evaluations and how far apart they are."""

    torch_result: CocoEvalResult
    onnx_result: CocoEvalResult
    tolerance: float = DEFAULT_TOLERANCE

    @property
    def map_diff(self) -> float:
        """|mAP@[.5:.95] (ONNX) - mAP@[.5:.95] (PyTorch)|."""
        return abs(self.onnx_result.map - self.torch_result.map)

    @property
    def max_stat_diff(self) -> float:
        """Largest absolute difference over the 12 COCO stats."""
        return max(abs(a - b) for a, b in zip(self.torch_result.stats, self.onnx_result.stats))

    @property
    def ok(self) -> bool:
        return self.map_diff <= self.tolerance

    def summary(self) -> str:
        lines = [f"{'stat':<14}{'pytorch':>10}{'export':>10}{'diff':>10}"]
        for name, a, b in zip(STAT_NAMES, self.torch_result.stats, self.onnx_result.stats):
            lines.append(f"{name:<14}{a:>10.4f}{b:>10.4f}{b - a:>+10.4f}")
        lines.append(f"detections: pytorch {self.torch_result.num_detections}, "
                     f"export {self.onnx_result.num_detections}")
        lines.append(f"mAP difference {self.map_diff:.5f} ({'within' if self.ok else 'OUTSIDE'} "
                     f"the tolerance {self.tolerance})")
        return "\n".join(lines)


def compare_onnx_with_pytorch(
    cfg: Any,
    ckpt_path: Union[str, os.PathLike],
    onnx_path: Union[str, os.PathLike],
    split: str = "val",
    device: str = "cpu",
    batches: Optional[Iterable[Mapping[str, Any]]] = None,
    tolerance: float = DEFAULT_TOLERANCE,
    results_dir: Optional[Union[str, os.PathLike]] = None,
) -> ParityResult:
    """Evaluate `ckpt_path` (PyTorch, EMA weights) and the export `onnx_path` (.onnx, OpenVINO .xml
    or ncnn .param, run by its runtime) on `split`.

    Args:
        cfg: the loaded config the checkpoint was trained with.
        batches: collated batches to use for both (default: the split's dataloader); a one-shot
            iterator is not allowed, since it is consumed twice.
        results_dir: when given, the COCO results of both paths are written there as
            `pytorch_results.json` and `onnx_results.json`.
    Returns:
        `ParityResult`; `ok` tells whether the mAP difference is within `tolerance`.
    """
    from nanodet_ghost.evaluation.runner import evaluate_checkpoint

    if batches is not None and iter(batches) is batches:
        raise ValueError("batches must be re-iterable (a list), it is used for both evaluations")
    outs = [None, None]
    if results_dir is not None:
        os.makedirs(results_dir, exist_ok=True)
        outs = [os.path.join(results_dir, f"{name}_results.json") for name in ("pytorch", "onnx")]
    torch_result = evaluate_checkpoint(cfg, ckpt_path, split, device=device, batches=batches, out=outs[0])
    onnx_result = evaluate_checkpoint(cfg, onnx_path, split, device=device, batches=batches, out=outs[1])
    result = ParityResult(torch_result, onnx_result, tolerance)
    if result.ok:
        logger.info("%s vs PyTorch on %s: mAP %.4f vs %.4f, difference %.2g (tolerance %g)", onnx_path, split,
                    onnx_result.map, torch_result.map, result.map_diff, tolerance)
    else:
        logger.warning("%s vs PyTorch on %s:\n%s", onnx_path, split, result.summary())
    return result


def output_difference(model: Any, model_path: Union[str, os.PathLike], batch: Any, cfg: Any = None,
                      num_threads: Optional[int] = None) -> Tuple[float, float]:
    """Largest |export - PyTorch| over every output of the export's head on `batch` (float32
    [B, 3, H, W]), and the largest |PyTorch output| (the scale to judge it by).

    The PyTorch side is the unfused `model` with the same head (`export_head`: `RawHead` needs no
    `cfg`; `boxes` and `nms` take strides and thresholds from `cfg`); the export runs through its
    backend (`nanodet_ghost.inference.backends.load_backend`)."""
    import numpy as np
    import torch

    from nanodet_ghost.export.heads import export_head
    from nanodet_ghost.inference.exported_predictor import ExportedPredictor

    batch = np.ascontiguousarray(batch, dtype=np.float32)
    predictor = ExportedPredictor(model_path, num_threads=num_threads)
    if predictor.head != "raw" and cfg is None:
        raise ValueError(f"{model_path}: comparing the {predictor.head} head needs the config")
    reference = export_head(model, predictor.head, cfg, (batch.shape[3], batch.shape[2]))
    with torch.no_grad():
        expected = reference(torch.from_numpy(batch))
    expected = [t.numpy() for t in (expected if isinstance(expected, tuple) else (expected,))]
    outputs = predictor.run(batch)
    got = list(outputs.values())
    for name, g, e in zip(outputs, got, expected):
        if g.shape != e.shape:
            raise ValueError(f"{model_path}: output {name} has shape {list(g.shape)}, PyTorch gives {list(e.shape)}")
    diff = max(float(np.abs(g.astype(np.float64) - e).max()) if e.size else 0.0 for g, e in zip(got, expected))
    return diff, max([0.0] + [float(np.abs(e).max()) for e in expected if e.size])
