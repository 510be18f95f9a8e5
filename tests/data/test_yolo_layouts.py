"""YOLO datasets described by an ultralytics data.yaml: folders, lists of folders, .txt image
lists, `path:`, Roboflow's `../x/images`, names as list or dict; and what fails, and how."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Dict, List, Optional

import cv2
import numpy as np
import pytest

from nanodet_ghost.data.base import DatasetError
from nanodet_ghost.data.config import DatasetConfig
from nanodet_ghost.data.sources import build_source
from nanodet_ghost.data.yolo import YoloSource, label_path_of


def _image(path: Path, label: Optional[str] = None) -> None:
    """A 100x50 image at `path` and, when given, its label where ultralytics looks for it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), np.zeros((50, 100, 3), np.uint8))
    if label is not None:
        label_path = Path(label_path_of(str(path)))
        label_path.parent.mkdir(parents=True, exist_ok=True)
        label_path.write_text(label)


def _classes(src: YoloSource) -> Dict[str, List[int]]:
    return {a["file_name"]: a["labels"].tolist()
            for a in (src.get_annotation(i) for i in range(len(src)))}


def test_label_path_rule() -> None:
    sep = os.sep
    assert label_path_of(f"{sep}d{sep}images{sep}train{sep}a.jpg") == \
        f"{sep}d{sep}labels{sep}train{sep}a.txt"
    # only the last "images" folder is replaced; a dotted stem keeps its dots
    assert label_path_of(f"{sep}images{sep}set{sep}images{sep}x.y.PNG") == \
        f"{sep}images{sep}set{sep}labels{sep}x.y.txt"
    assert label_path_of(f"{sep}d{sep}pics{sep}a.jpg") == f"{sep}d{sep}pics{sep}a.txt"


def test_data_yaml_with_folders_and_dict_names(tmp_path: Path) -> None:
    _image(tmp_path / "images" / "train" / "a.jpg", "1 0.5 0.5 0.2 0.4\n")
    _image(tmp_path / "images" / "val" / "b.jpg", "0 0.5 0.5 0.2 0.4\n")
    (tmp_path / "data.yaml").write_text(
        "path: .\ntrain: images/train\nval: images/val\nnames:\n  0: cat\n  1: dog\n")
    src = YoloSource(str(tmp_path / "data.yaml"), split="train")
    assert src.class_names == ["cat", "dog"]
    assert _classes(src) == {os.path.join("images", "train", "a.jpg"): [1]}
    np.testing.assert_allclose(src.get_annotation(0)["boxes"], [[40, 15, 60, 35]], atol=1e-4)
    assert src.name == f"{tmp_path.name} train"
    assert src.layout == "YOLO data.yaml 'train': images/train"


def test_data_yaml_in_root_folder_roboflow_export(tmp_path: Path) -> None:
    """Roboflow: data.yaml beside train/ valid/, with entries written as ../train/images."""
    _image(tmp_path / "train" / "images" / "a.jpg", "0 0.5 0.5 0.2 0.2\n")
    _image(tmp_path / "valid" / "images" / "b.jpg", "1 0.5 0.5 0.2 0.2\n")
    _image(tmp_path / "valid" / "images" / "c.jpg")  # background: no label file
    (tmp_path / "data.yaml").write_text(
        "train: ../train/images\nval: ../valid/images\nnc: 2\nnames: ['cat', 'dog']\n")
    cfg = DatasetConfig(format="yolo", root=str(tmp_path), split="val")
    src = build_source(cfg, [])
    assert _classes(src) == {os.path.join("valid", "images", "b.jpg"): [1],
                             os.path.join("valid", "images", "c.jpg"): []}
    assert src.missing_labels == 1


def test_data_yaml_with_list_of_folders_and_path(tmp_path: Path) -> None:
    root = tmp_path / "sets"
    _image(root / "part1" / "images" / "a.jpg", "0 0.5 0.5 0.2 0.2\n")
    _image(root / "part2" / "images" / "sub" / "b.jpg", "1 0.5 0.5 0.2 0.2\n")
    (tmp_path / "cfg").mkdir()
    (tmp_path / "cfg" / "my.yaml").write_text(
        "path: ../sets\ntrain: [part1/images, part2/images]\nnames: [cat, dog]\n")
    src = YoloSource(str(tmp_path / "cfg" / "my.yaml"), split="train")
    assert _classes(src) == {os.path.join("part1", "images", "a.jpg"): [0],
                             os.path.join("part2", "images", "sub", "b.jpg"): [1]}


