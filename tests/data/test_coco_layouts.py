"""COCO json with `file_name` in sub-folders, and a json whose images are in another folder."""
from __future__ import annotations

import json
from pathlib import Path
from typing import List

import cv2
import numpy as np
import pytest

from nanodet_ghost.data.base import DatasetError
from nanodet_ghost.data.coco import CocoSource


def _coco(tmp_path: Path, file_names: List[str], write_under: Path) -> Path:
    """ann.json over 64x48 images `file_names` (one box each), written below `write_under`."""
    images, anns = [], []
    for i, name in enumerate(file_names, start=1):
        (write_under / name).parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(write_under / name), np.full((48, 64, 3), 10 * i, np.uint8))
        images.append(dict(id=i, file_name=name, width=64, height=48))
        anns.append(dict(id=i, image_id=i, category_id=1, bbox=[1, 2, 10, 20], iscrowd=0))
    path = tmp_path / "ann.json"
    path.write_text(json.dumps(dict(images=images, annotations=anns,
                                    categories=[dict(id=1, name="cat")])))
    return path


def test_file_names_with_subfolders(tmp_path: Path) -> None:
    names = ["train2017/000001.jpg", "a/b/c.jpg", "top.jpg"]
    ann = _coco(tmp_path, names, tmp_path / "data")
    src = CocoSource(str(tmp_path / "data"), str(ann))
    assert [src.get_annotation(i)["file_name"] for i in range(3)] == names
    assert [int(src.load_image(i)[0, 0, 0]) for i in range(3)] == [10, 20, 30]
    assert not src.skipped and [i["file_name"] for i in src.to_coco()["images"]] == names


def test_images_in_another_folder_is_an_error(tmp_path: Path) -> None:
    ann = _coco(tmp_path, ["train2017/000001.jpg", "train2017/000002.jpg"], tmp_path / "data")
    wrong = tmp_path / "data" / "train2017"  # root one level too deep
    with pytest.raises(DatasetError) as info:
        CocoSource(str(wrong), str(ann))
    assert str(info.value) == (
        f"{ann}: none of its 2 images is in the image folder {wrong} (e.g. "
        f"{wrong / 'train2017' / '000001.jpg'} does not exist); set root to the folder that "
        "file_name is relative to")


def test_some_images_missing_is_a_counted_skip(tmp_path: Path) -> None:
    ann = _coco(tmp_path, ["a.jpg", "b.jpg"], tmp_path / "data")
    (tmp_path / "data" / "b.jpg").unlink()
    src = CocoSource(str(tmp_path / "data"), str(ann))
    assert len(src) == 1 and src.skipped == {"missing image": 1}


def test_json_without_images_is_an_error(tmp_path: Path) -> None:
    ann = _coco(tmp_path, [], tmp_path / "data")
    (tmp_path / "data").mkdir()
    with pytest.raises(DatasetError, match=r"^none: no images found \(layout: COCO ann\.json "
                                           r"\+ data/\)"):
        CocoSource(str(tmp_path / "data"), str(ann), name="none")
