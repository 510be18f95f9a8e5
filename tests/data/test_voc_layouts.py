"""VOC xml in the layouts users download: devkit, images/annotations, flat, nested, per-split
folders, upper-case extensions; and the errors when a layout holds no image."""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Dict, List

import pytest

from nanodet_ghost.data.base import DatasetError
from nanodet_ghost.data.voc import VocSource

from test_voc import write_image, write_voc_xml

CLASSES = ["cat", "dog"]


def _pair(ann_dir: Path, img_dir: Path, stem: str, ext: str = ".jpg", xml_ext: str = ".xml",
          cls: str = "cat") -> None:
    """One image and its xml: a 64x48 image with one box of class `cls`."""
    for d in (ann_dir / stem, img_dir / stem):
        d.parent.mkdir(parents=True, exist_ok=True)
    name = Path(stem).name + ext
    write_image(img_dir / (stem + ext))
    write_voc_xml(ann_dir / (stem + xml_ext), name, (64, 48), [(cls, (2, 3, 30, 40), 0)])


def _files(src: VocSource) -> List[str]:
    return [src.get_annotation(i)["file_name"] for i in range(len(src))]


def _labels(src: VocSource) -> Dict[str, List[int]]:
    return {a["file_name"]: a["labels"].tolist()
            for a in (src.get_annotation(i) for i in range(len(src)))}


def test_images_and_annotations_folders(tmp_path: Path,
                                        caplog: pytest.LogCaptureFixture) -> None:
    _pair(tmp_path / "annotations", tmp_path / "images", "a")
    _pair(tmp_path / "annotations", tmp_path / "images", "b", ext=".png", cls="dog")
    with caplog.at_level(logging.INFO):
        src = VocSource(str(tmp_path), CLASSES, name="export")
    assert _labels(src) == {"a.jpg": [0], "b.png": [1]}
    assert src.load_image(1).shape == (48, 64, 3)
    assert "layout: VOC annotations/ + images/" in caplog.text


def test_devkit_without_imagesets(tmp_path: Path) -> None:
    _pair(tmp_path / "Annotations", tmp_path / "JPEGImages", "x")
    _pair(tmp_path / "Annotations", tmp_path / "JPEGImages", "y")
    src = VocSource(str(tmp_path), CLASSES)
    assert _files(src) == ["x.jpg", "y.jpg"]
    assert src.layout == "VOC Annotations/ + JPEGImages/"


def test_nested_subfolders(tmp_path: Path) -> None:
    ann, img = tmp_path / "Annotations", tmp_path / "JPEGImages"
    _pair(ann, img, "batch1/x")
    _pair(ann, img, "batch2/x", cls="dog")  # same stem in another batch: both kept
    _pair(ann, img, "batch2/deeper/z")
    src = VocSource(str(tmp_path), CLASSES)
    assert _labels(src) == {"batch1/x.jpg": [0], "batch2/deeper/z.jpg": [0], "batch2/x.jpg": [1]}
    assert src.image_path(0).endswith("JPEGImages/batch1/x.jpg")
    assert len({src.get_annotation(i)["image_id"] for i in range(3)}) == 3


def test_nested_flat_folder(tmp_path: Path) -> None:
    _pair(tmp_path, tmp_path, "day1/a")
    _pair(tmp_path, tmp_path, "day2/a")
    src = VocSource(str(tmp_path), CLASSES)
    assert _files(src) == ["day1/a.jpg", "day2/a.jpg"]
    assert src.layout == "VOC flat folder (xml beside the images)"


def test_upper_case_extensions(tmp_path: Path) -> None:
    _pair(tmp_path / "Annotations", tmp_path / "JPEGImages", "a", ext=".JPG", xml_ext=".XML")
    _pair(tmp_path / "Annotations", tmp_path / "JPEGImages", "b", ext=".PNG")
    (tmp_path / "ImageSets" / "Main").mkdir(parents=True)
    (tmp_path / "ImageSets" / "Main" / "train.txt").write_text("a\nb\n")
    assert _files(VocSource(str(tmp_path), CLASSES, split="train")) == ["a.JPG", "b.PNG"]
    assert _files(VocSource(str(tmp_path), CLASSES)) == ["a.JPG", "b.PNG"]


