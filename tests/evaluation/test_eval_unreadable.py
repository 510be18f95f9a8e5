"""Unreadable images in an evaluation: dropped with their ground truth (one log line), or an error
with `reject_unreadable_images` (evaluate_checkpoint, collect_predictions) / `strict_images`
(CocoEvaluator) / evaluation.strict / tools/test.py --strict. The DDP gather of them is in
test_eval_gather.py, the Lightning validation loop in tests/trainer/test_unreadable_validation.py."""
from __future__ import annotations

import importlib.util
import json
import logging
from pathlib import Path
from typing import Any, Dict, List

import cv2
import numpy as np
import pytest
import torch

from nanodet_ghost.evaluation import (
    CocoEvaluator,
    EvaluationInputError,
    collect_predictions,
    evaluate_checkpoint,
)
from nanodet_ghost.evaluation import runner
from nanodet_ghost.paths import REPO_ROOT

from eval_helpers import CATEGORY_IDS, CLASS_NAMES, perfect_predictions, tiny_gt

BAD_B = {2: "b.jpg: truncated JPEG (the image data stops inside a scan)"}


def test_evaluator_drops_unreadable_image_and_its_gt(caplog: pytest.LogCaptureFixture) -> None:
    evaluator = CocoEvaluator(tiny_gt(), CATEGORY_IDS, CLASS_NAMES)
    only_a = {1: perfect_predictions()[1]}
    assert evaluator.evaluate(only_a).map < 1.0  # image 2's boxes count as missed
    with caplog.at_level(logging.WARNING, logger="nanodet_ghost.evaluation"):
        result = evaluator.evaluate(only_a, unreadable=BAD_B)
    assert result.map == pytest.approx(1.0) and result.num_images == 1
    assert [r.getMessage() for r in caplog.records] == [
        "dropped 1 unreadable image and their 2 GT boxes from the evaluation (b.jpg: truncated "
        "JPEG (the image data stops inside a scan)); set evaluation.strict=true "
        "(tools/test.py --strict) to fail instead"]
    assert len(evaluator.coco_gt.dataset["images"]) == 2  # the evaluator itself is unchanged


def test_evaluator_strict_images_refuses() -> None:
    evaluator = CocoEvaluator(tiny_gt(), CATEGORY_IDS, CLASS_NAMES, strict_images=True)
    with pytest.raises(EvaluationInputError, match=r"^1 image of the evaluation could not be read "
                                                   r"and evaluation.strict=true .*: b\.jpg: "
                                                   r"truncated JPEG"):
        evaluator.evaluate({1: perfect_predictions()[1]}, unreadable=BAD_B)


def _batches() -> List[Dict[str, Any]]:
    dropped = dict(image_id=2, file_name="b.jpg", problem="cannot decode")
    return [dict(images=torch.zeros(1, 3, 8, 8), targets=[], metas=[dict(image_id=1)],
                 dropped=[]),
            dict(images=torch.zeros(0, 3, 32, 32), targets=[], metas=[], dropped=[dropped])]


def test_collect_predictions_skips_empty_batches_and_reports_dropped() -> None:
    calls: List[int] = []

    def predict(images: torch.Tensor, metas: List[Dict[str, Any]]) -> List[Dict[str, Any]]:
        calls.append(images.shape[0])
        return [{k: torch.as_tensor(v) for k, v in perfect_predictions()[1].items()}]

    unreadable: Dict[int, str] = {}
    preds = collect_predictions(predict, _batches(), unreadable=unreadable)
    assert list(preds) == [1] and calls == [1]
    assert unreadable == {2: "b.jpg: cannot decode"}
    with pytest.raises(EvaluationInputError, match=r"b\.jpg: cannot decode"):
        collect_predictions(predict, _batches(), reject_unreadable_images=True)


