"""CocoSource on the real coco128 ground truth (939 boxes, 10 crowd, 71 of 80 categories)."""
from __future__ import annotations

import contextlib
import io
import json
import logging
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest

from nanodet_ghost.data.coco import CocoSource
from nanodet_ghost.data.config import DatasetConfig
from nanodet_ghost.data.sources import build_source
from nanodet_ghost.data.base import DatasetError


@pytest.fixture(scope="module")
def ann_file(coco128_root: Path) -> Path:
    return coco128_root / "annotations" / "instances_train2017.json"


@pytest.fixture(scope="module")
def raw(ann_file: Path) -> dict:
    with open(ann_file) as f:
        return json.load(f)


@pytest.fixture(scope="module")
def source(coco128_root: Path, ann_file: Path) -> CocoSource:
    return CocoSource(str(coco128_root / "train2017"), str(ann_file))


def test_raw_file_counts(raw: dict) -> None:
    anns = raw["annotations"]
    assert len(raw["images"]) == 128
    assert len(anns) == 939
    assert sum(a["iscrowd"] for a in anns) == 10
    assert len({a["category_id"] for a in anns}) == 71


def test_counts(source: CocoSource) -> None:
    assert len(source) == 128
    assert source.num_boxes == 929
    assert source.num_ignore == 10
    assert not source.skipped and not source.fixed
    labels = np.concatenate([source.get_annotation(i)["labels"] for i in range(len(source))])
    assert len(np.unique(labels)) == 71


def test_category_mapping(source: CocoSource, raw: dict) -> None:
    ids = sorted(c["id"] for c in raw["categories"])
    assert source.category_ids == ids
    assert len(source.class_names) == 80 and source.class_names[0] == "person"
    assert max(ids) == 90  # non-contiguous ids, contiguous labels
    name_of = {c["id"]: c["name"] for c in raw["categories"]}
    assert source.class_names == [name_of[i] for i in ids]


def test_annotation_record_format(source: CocoSource, raw: dict) -> None:
    ann = source.get_annotation(0)
    assert set(ann) >= {"image_id", "file_name", "height", "width", "boxes", "labels", "ignore"}
    assert ann["boxes"].dtype == np.float32 and ann["boxes"].shape[1] == 4
    assert ann["labels"].dtype == np.int64 and ann["ignore"].dtype == np.float32
    first = next(a for a in raw["annotations"]
                 if a["image_id"] == ann["image_id"] and not a["iscrowd"])
    x, y, w, h = first["bbox"]
    expected = np.array([x, y, x + w, y + h], dtype=np.float32)
    assert any(np.allclose(b, expected, atol=1e-3) for b in ann["boxes"])
    img = source.load_image(0)
    assert img.dtype == np.uint8 and img.shape == (ann["height"], ann["width"], 3)


def _gt_table(coco: dict) -> dict:
    table = defaultdict(list)
    for a in coco["annotations"]:
        table[a["image_id"]].append((a["category_id"], int(a["iscrowd"]), *a["bbox"]))
    return {k: sorted(v) for k, v in table.items()}


def test_to_coco_round_trip(source: CocoSource, raw: dict) -> None:
    out = source.to_coco()
    assert [(i["id"], i["file_name"], i["height"], i["width"]) for i in out["images"]] == \
        [(i["id"], i["file_name"], i["height"], i["width"]) for i in raw["images"]]
    assert [c["id"] for c in out["categories"]] == sorted(c["id"] for c in raw["categories"])
    got, want = _gt_table(out), _gt_table(raw)
    assert got.keys() == want.keys()
    for image_id in want:
        g, w = np.array(got[image_id]), np.array(want[image_id])
        assert g.shape == w.shape
        assert np.array_equal(g[:, :2], w[:, :2])
        assert np.allclose(g[:, 2:], w[:, 2:], atol=1e-3)
    areas = sorted(a["area"] for a in out["annotations"])
    assert np.allclose(areas, sorted(a["area"] for a in raw["annotations"]))


def test_self_evaluation_gives_ap_one(source: CocoSource) -> None:
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    gt_json = source.to_coco()
    dets = [dict(image_id=a["image_id"], category_id=a["category_id"], bbox=a["bbox"], score=1.0)
            for a in gt_json["annotations"] if not a["iscrowd"]]
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO()
        gt.dataset = gt_json
        gt.createIndex()
        ev = COCOeval(gt, gt.loadRes(dets), "bbox")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    assert ev.stats[0] == pytest.approx(1.0)
    assert ev.stats[1] == pytest.approx(1.0)


def test_class_names_reorder(coco128_root: Path, ann_file: Path, source: CocoSource) -> None:
    names = list(reversed(source.class_names))
    other = CocoSource(str(coco128_root / "train2017"), str(ann_file), class_names=names)
    assert other.class_names == names
    assert other.category_ids == list(reversed(source.category_ids))
    a, b = source.get_annotation(3), other.get_annotation(3)
    assert [source.category_ids[x] for x in a["labels"]] == \
        [other.category_ids[x] for x in b["labels"]]


def test_class_names_mismatch(coco128_root: Path, ann_file: Path) -> None:
    with pytest.raises(DatasetError, match=r"instances_train2017\.json.*do not match"):
        CocoSource(str(coco128_root / "train2017"), str(ann_file), class_names=["person", "cat"])


def test_drop_background(coco128_root: Path, ann_file: Path,
                         caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO):
        src = CocoSource(str(coco128_root / "train2017"), str(ann_file), keep_background=False,
                         name="coco128 train")
    assert len(src) == 126
    assert src.skipped == {"background image": 2}
    lines = [r for r in caplog.records if r.getMessage().startswith("coco128 train:")]
    assert len(lines) == 1 and "skipped 2 background images" in lines[0].getMessage()


def test_build_source(coco128_root: Path, ann_file: Path) -> None:
    cfg = DatasetConfig(format="coco", root=str(coco128_root / "train2017"),
                        ann_file=str(ann_file))
    src = build_source(cfg, [])
    assert isinstance(src, CocoSource) and len(src) == 128
    with pytest.raises(DatasetError, match=r"unknown dataset format 'cocoo'.*coco.*voc.*yolo"):
        build_source(DatasetConfig(format="cocoo", root="x"), [])