def test_split_from_images_and_annotations_subfolders(tmp_path: Path) -> None:
    for split, stems in (("train", ["a", "b"]), ("val", ["c"])):
        for stem in stems:
            _pair(tmp_path / "annotations" / split, tmp_path / "images" / split, stem)
    train = VocSource(str(tmp_path), CLASSES, split="train")
    val = VocSource(str(tmp_path), CLASSES, split="val")
    assert _files(train) == ["a.jpg", "b.jpg"] and _files(val) == ["c.jpg"]
    assert val.layout == "VOC annotations/val/ + images/val/"
    assert val.name == f"{tmp_path.name} val"


def test_split_from_per_split_folders(tmp_path: Path) -> None:
    """Roboflow's "Pascal VOC" export: train/ valid/ test/, each a flat folder."""
    _pair(tmp_path / "train", tmp_path / "train", "a")
    _pair(tmp_path / "valid", tmp_path / "valid", "b")
    _pair(tmp_path / "valid", tmp_path / "valid", "c")
    src = VocSource(str(tmp_path), CLASSES, split="valid")
    assert _files(src) == ["b.jpg", "c.jpg"]
    assert src.layout == "VOC valid/: flat folder (xml beside the images)"


def test_imagesets_split_still_wins(tmp_path: Path) -> None:
    for stem in ("a", "b", "c"):
        _pair(tmp_path / "Annotations", tmp_path / "JPEGImages", stem)
    (tmp_path / "ImageSets" / "Main").mkdir(parents=True)
    (tmp_path / "ImageSets" / "Main" / "val.txt").write_text("c\na\n")
    assert _files(VocSource(str(tmp_path), CLASSES, split="val")) == ["c.jpg", "a.jpg"]


def test_missing_split_names_what_was_looked_for(tmp_path: Path) -> None:
    _pair(tmp_path / "Annotations", tmp_path / "JPEGImages", "a")
    (tmp_path / "ImageSets" / "Main").mkdir(parents=True)
    (tmp_path / "ImageSets" / "Main" / "train.txt").write_text("a\n")
    with pytest.raises(DatasetError) as info:
        VocSource(str(tmp_path), CLASSES, split="val")
    message = str(info.value)
    assert message.startswith(str(tmp_path / "ImageSets" / "Main" / "val.txt"))
    assert "split list not found (split 'val')" in message
    assert "Annotations/val/ and val/" in message
    assert "ImageSets/Main lists the splits ['train']" in message
    assert "set split: null to use every xml in Annotations/" in message


def test_no_annotations_anywhere(tmp_path: Path) -> None:
    (tmp_path / "images").mkdir()
    write_image(tmp_path / "images" / "a.jpg")
    with pytest.raises(DatasetError, match=r"no VOC annotations found; looked for "
                                           r"Annotations/\*\*/\*\.xml"):
        VocSource(str(tmp_path), CLASSES)


def test_empty_annotation_folder(tmp_path: Path) -> None:
    (tmp_path / "Annotations").mkdir()
    (tmp_path / "JPEGImages").mkdir()
    with pytest.raises(DatasetError, match=r"Annotations: no \.xml annotation files"):
        VocSource(str(tmp_path), CLASSES)


def test_images_in_no_known_folder_is_an_error(tmp_path: Path) -> None:
    """xml in annotations/, images in a folder of another name: nothing would load."""
    _pair(tmp_path / "annotations", tmp_path / "pictures", "a")
    _pair(tmp_path / "annotations", tmp_path / "pictures", "b")
    with pytest.raises(DatasetError) as info:
        VocSource(str(tmp_path), CLASSES)
    message = str(info.value)
    assert message.startswith(
        f"{tmp_path}: none of the 2 images named by the annotations was found")
    assert "layout: VOC annotations/ + annotations/" in message
    assert f"no image 'a.<ext>' in {tmp_path / 'annotations'}" in message


def test_all_background_is_a_different_error(tmp_path: Path) -> None:
    for stem in ("a", "b"):
        write_image(tmp_path / f"{stem}.jpg")
        write_voc_xml(tmp_path / f"{stem}.xml", f"{stem}.jpg", (64, 48), [])
    with pytest.raises(DatasetError, match=r"^bg: all 2 images have no boxes and "
                                           r"keep_background is false"):
        VocSource(str(tmp_path), CLASSES, keep_background=False, name="bg")
