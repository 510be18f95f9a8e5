"""INT8 formats keep COCO mAP within 0.010 of the PyTorch checkpoint they come from.

Needs a trained detector, and CI has none: one is trained here from scratch on 8 generated
synthetic images (no download) at 160x160 until it detects them well (300 steps, one to two minutes
on 2 cores; no time limit, so the model, and the test, do not depend on the machine's speed). Both
the calibration and the evaluation use those 8 images: the test measures what quantization does
to a trained model's detections, not how well the model generalises. The evaluation runs
`evaluate_checkpoint`, the code path of `tools/test.py`, once for the checkpoint and once for the
export.
"""
from __future__ import annotations

from pathlib import Path

import pytest

from nanodet_ghost.config import load_config
from nanodet_ghost.export.formats import MAP_TOLERANCE, export_checkpoint_format
from nanodet_ghost.export.parity import compare_onnx_with_pytorch
from nanodet_ghost.paths import REPO_ROOT

FORMATS = {"onnx-int8": "model.int8.onnx", "openvino-int8": "model.int8.xml"}
IMAGES, STEPS = 8, 300


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """(config, best checkpoint) of a detector trained on `IMAGES` generated images."""
    from nanodet_ghost.data.synthetic import generate_split
    from nanodet_ghost.trainer.runner import train

    folder = tmp_path_factory.mktemp("int8_train")
    split = generate_split(folder / "data", IMAGES, seed=5)
    dataset = f"{{format: coco, root: {split / 'images'}, ann_file: {split / 'annotations.json'}}}"
    cfg = load_config(REPO_ROOT / "config" / "quickstart.yml", [
        "data.input_size=[160,160]", f"data.train={dataset}", f"data.val={dataset}", f"data.batch_size={IMAGES}",
        f"train.max_epochs={STEPS}", f"train.val_interval={STEPS}", "train.max_time=null", "train.ema_warmup=20",
        "train.scheduler.warmup_steps=20", f"train.save_dir={folder / 'run'}", "train.log_every_n_steps=50",
        "train.plots=false"])
    result = train(cfg, evaluate_at_end=False)
    assert result.best_checkpoint is not None
    return cfg, Path(result.best_checkpoint)


@pytest.mark.slow
@pytest.mark.parametrize("fmt", list(FORMATS))
def test_int8_export_keeps_map(trained, fmt, tmp_path: Path) -> None:
    pytest.importorskip("openvino" if fmt.startswith("openvino") else "onnxruntime")
    cfg, ckpt = trained
    path = export_checkpoint_format(cfg, ckpt, fmt, tmp_path / FORMATS[fmt], calib_images=IMAGES)
    result = compare_onnx_with_pytorch(cfg, ckpt, path, split="val", tolerance=MAP_TOLERANCE[fmt])
    assert result.torch_result.map > 0.2, "the model should have learned its training images"
    assert result.onnx_result.num_detections > 0
    assert result.ok, result.summary()
