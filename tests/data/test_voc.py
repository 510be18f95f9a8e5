"""VocSource on the real BCCD set, plus the difficult flag and the other layouts in tmp_path."""
from __future__ import annotations

import logging
import xml.etree.ElementTree as ET
from collections import Counter
from pathlib import Path
from typing import List, Sequence, Tuple

import cv2
import numpy as np
import pytest

from nanodet_ghost.data.config import DatasetConfig
from nanodet_ghost.data.sources import build_source
from nanodet_ghost.data.voc import VocSource

CLASSES = ["RBC", "WBC", "Platelets"]


def _raw_objects(root: Path, split: str) -> Tuple[List[str], Counter, List[str]]:
    """(ids, class counts, ids with a zero-size box) read straight from the xml files."""
    ids = (root / "ImageSets" / "Main" / f"{split}.txt").read_text().split()
    counts: Counter = Counter()
    zero = []
    for i in ids:
        for obj in ET.parse(root / "Annotations" / f"{i}.xml").getroot().iter("object"):
            counts[obj.findtext("name")] += 1
            x1, y1, x2, y2 = (float(obj.findtext(f"bndbox/{k}"))
                              for k in ("xmin", "ymin", "xmax", "ymax"))
            if x2 <= x1 or y2 <= y1:
                zero.append(i)
    return ids, counts, zero


def _loaded_counts(src: VocSource) -> Counter:
    labels = np.concatenate([src.get_annotation(i)["labels"] for i in range(len(src))])
    return Counter(CLASSES[k] for k in labels.tolist())


def test_raw_bccd_files(bccd_root: Path) -> None:
    ids, counts, zero = _raw_objects(bccd_root, "train")
    assert len(ids) == 205 and sum(counts.values()) == 2805
    assert counts == {"WBC": 214, "RBC": 2382, "Platelets": 209}
    assert zero == ["BloodImage_00343"]
    ids, counts, zero = _raw_objects(bccd_root, "val")
    assert len(ids) == 87 and zero == ["BloodImage_00338"]


def test_bccd_train(bccd_root: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO):
        src = VocSource(str(bccd_root), CLASSES, split="train", name="bccd train")
    assert len(src) == 205
    assert src.num_boxes == 2804
    assert src.skipped == {"zero-size box": 1}
    assert not src.fixed
    assert _loaded_counts(src) == {"WBC": 214, "RBC": 2381, "Platelets": 209}
    lines = [r for r in caplog.records if r.getMessage().startswith("bccd train:")]
    assert len(lines) == 1 and lines[0].levelno == logging.WARNING
    assert lines[0].getMessage() == ("bccd train: 205 images, 2804 boxes, 0 ignore regions; "
                                     "skipped 1 zero-size box (BloodImage_00343.xml); layout: "
                                     "VOC Annotations/ + JPEGImages/, ImageSets/Main/train.txt")


def test_bccd_val(bccd_root: Path) -> None:
    src = VocSource(str(bccd_root), CLASSES, split="val")
    _, counts, _ = _raw_objects(bccd_root, "val")
    assert len(src) == 87
    assert src.num_boxes == sum(counts.values()) - 1
    assert src.skipped == {"zero-size box": 1}
    assert "BloodImage_00338.xml" in src.summary()


def test_bccd_records(bccd_root: Path) -> None:
    src = build_source(DatasetConfig(format="voc", root=str(bccd_root), split="test"), CLASSES)
    assert isinstance(src, VocSource) and len(src) == 72
    assert src.category_ids == [1, 2, 3]
    ann = src.get_annotation(0)
    assert (ann["height"], ann["width"]) == (480, 640)
    assert ann["boxes"].dtype == np.float32 and ann["labels"].dtype == np.int64
    assert (ann["boxes"][:, 2:] > ann["boxes"][:, :2]).all()
    assert (ann["boxes"][:, [0, 2]] <= 640).all() and (ann["boxes"][:, [1, 3]] <= 480).all()
    img = src.load_image(0)
    assert img.shape == (480, 640, 3) and img.dtype == np.uint8
    coco = src.to_coco()
    assert len(coco["images"]) == 72 and len(coco["annotations"]) == src.num_boxes


