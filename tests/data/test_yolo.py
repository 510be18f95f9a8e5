"""YoloSource on a YOLO copy of a few coco128 images made in tmp_path (boxes must match COCO)."""
from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Dict, List, Optional

import cv2
import numpy as np
import pytest

from nanodet_ghost.data.base import DatasetError
from nanodet_ghost.data.coco import CocoSource
from nanodet_ghost.data.config import DatasetConfig
from nanodet_ghost.data.sources import build_source
from nanodet_ghost.data.yolo import YoloSource

NUM_IMAGES = 8


def coco_to_yolo(coco128_root: Path, out: Path, num_images: int, split: Optional[str] = None,
                 names_as_dict: bool = False) -> List[str]:
    """Link the first `num_images` coco128 images into `out` and write YOLO labels for their
    non-crowd boxes plus a data.yaml. Returns the image file names."""
    with open(coco128_root / "annotations" / "instances_train2017.json") as f:
        raw = json.load(f)
    cats = sorted(raw["categories"], key=lambda c: c["id"])
    index_of = {c["id"]: i for i, c in enumerate(cats)}
    img_dir = out / "images" / split if split else out / "images"
    lbl_dir = out / "labels" / split if split else out / "labels"
    img_dir.mkdir(parents=True)
    lbl_dir.mkdir(parents=True)
    by_image: Dict[int, list] = {}
    for a in raw["annotations"]:
        if not a["iscrowd"]:
            by_image.setdefault(a["image_id"], []).append(a)
    names = []
    for img in raw["images"][:num_images]:
        os.symlink(coco128_root / "train2017" / img["file_name"], img_dir / img["file_name"])
        w, h = img["width"], img["height"]
        lines = []
        for a in by_image.get(img["id"], []):
            x, y, bw, bh = a["bbox"]
            lines.append(f"{index_of[a['category_id']]} {(x + bw / 2) / w:.6f} "
                         f"{(y + bh / 2) / h:.6f} {bw / w:.6f} {bh / h:.6f}")
        if lines:  # no label file for background images, as YOLO tools write them
            (lbl_dir / (Path(img["file_name"]).stem + ".txt")).write_text("\n".join(lines) + "\n")
        names.append(img["file_name"])
    if names_as_dict:
        yaml_names = "".join(f"  {i}: {c['name']}\n" for i, c in enumerate(cats))
    else:
        yaml_names = "".join(f"  - {c['name']}\n" for c in cats)
    (out / "data.yaml").write_text(f"path: .\nnames:\n{yaml_names}")
    return names


def _sorted_rows(boxes: np.ndarray, labels: np.ndarray) -> np.ndarray:
    rows = np.concatenate([labels[:, None].astype(np.float64), boxes.astype(np.float64)], axis=1)
    return rows[np.lexsort(rows.T[::-1])] if len(rows) else rows


def test_yolo_matches_coco(coco128_root: Path, tmp_path: Path) -> None:
    names = coco_to_yolo(coco128_root, tmp_path, NUM_IMAGES)
    coco = CocoSource(str(coco128_root / "train2017"),
                      str(coco128_root / "annotations" / "instances_train2017.json"))
    yolo = YoloSource(str(tmp_path))
    assert yolo.class_names == coco.class_names
    assert len(yolo) == NUM_IMAGES
    coco_index = {coco.get_annotation(i)["file_name"]: i for i in range(len(coco))}
    total = 0
    for i in range(len(yolo)):
        y = yolo.get_annotation(i)
        assert y["file_name"] == names[i]
        c = coco.get_annotation(coco_index[y["file_name"]])
        assert (y["height"], y["width"]) == (c["height"], c["width"])
        a, b = _sorted_rows(y["boxes"], y["labels"]), _sorted_rows(c["boxes"], c["labels"])
        assert a.shape == b.shape
        np.testing.assert_array_equal(a[:, 0], b[:, 0])
        assert np.abs(a[:, 1:] - b[:, 1:]).max(initial=0) <= 1.0
        total += len(a)
    assert total > 20
    assert yolo.load_image(0).shape == (yolo.get_annotation(0)["height"],
                                        yolo.get_annotation(0)["width"], 3)


def test_split_dict_names_and_build_source(coco128_root: Path, tmp_path: Path) -> None:
    coco_to_yolo(coco128_root, tmp_path, 3, split="val", names_as_dict=True)
    cfg = DatasetConfig(format="yolo", root=str(tmp_path), split="val")
    src = build_source(cfg, [])
    assert isinstance(src, YoloSource) and len(src) == 3
    assert src.class_names[:3] == ["person", "bicycle", "car"] and len(src.class_names) == 80
    assert src.category_ids == list(range(1, 81))
    assert src.to_coco()["categories"][0] == {"id": 1, "name": "person", "supercategory": ""}


def _tiny_dataset(root: Path, labels: Dict[str, Optional[str]]) -> None:
    (root / "images").mkdir(parents=True)
    (root / "labels").mkdir()
    img = np.zeros((50, 100, 3), np.uint8)
    for stem, text in labels.items():
        cv2.imwrite(str(root / "images" / f"{stem}.jpg"), img)
        if text is not None:
            (root / "labels" / f"{stem}.txt").write_text(text)


def test_background_and_config_names(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    _tiny_dataset(tmp_path, {"a": "1 0.5 0.5 0.2 0.4\n\n", "b": "", "c": None})
    with caplog.at_level(logging.INFO):
        src = YoloSource(str(tmp_path), ["cat", "dog"], name="tiny")
    assert len(src) == 3
    a = src.get_annotation(0)
    np.testing.assert_allclose(a["boxes"], [[40, 15, 60, 35]], atol=1e-4)
    np.testing.assert_array_equal(a["labels"], [1])
    assert src.get_annotation(1)["boxes"].shape == (0, 4)
    assert src.get_annotation(2)["boxes"].shape == (0, 4)
    assert src.missing_labels == 1 and not src.skipped
    assert "1 images without a label file" in caplog.text
    assert len(YoloSource(str(tmp_path), ["cat", "dog"], keep_background=False)) == 1


def test_names_required_and_consistent(tmp_path: Path) -> None:
    _tiny_dataset(tmp_path, {"a": "0 0.5 0.5 0.2 0.2\n"})
    with pytest.raises(DatasetError, match="no class_names"):
        YoloSource(str(tmp_path))
    (tmp_path / "data.yaml").write_text("names: [cat, dog]\n")
    assert YoloSource(str(tmp_path)).class_names == ["cat", "dog"]
    with pytest.raises(DatasetError, match=r"data\.yaml: names \['cat', 'dog'\] differ"):
        YoloSource(str(tmp_path), ["dog", "cat"])
    (tmp_path / "data.yaml").write_text("names: [cat, dog\n")
    with pytest.raises(DatasetError, match=r"data\.yaml: invalid YAML at line \d+"):
        YoloSource(str(tmp_path))


def test_box_partly_outside_is_clipped(tmp_path: Path) -> None:
    _tiny_dataset(tmp_path, {"a": "0 0.95 0.5 0.2 0.2\n"})
    src = YoloSource(str(tmp_path), ["cat"])
    np.testing.assert_allclose(src.get_annotation(0)["boxes"], [[85, 20, 100, 30]], atol=1e-4)
    assert src.fixed == {"clipped box": 1}