# ------------------------------------------------------------------ evaluate_checkpoint, real files
@pytest.fixture
def coco_with_broken_image(tmp_path: Path) -> Path:
    """Three 80x60 JPEGs with one box each; the second is cut in half (header intact)."""
    img_dir = tmp_path / "img"
    img_dir.mkdir()
    images, anns = [], []
    for i, name in enumerate(["a.jpg", "b.jpg", "c.jpg"], start=1):
        noise = np.random.default_rng(i).integers(0, 255, (60, 80, 3), dtype=np.uint8)
        ok, buf = cv2.imencode(".jpg", cv2.GaussianBlur(noise, (5, 5), 0))
        data = buf.tobytes()
        (img_dir / name).write_bytes(data[: len(data) // 2] if name == "b.jpg" else data)
        images.append(dict(id=i, file_name=name, width=80, height=60))
        anns.append(dict(id=i, image_id=i, category_id=1, bbox=[10, 10, 30, 20], iscrowd=0,
                         area=600))
    (tmp_path / "val.json").write_text(json.dumps(dict(
        images=images, annotations=anns, categories=[dict(id=1, name="cell")])))
    config = tmp_path / "cfg.yml"
    config.write_text(
        "model: {head: {num_classes: 1}}\n"
        "data:\n  class_names: [cell]\n  input_size: [64, 64]\n  val_batch_size: 1\n"
        "  num_workers: 0\n"
        f"  val: {{format: coco, root: '{img_dir}', ann_file: '{tmp_path / 'val.json'}'}}\n")
    (tmp_path / "model.ckpt").write_bytes(b"")  # never read: the model is stubbed
    return tmp_path


def _perfect_boxes(images: torch.Tensor, metas: List[Dict[str, Any]]) -> List[Dict[str, Any]]:
    return [dict(boxes=torch.tensor([[10.0, 10.0, 40.0, 30.0]]), scores=torch.tensor([0.9]),
                 labels=torch.tensor([0])) for _ in metas]


def test_evaluate_checkpoint_drops_unreadable(coco_with_broken_image: Path, monkeypatch,
                                              caplog: pytest.LogCaptureFixture) -> None:
    from nanodet_ghost.config import load_config

    monkeypatch.setattr(runner, "_torch_predict_fn", lambda cfg, path, device, flip_tta: _perfect_boxes)
    root = coco_with_broken_image
    cfg = load_config(str(root / "cfg.yml"))
    with caplog.at_level(logging.WARNING, logger="nanodet_ghost"):
        result = evaluate_checkpoint(cfg, root / "model.ckpt", "val", device="cpu")
    assert result.map == pytest.approx(1.0) and result.num_images == 2
    dropped = [r.getMessage() for r in caplog.records if r.getMessage().startswith("dropped")]
    assert len(dropped) == 1 and "1 unreadable image and their 1 GT boxes" in dropped[0]
    assert "b.jpg: truncated JPEG" in dropped[0]

    with pytest.raises(EvaluationInputError, match=r"b\.jpg: truncated JPEG"):
        evaluate_checkpoint(cfg, root / "model.ckpt", "val", device="cpu", reject_unreadable_images=True)
    strict_cfg = load_config(str(root / "cfg.yml"), ["evaluation.strict=true"])
    with pytest.raises(EvaluationInputError, match=r"b\.jpg"):
        evaluate_checkpoint(strict_cfg, root / "model.ckpt", "val", device="cpu")


def test_tools_test_strict_flag(coco_with_broken_image: Path, monkeypatch) -> None:
    spec = importlib.util.spec_from_file_location("tools_test", REPO_ROOT / "tools" / "test.py")
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    monkeypatch.setattr(runner, "_torch_predict_fn", lambda cfg, path, device, flip_tta: _perfect_boxes)
    root = coco_with_broken_image
    argv = [str(root / "cfg.yml"), str(root / "model.ckpt"), "--device", "cpu"]
    assert tool.run(tool.parse_args(argv)).num_images == 2
    with pytest.raises(EvaluationInputError, match=r"b\.jpg"):
        tool.run(tool.parse_args(argv + ["--strict"]))
