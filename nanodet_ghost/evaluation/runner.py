"""Evaluate a trained checkpoint (or an exported ONNX model) on a config's val / test split.

Written against docs/contracts.md: `load_detector(cfg, path, prefer_ema=True)`,
`build_dataset(cfg.data, split)` / `build_dataloader(...)`, batches `dict(images, targets, metas)`
and `model.predict(raw, metas, input_hw)`.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, List, Mapping, Optional, Sequence

from nanodet_ghost.evaluation.backends import DEFAULT_BACKEND
from nanodet_ghost.evaluation.coco import CocoEvalResult, CocoEvaluator, predictions_to_coco_results
from nanodet_ghost.evaluation.jsonio import (
    EvaluationInputError,
    PathLike,
    save_coco_results,
    save_stats,
)
from nanodet_ghost.evaluation.unreadable import refuse_unreadable, unreadable_in_batch

logger = logging.getLogger(__name__)

# (images Tensor[B, 3, H, W], metas) -> one dict(boxes, scores, labels) per image, original pixels.
PredictFn = Callable[[Any, Sequence[Mapping[str, Any]]], List[Mapping[str, Any]]]


def _to_numpy(pred: Mapping[str, Any]) -> Dict[str, Any]:
    return {k: (v.detach().cpu().numpy() if hasattr(v, "detach") else v) for k, v in pred.items()}


def collect_predictions(
    predict_fn: PredictFn, batches: Iterable[Mapping[str, Any]], device: Any = "cpu", *,
    unreadable: Optional[Dict[int, str]] = None, reject_unreadable_images: bool = False,
) -> Dict[int, Dict[str, Any]]:
    """Run `predict_fn` over collated batches under `torch.inference_mode`.

    Args:
        predict_fn: see `PredictFn`.
        batches: `collate` outputs, `dict(images=Tensor[B,3,H,W], targets, metas=[meta],
            dropped=[...])` (B may be 0 when every image of a batch was unreadable).
        device: where `images` are moved.
        unreadable: filled with `{image_id: "file_name: problem"}` of the images the batches
            left out (`batch["dropped"]`).
        reject_unreadable_images: raise `EvaluationInputError` at the first unreadable image instead.

    Returns:
        `{meta["image_id"]: dict(boxes, scores, labels)}` with numpy arrays.
    """
    import torch

    predictions: Dict[int, Dict[str, Any]] = {}
    with torch.inference_mode():
        for batch in batches:
            dropped = unreadable_in_batch(batch)
            if reject_unreadable_images:
                refuse_unreadable(dropped)
            if unreadable is not None:
                unreadable.update(dropped)
            if batch["images"].shape[0] == 0:
                continue
            images = batch["images"].to(device)
            metas = batch["metas"]
            for meta, pred in zip(metas, predict_fn(images, metas)):
                predictions[int(meta["image_id"])] = _to_numpy(pred)
    return predictions


def _torch_predict_fn(cfg: Any, ckpt_path: Path, device: Any, flip_tta: Sequence[str] = ()) -> PredictFn:
    from nanodet_ghost.model import load_detector  # torch: imported only when a checkpoint is run

    model = load_detector(cfg, ckpt_path, prefer_ema=True).to(device)
    if flip_tta:
        from nanodet_ghost.model.head.flip_tta import FlipTTA

        try:
            model = FlipTTA(model, flip_tta)
            model.check_input(tuple(int(v) for v in reversed(list(cfg.data.input_size))))
        except ValueError as exc:
            raise EvaluationInputError(f"cannot evaluate {ckpt_path} with flip TTA: {exc}") from None

    def predict(images: Any, metas: Sequence[Mapping[str, Any]]) -> List[Mapping[str, Any]]:
        raw = model(images)
        return model.predict(raw, metas, tuple(images.shape[-2:]))

    return predict


def _onnx_predict_fn(cfg: Any, onnx_path: Path) -> PredictFn:
    """Predictions of an exported model (ONNX Runtime, OpenVINO, ncnn or MNN, by suffix) with the same
    decode + NMS as `model.predict` (numpy twin).

    `OnnxPredictor.from_config(onnx_path, cfg.model)` takes its postprocess settings from the
    config (as the PyTorch path does); `predict_batch(images: np.float32 [B, 3, H, W] (already
    preprocessed, a collated batch), metas)` returns per image dict(boxes [K,4] xyxy original
    pixels, scores [K], labels [K]). The model's input size must be the config's.
    """
    try:
        if onnx_path.suffix.lower() == ".onnx":
            from nanodet_ghost.inference.onnx_predictor import OnnxPredictor as predictor_class
        else:  # OpenVINO .xml, ncnn .param, .mnn: the same numpy pre/post-processing over another runtime
            from nanodet_ghost.inference.exported_predictor import ExportedPredictor as predictor_class
    except ImportError as exc:
        raise EvaluationInputError(
            f"cannot evaluate {onnx_path}: exported-model evaluation needs "
            f"nanodet_ghost.inference ({exc})"
        ) from None
    predictor = predictor_class.from_config(str(onnx_path), cfg.model)
    config_size = tuple(int(v) for v in (cfg.data.get("input_size") or ()))
    model_size = getattr(predictor, "input_size", None)
    if model_size is not None and config_size and tuple(model_size) != config_size:
        raise EvaluationInputError(
            f"{onnx_path} was exported for input size {list(model_size)} (W, H) but the config "
            f"evaluates at data.input_size={list(config_size)}; re-export or override data.input_size"
        )

    def predict(images: Any, metas: Sequence[Mapping[str, Any]]) -> List[Mapping[str, Any]]:
        return predictor.predict_batch(images.cpu().numpy(), metas)

    return predict


def _build_loader(cfg: Any, dataset: Any) -> Iterable[Mapping[str, Any]]:
    from nanodet_ghost.data.loader import build_dataloader

    return build_dataloader(
        dataset,
        batch_size=cfg.data.val_batch_size,
        shuffle=False,
        num_workers=cfg.data.num_workers,
        pin_memory=bool(cfg.data.get("pin_memory", False)),
    )


def _source_of(dataset: Any) -> Any:
    source = getattr(dataset, "source", dataset)
    for attr in ("to_coco", "category_ids", "class_names"):
        if not hasattr(source, attr):
            raise EvaluationInputError(
                f"dataset {type(dataset).__name__} exposes no source with '{attr}' "
                "(expected dataset.source.to_coco() / category_ids / class_names)"
            )
    return source


def evaluate_checkpoint(
    cfg: Any,
    ckpt_path: PathLike,
    split: str = "val",
    *,
    out: Optional[PathLike] = None,
    stats_out: Optional[PathLike] = None,
    device: Optional[str] = None,
    batches: Optional[Iterable[Mapping[str, Any]]] = None,
    reject_unknown_image_ids: bool = True,
    reject_unreadable_images: Optional[bool] = None,
    flip_tta: Sequence[str] = (),
) -> CocoEvalResult:
    """Predict a split with a checkpoint (`.ckpt`, EMA weights preferred) or an exported model
    (`.onnx`, OpenVINO `.xml`, ncnn `.param`),
    and score it with COCO bbox metrics (with `cfg.evaluation.backend`).

    Args:
        cfg: the loaded config (`nanodet_ghost.config.load_config`).
        ckpt_path: Lightning checkpoint, or an exported `.onnx` / `.xml` / `.param` file.
        split: "val" or "test" (the `data.<split>` section of the config).
        out: where to write the COCO results json (optional).
        stats_out: where to write `{"stats": [...], "per_class_ap": {...}}` (optional).
        device: torch device; default "cuda" when available, else "cpu".
        batches: collated batches to use instead of `build_dataloader` (tests).
        reject_unknown_image_ids: predictions on image ids absent from the ground truth raise
            `EvaluationInputError`; False: they are dropped with a logged error (`CocoEvaluator`'s
            `strict`; `tools/test.py --lenient` sets it False).
        reject_unreadable_images: an unreadable image raises `EvaluationInputError` instead of being
            dropped with its ground truth; None: `cfg.evaluation.strict` (`CocoEvaluator`'s
            `strict_images`; `tools/test.py --strict` sets it True).
        flip_tta: flips averaged with the image, e.g. ("h",) or ("h", "v", "hv") (`FlipTTA`);
            checkpoints only. Empty: one forward.

    Raises:
        EvaluationInputError: missing checkpoint, missing split, or bad predictions.
        CheckpointMismatchError: a checkpoint that is unsafe or does not fit `cfg.model`.
    """
    import torch

    ckpt = Path(ckpt_path)
    if not ckpt.is_file():
        raise EvaluationInputError(f"checkpoint not found: {ckpt}")
    if split not in ("val", "test"):
        raise EvaluationInputError(f"split must be 'val' or 'test', got {split!r}")
    if cfg.data.get(split) is None:
        raise EvaluationInputError(f"the config has no data.{split} section")
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")

    from nanodet_ghost.data.loader import build_dataset

    dataset = build_dataset(cfg.data, split)
    source = _source_of(dataset)
    from nanodet_ghost.inference.backends import MODEL_SUFFIXES

    if ckpt.suffix.lower() in MODEL_SUFFIXES:  # exported: ONNX Runtime, OpenVINO, ncnn, MNN
        if flip_tta:
            raise EvaluationInputError(
                f"flip TTA runs on checkpoints (.ckpt) only, not on the exported model {ckpt}")
        predict_fn = _onnx_predict_fn(cfg, ckpt)
    else:
        predict_fn = _torch_predict_fn(cfg, ckpt, device, tuple(flip_tta))
    logger.info("evaluating %s on the %s split (%d images, device %s%s)",
                ckpt, split, len(dataset), device,
                f", flip TTA: the image and {', '.join(flip_tta)}" if flip_tta else "")
    if reject_unreadable_images is None:
        reject_unreadable_images = bool(cfg.get("evaluation", {}).get("strict", False))
    unreadable: Dict[int, str] = {}
    predictions = collect_predictions(
        predict_fn, batches if batches is not None else _build_loader(cfg, dataset), device,
        unreadable=unreadable, reject_unreadable_images=reject_unreadable_images,
    )
    results = predictions_to_coco_results(predictions, source.category_ids)
    if out is not None:
        logger.info("COCO results written to %s", save_coco_results(results, out))
    evaluator = CocoEvaluator(source.to_coco(), source.category_ids, source.class_names,
                              strict=reject_unknown_image_ids, strict_images=reject_unreadable_images,
                              backend=str(cfg.get("evaluation", {}).get("backend", DEFAULT_BACKEND)))
    result = evaluator.evaluate_results(results, source=f"predictions of {ckpt}",
                                        unreadable=unreadable)
    if stats_out is not None:
        logger.info("stats written to %s", save_stats(result.stats, result.per_class_ap, stats_out))
    return result