def test_data_yaml_with_txt_image_list(tmp_path: Path) -> None:
    _image(tmp_path / "images" / "train2017" / "a.jpg", "0 0.5 0.5 0.2 0.2\n")
    _image(tmp_path / "images" / "train2017" / "b.jpg", "1 0.5 0.5 0.2 0.2\n")
    outside = tmp_path.parent / f"{tmp_path.name}_elsewhere" / "images" / "c.jpg"
    _image(outside, "1 0.5 0.5 0.2 0.2\n")
    (tmp_path / "train2017.txt").write_text(
        f"./images/train2017/b.jpg\n./images/train2017/a.jpg\n{outside}\nnotes.md\n")
    (tmp_path / "data.yaml").write_text("train: train2017.txt\nnames: [cat, dog]\n")
    src = YoloSource(str(tmp_path / "data.yaml"), split="train")
    files = [src.get_annotation(i)["file_name"] for i in range(len(src))]
    assert sorted(files) == sorted([os.path.join("images", "train2017", "a.jpg"),
                                    os.path.join("images", "train2017", "b.jpg"), str(outside)])
    assert _classes(src)[str(outside)] == [1]


def test_listed_image_that_is_missing_is_counted(tmp_path: Path) -> None:
    _image(tmp_path / "images" / "a.jpg", "0 0.5 0.5 0.2 0.2\n")
    (tmp_path / "val.txt").write_text("images/a.jpg\nimages/gone.jpg\n")
    (tmp_path / "data.yaml").write_text("val: val.txt\nnames: [cat]\n")
    src = YoloSource(str(tmp_path / "data.yaml"), split="val")
    assert len(src) == 1 and src.skipped == {"missing image": 1}


def test_folder_layout_is_kept_when_data_yaml_is_present(tmp_path: Path) -> None:
    _image(tmp_path / "images" / "val" / "a.jpg", "0 0.5 0.5 0.2 0.2\n")
    (tmp_path / "data.yaml").write_text("val: somewhere/else\nnames: [cat]\n")
    src = YoloSource(str(tmp_path), split="val")
    assert src.layout == f"YOLO {os.path.join('images', 'val')}/ + {os.path.join('labels', 'val')}/"
    assert src.class_names == ["cat"]


@pytest.mark.parametrize("yaml_text, split, message", [
    ("train: images\nnames: [cat]\n", None, r"data\.yaml: set split to one of its image lists "
                                            r"\['train'\]"),
    ("train: images\nnames: [cat]\n", "val", r"data\.yaml: no 'val:' entry \(it has \['train'\]\)"),
    ("val: nowhere\nnames: [cat]\n", "val", r"data\.yaml: 'val' entry 'nowhere' is neither a "
                                            r"folder nor a list file \(looked for .*nowhere\)"),
    ("val: empty\nnames: [cat]\n", "val", r"data\.yaml: the 'val' entry 'empty' holds no images"),
    ("val: images\n", "val", r"data\.yaml: needs a non-empty 'names:' list or dict"),
])
def test_data_yaml_errors(tmp_path: Path, yaml_text: str, split: str, message: str) -> None:
    _image(tmp_path / "images" / "a.jpg", "0 0.5 0.5 0.2 0.2\n")
    (tmp_path / "empty").mkdir()
    (tmp_path / "data.yaml").write_text(yaml_text)
    with pytest.raises(DatasetError, match=message):
        YoloSource(str(tmp_path / "data.yaml"), split=split)


def test_no_images_and_no_yaml(tmp_path: Path) -> None:
    (tmp_path / "labels").mkdir()
    with pytest.raises(DatasetError, match=r"no YOLO images found; looked for the folder "
                                           r"images/train/ and for data\.yaml / data\.yml"):
        YoloSource(str(tmp_path), ["cat"], split="train")
    (tmp_path / "images").mkdir()
    with pytest.raises(DatasetError, match=r"images: no images \(\.jpg, .*\) in this folder"):
        YoloSource(str(tmp_path), ["cat"])
