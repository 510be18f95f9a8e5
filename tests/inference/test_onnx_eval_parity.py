"""COCO mAP through the ONNX path equals the PyTorch path (BCCD val images, random biased model).

The acceptance run on a trained BCCD checkpoint uses the same `compare_onnx_with_pytorch`."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from omegaconf import OmegaConf

from inference_helpers import calibrated_model, make_cfg, save_lightning_checkpoint
from nanodet_ghost.data.image_io import read_image
from nanodet_ghost.export.onnx import export_checkpoint
from nanodet_ghost.export.parity import compare_onnx_with_pytorch
from nanodet_ghost.paths import REPO_ROOT

NUM_IMAGES = 8


@pytest.fixture(scope="module")
def bccd_setup(bccd_root: Path, tmp_path_factory):
    """A VOC root of links to the shared BCCD folders with a split of the first val images, a
    config for it, a checkpoint and its ONNX export."""
    root = tmp_path_factory.mktemp("bccd_few") / "BCCD"
    (root / "ImageSets" / "Main").mkdir(parents=True)
    for sub in ("Annotations", "JPEGImages"):
        os.symlink(bccd_root / sub, root / sub)
    stems = (bccd_root / "ImageSets" / "Main" / "val.txt").read_text().split()[:NUM_IMAGES]
    (root / "ImageSets" / "Main" / "few.txt").write_text("\n".join(stems) + "\n")
    overrides = ["data.class_names=[RBC,WBC,Platelets]", "model.head.num_classes=3", "data.val.format=voc",
                 f"data.val.root={root}", "data.val.split=few", "data.num_workers=0", "data.val_batch_size=4"]
    cfg = make_cfg(*overrides)
    images = [read_image(str(bccd_root / "JPEGImages" / f"{s}.jpg")) for s in stems]
    model = calibrated_model(cfg, images, class_bias=-1.0, predictor_std=0.1)
    folder = root.parent
    ckpt = save_lightning_checkpoint(model, folder / "model.ckpt")
    onnx_path = export_checkpoint(cfg, ckpt, folder / "model.onnx", dynamic_batch=True)
    config_path = folder / "bccd_few.yml"
    OmegaConf.save(cfg, config_path)
    return cfg, ckpt, Path(onnx_path), config_path


def test_map_parity_on_bccd(bccd_setup, tmp_path: Path) -> None:
    cfg, ckpt, onnx_path, _ = bccd_setup
    result = compare_onnx_with_pytorch(cfg, ckpt, onnx_path, results_dir=tmp_path)
    assert result.torch_result.num_images == NUM_IMAGES
    assert result.torch_result.num_detections > 50
    assert result.torch_result.stats[1] > 0.0, "the biased model should match some cells at IoU 0.5"
    assert result.ok and result.map_diff <= 0.002 and result.max_stat_diff <= 0.002
    assert "mAP difference" in result.summary()
    torch_dets = json.loads((tmp_path / "pytorch_results.json").read_text())
    onnx_dets = json.loads((tmp_path / "onnx_results.json").read_text())
    assert len(torch_dets) == len(onnx_dets) == result.torch_result.num_detections
    key = lambda d: (d["image_id"], d["category_id"], -d["score"])  # noqa: E731
    for a, b in zip(sorted(torch_dets, key=key), sorted(onnx_dets, key=key)):
        assert (a["image_id"], a["category_id"]) == (b["image_id"], b["category_id"])
        assert abs(a["score"] - b["score"]) < 1e-4
        assert np.abs(np.subtract(a["bbox"], b["bbox"])).max() < 0.05


def test_tools_test_evaluates_onnx(bccd_setup, tmp_path: Path) -> None:
    """`tools/test.py CONFIG model.onnx` goes through the ONNX hook."""
    _, _, onnx_path, config_path = bccd_setup
    proc = subprocess.run([sys.executable, str(REPO_ROOT / "tools" / "test.py"), str(config_path), str(onnx_path),
                           "--stats-out", str(tmp_path / "stats.json")],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "Average Precision" in proc.stdout
    assert len(json.loads((tmp_path / "stats.json").read_text())["stats"]) == 12


def test_export_tool_check_map(bccd_setup, tmp_path: Path) -> None:
    """`tools/export_onnx.py ... --check-map` exports and compares both paths' mAP on val."""
    _, ckpt, _, config_path = bccd_setup
    out = tmp_path / "checked.onnx"
    proc = subprocess.run([sys.executable, str(REPO_ROOT / "tools" / "export_onnx.py"), str(config_path), str(ckpt),
                           "--out", str(out), "--check-map"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "within the tolerance" in proc.stdout and out.is_file()


def test_onnx_input_size_must_match_config(bccd_setup) -> None:
    from nanodet_ghost.evaluation import EvaluationInputError, evaluate_checkpoint
    from nanodet_ghost.config import load_config

    _, _, onnx_path, config_path = bccd_setup
    cfg = load_config(config_path, ["data.input_size=[416,416]"])
    with pytest.raises(EvaluationInputError, match="input size"):
        evaluate_checkpoint(cfg, onnx_path, device="cpu")
