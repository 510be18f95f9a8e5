"""The embedded synthetic dataset: deterministic, non-trivial, cached, usable as a COCO source."""
from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from nanodet_ghost.data import synthetic
from nanodet_ghost.data.synthetic import (
    SYNTHETIC_CLASSES,
    SyntheticSource,
    ensure_synthetic,
    generate_split,
)


def _files(folder: Path) -> dict:
    return {p.relative_to(folder).as_posix(): p.read_bytes()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def test_same_seed_same_bytes_other_seed_differs(tmp_path: Path) -> None:
    a = _files(generate_split(tmp_path / "a", 5, seed=3))
    b = _files(generate_split(tmp_path / "b", 5, seed=3))
    c = _files(generate_split(tmp_path / "c", 5, seed=4))
    assert a.keys() == b.keys() and len(a) == 5 + 2  # images, annotations.json, marker
    assert a == b
    assert a["images/000000.jpg"] != c["images/000000.jpg"]


def test_dataset_is_not_trivial(tmp_path: Path) -> None:
    split = generate_split(tmp_path, 16, seed=1001)
    coco = json.loads((split / "annotations.json").read_text())
    assert [c["name"] for c in coco["categories"]] == list(SYNTHETIC_CLASSES)
    per_image = {im["id"]: [] for im in coco["images"]}
    for ann in coco["annotations"]:
        per_image[ann["image_id"]].append(ann)
    assert len({a["category_id"] for a in coco["annotations"]}) >= 5
    assert max(len(v) for v in per_image.values()) >= 4  # several objects per image
    assert min(len(v) for v in per_image.values()) >= 1
    sides = [max(a["bbox"][2:]) for a in coco["annotations"]]
    assert min(sides) < 40 and max(sides) > 90  # small and large objects
    shapes = {(im["width"], im["height"]) for im in coco["images"]}
    assert len(shapes) > 8 and any(w < h for w, h in shapes) and any(w > h for w, h in shapes)
    for im in coco["images"]:
        img = cv2.imread(str(split / "images" / im["file_name"]))
        assert img.shape[:2] == (im["height"], im["width"])
        # the background is textured: even object-free rows are far from constant
        assert img.std() > 20
        assert float(np.abs(np.diff(img.astype(np.float32), axis=1)).mean()) > 2
        for ann in per_image[im["id"]]:
            x, y, w, h = ann["bbox"]
            assert 0 <= x and 0 <= y and x + w <= im["width"] and y + h <= im["height"]
            assert 0 < ann["area"] <= w * h


def test_objects_may_overlap(tmp_path: Path) -> None:
    split = generate_split(tmp_path, 40, seed=1001)
    coco = json.loads((split / "annotations.json").read_text())
    boxes = {}
    for ann in coco["annotations"]:
        x, y, w, h = ann["bbox"]
        boxes.setdefault(ann["image_id"], []).append((x, y, x + w, y + h))
    overlapping = sum(
        any(a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]
            for i, a in enumerate(bs) for b in bs[i + 1:])
        for bs in boxes.values())
    assert overlapping >= 3


def test_ensure_synthetic_caches_and_regenerates_incomplete(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv(synthetic.CACHE_ENV_VAR, str(tmp_path))
    monkeypatch.setitem(synthetic.SPLITS, "val", (3, 9))
    split = ensure_synthetic("val")
    assert split == tmp_path / synthetic.VERSION / "val"
    stamp = (split / "annotations.json").stat().st_mtime_ns
    assert ensure_synthetic("val") == split
    assert (split / "annotations.json").stat().st_mtime_ns == stamp  # not regenerated
    (split / "images" / "000001.jpg").unlink()
    (split / synthetic._MARKER).unlink()  # an interrupted generation leaves no marker
    ensure_synthetic("val")
    assert (split / "images" / "000001.jpg").is_file()
    monkeypatch.setitem(synthetic.SPLITS, "val", (4, 9))  # other parameters: regenerated
    ensure_synthetic("val")
    assert len(list((split / "images").iterdir())) == 4
    assert not [p for p in split.parent.iterdir() if p.name.startswith(".")]  # no temp dirs


def test_synthetic_source_is_a_coco_source(tmp_path: Path) -> None:
    src = SyntheticSource("train", root=str(tmp_path), num_images=4, seed=5)
    assert len(src) == 4 and src.class_names == list(SYNTHETIC_CLASSES)
    assert src.category_ids == [1, 2, 3, 4, 5, 6]
    img, ann = src.load_image(0), src.get_annotation(0)
    assert img.shape == (ann["height"], ann["width"], 3) and len(ann["boxes"]) >= 1
    with pytest.raises(ValueError, match="classes"):
        SyntheticSource("train", root=str(tmp_path), class_names=["a", "b"], num_images=4,
                        seed=5)
