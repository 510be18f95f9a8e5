"""`tools/test.py ... --plots DIR` in both modes: a results file, and a checkpoint on a config's split."""
from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import cv2
import torch
import yaml

from analysis_helpers import make_gt, make_results
from nanodet_ghost.config import load_config
from nanodet_ghost.data.synthetic import SYNTHETIC_CLASSES, generate_split
from nanodet_ghost.model import build_model
from nanodet_ghost.paths import REPO_ROOT

FIGURES = ("pr_curve.png", "f1_curve.png", "p_curve.png", "r_curve.png", "confusion_matrix.png",
           "per_class_ap.png", "ap_by_size.png")


def load_test_tool():
    spec = importlib.util.spec_from_file_location("tool_test", REPO_ROOT / "tools" / "test.py")
    tool = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = tool
    spec.loader.exec_module(tool)
    return tool


def test_results_file_mode(tmp_path: Path) -> None:
    gt = make_gt(num_images=4)
    (tmp_path / "gt.json").write_text(json.dumps(gt))
    (tmp_path / "r.json").write_text(json.dumps(make_results(gt)))
    assert load_test_tool().main(["--ann", str(tmp_path / "gt.json"), "--results", str(tmp_path / "r.json"),
                             "--plots", str(tmp_path / "plots")]) == 0
    assert sorted(p.name for p in (tmp_path / "plots").iterdir()) == sorted(FIGURES)


def test_checkpoint_mode_draws_the_split(tmp_path: Path) -> None:
    data = generate_split(tmp_path / "shapes", 3, seed=9)
    split = {"format": "coco", "root": str(data / "images"), "ann_file": str(data / "annotations.json")}
    config = tmp_path / "cfg.yml"
    config.write_text(yaml.safe_dump({
        "model": {"head": {"num_classes": 6}, "postprocess": {"score_thr": 0.0}},  # an untrained model scores ~0.01
        "data": {"class_names": list(SYNTHETIC_CLASSES), "input_size": [160, 160], "train": split, "val": split,
                 "test": split, "num_workers": 0}}))
    model = build_model(load_config(config).model)
    ckpt = tmp_path / "model.ckpt"
    torch.save({"state_dict": {f"model.{k}": v for k, v in model.state_dict().items()}}, ckpt)
    plots = tmp_path / "plots"
    assert load_test_tool().main([str(config), str(ckpt), "--split", "test", "--plots", str(plots)]) == 0
    assert sorted(p.name for p in plots.iterdir()) == sorted([*FIGURES, "results_test.json", "test_predictions.jpg"])
    assert json.loads((plots / "results_test.json").read_text())  # the detections the figures were made of
    assert cv2.imread(str(plots / "test_predictions.jpg")) is not None