def write_voc_xml(path: Path, filename: str, size: Tuple[int, int],
                  objects: Sequence[Tuple[str, Sequence[float], int]]) -> None:
    """objects: (name, (xmin, ymin, xmax, ymax), difficult); size: (width, height)."""
    objs = "".join(
        f"<object><name>{n}</name><difficult>{d}</difficult><bndbox><xmin>{b[0]}</xmin>"
        f"<ymin>{b[1]}</ymin><xmax>{b[2]}</xmax><ymax>{b[3]}</ymax></bndbox></object>"
        for n, b, d in objects)
    path.write_text(f"<annotation><filename>{filename}</filename><size><width>{size[0]}</width>"
                    f"<height>{size[1]}</height><depth>3</depth></size>{objs}</annotation>")


def write_image(path: Path, width: int = 64, height: int = 48) -> None:
    img = np.random.default_rng(0).integers(0, 255, (height, width, 3), dtype=np.uint8)
    ok, buf = cv2.imencode(path.suffix or ".jpg", img)
    assert ok
    path.write_bytes(buf.tobytes())


def test_difficult_becomes_ignore_plain_folder(tmp_path: Path) -> None:
    write_image(tmp_path / "a.jpg")
    write_voc_xml(tmp_path / "a.xml", "a.jpg", (64, 48),
                  [("cat", (1, 2, 30, 40), 0), ("dog", (10, 10, 20, 20), 1)])
    write_image(tmp_path / "b.png")
    write_voc_xml(tmp_path / "b.xml", "b.png", (64, 48), [])
    src = VocSource(str(tmp_path), ["dog", "cat"])
    assert len(src) == 2
    a = src.get_annotation(0)
    assert a["file_name"] == "a.jpg"
    np.testing.assert_array_equal(a["boxes"], [[1, 2, 30, 40]])
    np.testing.assert_array_equal(a["labels"], [1])
    np.testing.assert_array_equal(a["ignore"], [[10, 10, 20, 20]])
    assert src.get_annotation(1)["boxes"].shape == (0, 4)
    crowd = [x for x in src.to_coco()["annotations"] if x["iscrowd"]]
    assert len(crowd) == 1 and crowd[0]["category_id"] == 1  # "dog" -> label 0 -> id 1
    assert len(VocSource(str(tmp_path), ["dog", "cat"], keep_background=False)) == 1


def test_size_from_image_not_xml(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    (tmp_path / "JPEGImages").mkdir()
    (tmp_path / "Annotations").mkdir()
    write_image(tmp_path / "JPEGImages" / "x.jpg", width=100, height=50)
    write_voc_xml(tmp_path / "Annotations" / "x.xml", "x.jpg", (640, 480),
                  [("cat", (10, 10, 90, 40), 0)])
    with caplog.at_level(logging.INFO):
        src = VocSource(str(tmp_path), ["cat"])
    ann = src.get_annotation(0)
    assert (ann["height"], ann["width"]) == (50, 100)
    assert src.fixed == {"xml size mismatch": 1}
    assert "xml size mismatch (x.xml)" in caplog.text


def test_split_with_missing_files(tmp_path: Path) -> None:
    for d in ("JPEGImages", "Annotations", "ImageSets/Main"):
        (tmp_path / d).mkdir(parents=True)
    write_image(tmp_path / "JPEGImages" / "ok.jpg")
    write_voc_xml(tmp_path / "Annotations" / "ok.xml", "ok.jpg", (64, 48),
                  [("cat", (1, 1, 9, 9), 0)])
    write_voc_xml(tmp_path / "Annotations" / "noimg.xml", "noimg.jpg", (64, 48), [])
    (tmp_path / "ImageSets/Main/train.txt").write_text("ok\nnoimg\nnoxml\n")
    src = VocSource(str(tmp_path), ["cat"], split="train")
    assert len(src) == 1
    assert src.skipped == {"missing image": 1, "missing annotation file": 1}
    assert "noimg.xml" in src.summary() and "noxml.xml" in src.summary()
