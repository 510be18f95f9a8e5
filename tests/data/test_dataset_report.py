"""tools/dataset_report.py: counts, positive coverage against the assigner, problems found."""
from __future__ import annotations

import importlib.util
import json
import sys
import re
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import yaml

from nanodet_ghost.analysis.dataset_stats import REPORT_FIGSIZE, positive_coverage
from nanodet_ghost.analysis.figures import DPI
from nanodet_ghost.config import load_config
from nanodet_ghost.data.loader import build_source_for
from nanodet_ghost.data.synthetic import SYNTHETIC_CLASSES, generate_split
from nanodet_ghost.data.transforms import resize_matrix, warp_boxes
from nanodet_ghost.model import build_model
from nanodet_ghost.model.assigner.atss import ATSSAssigner
from nanodet_ghost.model.head.decode import featmap_sizes, grid_points
from nanodet_ghost.paths import CONFIG_DIR, REPO_ROOT


def load_tool(name: str):
    spec = importlib.util.spec_from_file_location(name, REPO_ROOT / "tools" / f"{name}.py")
    tool = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = tool  # dataclasses look their module up there
    spec.loader.exec_module(tool)
    return tool


dataset_report = load_tool("dataset_report")


def direct_coverage(source, input_size, keep_ratio, topk, octave_scale, strides=(8, 16, 32)):
    """Positives per GT box with ATSSAssigner called directly (anchors: octave_scale * stride
    squares at the points of the input, padded to 32)."""
    w, h = input_size
    hw = (-(-h // 32) * 32, -(-w // 32) * 32)
    points, point_strides = grid_points(hw, strides)
    half = point_strides[:, None] * octave_scale / 2
    anchors = torch.cat((points - half, points + half), dim=1)
    counts = [a * b for a, b in featmap_sizes(hw, strides)]
    assigner = ATSSAssigner(topk)
    out = []
    for i in range(len(source)):
        ann = source.get_annotation(i)
        boxes = warp_boxes(ann["boxes"], resize_matrix((ann["width"], ann["height"]), (w, h), keep_ratio), w, h)
        boxes = boxes[(boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])]
        result = assigner.assign(anchors, counts, torch.from_numpy(boxes), torch.zeros(len(boxes), dtype=torch.long))
        out += [int((result.gt_indices == g).sum()) for g in range(len(boxes))]
    return np.array(out)


def write_config(tmp_path: Path, data_root: Path, input_size=(160, 128)) -> Path:
    cfg = {"model": {"head": {"num_classes": 6}},
           "data": {"class_names": list(SYNTHETIC_CLASSES), "input_size": list(input_size),
                    "train": {"format": "coco", "root": str(data_root / "images"),
                              "ann_file": str(data_root / "annotations.json")},
                    "val": {"format": "coco", "root": str(data_root / "images"),
                            "ann_file": str(data_root / "annotations.json")}}}
    path = tmp_path / "cfg.yml"
    path.write_text(yaml.safe_dump(cfg))
    return path


@pytest.fixture(scope="module")
def synthetic_root(tmp_path_factory) -> Path:
    return generate_split(tmp_path_factory.mktemp("synthetic"), 8, seed=21)


def test_coverage_equals_the_assigner_called_directly(synthetic_root: Path, tmp_path: Path) -> None:
    cfg = load_config(write_config(tmp_path, synthetic_root))
    source = build_source_for(cfg.data.train, list(cfg.data.class_names), "train")
    coverage = positive_coverage(source, build_model(cfg.model).loss_fn, cfg.data.input_size, cfg.data.keep_ratio)
    expected = direct_coverage(source, (160, 128), True, cfg.model.loss.atss_topk, cfg.model.loss.octave_base_scale)
    assert len(coverage.positives) == source.num_boxes == len(expected) > 0
    np.testing.assert_array_equal(coverage.positives, expected)
    assert coverage.input_hw == (128, 160)


def test_tiny_boxes_get_no_positive(tmp_path: Path) -> None:
    """A 3x3 box between the stride-8 points has no anchor centre inside it: never a positive."""
    root = tmp_path / "tiny"
    (root / "images").mkdir(parents=True)
    cv2.imwrite(str(root / "images" / "a.jpg"), np.zeros((128, 128, 3), np.uint8))
    boxes = [[9, 9, 3, 3], [20, 20, 80, 80]]  # xywh; points are at 4, 12, 20, ...
    (root / "annotations.json").write_text(json.dumps(dict(
        images=[dict(id=1, file_name="a.jpg", height=128, width=128)],
        annotations=[dict(id=k + 1, image_id=1, category_id=1, bbox=b, area=b[2] * b[3], iscrowd=0)
                     for k, b in enumerate(boxes)],
        categories=[dict(id=k + 1, name=n) for k, n in enumerate(SYNTHETIC_CLASSES)])))
    cfg = load_config(write_config(tmp_path, root, input_size=(128, 128)))
    source = build_source_for(cfg.data.train, list(cfg.data.class_names), "train")
    coverage = positive_coverage(source, build_model(cfg.model).loss_fn, cfg.data.input_size, cfg.data.keep_ratio)
    assert coverage.positives[0] == 0 and coverage.positives[1] > 0
    assert coverage.share_covered == 0.5
    by_size = {low: (n, ok) for low, _, n, ok in coverage.by_size() if n}
    assert by_size == {0: (1, 0), 64: (1, 1)}


def test_report_tool_on_generated_data(synthetic_root: Path, tmp_path: Path, capsys) -> None:
    assert dataset_report.main([str(write_config(tmp_path, synthetic_root)), "--out", str(tmp_path / "out")]) == 0
    text = capsys.readouterr().out
    source = build_source_for(load_config(write_config(tmp_path, synthetic_root)).data.train,
                              list(SYNTHETIC_CLASSES), "train")
    per_class = np.bincount(np.concatenate([source.get_annotation(i)["labels"] for i in range(len(source))]),
                            minlength=6)
    row = f"train {len(source)} {source.num_boxes} 0 0 " + " ".join(str(n) for n in per_class)
    assert row in re.sub(r" +", " ", text)
    assert f"of {source.num_boxes} boxes get at least one positive" in text
    assert source.summary() in text  # the loader's own line
    img = cv2.imread(str(tmp_path / "out" / "dataset_report.png"))
    assert (img.shape[1], img.shape[0]) == (int(REPORT_FIGSIZE[0] * DPI), int(REPORT_FIGSIZE[1] * DPI))


def test_report_tool_errors(tmp_path: Path, synthetic_root: Path, capsys) -> None:
    assert dataset_report.main([str(tmp_path / "missing.yml")]) == 2
    assert "tools/dataset_report.py: error: config file not found:" in capsys.readouterr().err
    cfg = write_config(tmp_path, synthetic_root)
    assert dataset_report.main([str(cfg), "--split", "test"]) == 2
    assert "the config has no data.test section" in capsys.readouterr().err
    broken = tmp_path / "broken"
    (broken / "images").mkdir(parents=True)
    (broken / "annotations.json").write_text("{not json")
    assert dataset_report.main([str(write_config(tmp_path, broken))]) == 3
    assert "annotations.json" in capsys.readouterr().err


def test_report_on_bccd(bccd_root: Path, tmp_path: Path, capsys) -> None:
    """The counts the VOC tests assert, and the coverage of the assigner called directly."""
    config = CONFIG_DIR / "bccd_ghost_320.yml"
    assert dataset_report.main([str(config), "--out", str(tmp_path)]) == 0
    text = re.sub(r" +", " ", capsys.readouterr().out)
    assert "split images boxes no-box images ignore RBC WBC Platelets" in text
    assert "train 205 2804 0 0 2381 214 209" in text
    assert "val 87 1137 0 0" in text
    assert "test 72 " in text
    assert "skipped 1 zero-size box (BloodImage_00343.xml)" in text
    cfg = load_config(config)
    source = build_source_for(cfg.data.train, list(cfg.data.class_names), "train")
    positives = direct_coverage(source, tuple(cfg.data.train_input_size or cfg.data.input_size), cfg.data.keep_ratio,
                                cfg.model.loss.atss_topk, cfg.model.loss.octave_base_scale)
    assert f"{int((positives > 0).sum())} of 2804 boxes get at least one positive" in text
