"""Flat records: the same annotations and samples as one record per image, held in a fixed number
of Python objects whatever the number of images."""
from __future__ import annotations

import gc
import json
import pickle
import types
from pathlib import Path

import numpy as np
import pytest

from nanodet_ghost.data.coco import CocoSource
from nanodet_ghost.data.loader import DetectionDataset
from nanodet_ghost.data.pipeline import TrainPipeline
from nanodet_ghost.data.records import ImageRecord, RecordBuilder, RecordTable

from label_cache_helpers import age, write_coco


def _record(rng: np.random.Generator, i: int, n: int, m: int) -> ImageRecord:
    return ImageRecord(
        image_id=100 + i, file_name=f"d/\u00e9t\u00e9_{i}\udcff.jpg", path=f"/x/d/{i}.jpg",
        height=10 + i, width=20 + i,
        boxes=rng.uniform(0, 9, (n, 4)).astype(np.float32),
        labels=rng.integers(0, 5, n).astype(np.int64), areas=rng.uniform(0, 9, n),
        ignore=rng.uniform(0, 9, (m, 4)).astype(np.float32),
        ignore_labels=rng.integers(0, 5, m).astype(np.int64), ignore_areas=rng.uniform(0, 9, m))


def test_table_rows_equal_the_records() -> None:
    rng = np.random.default_rng(0)
    records = [_record(rng, i, n, m) for i, (n, m) in enumerate([(3, 0), (0, 0), (1, 2), (0, 1)])]
    builder = RecordBuilder()
    for r in records:
        builder.append(r)
    assert builder.num_boxes == 4 and builder.num_ignore == 3
    table = builder.build()
    assert len(table) == 4 and table.num_boxes == 4 and table.num_ignore == 3
    for want, got in zip(records, table):
        for field in ImageRecord.__dataclass_fields__:
            a, b = getattr(want, field), getattr(got, field)
            if isinstance(a, np.ndarray):
                assert a.dtype == b.dtype and a.shape == b.shape
                np.testing.assert_array_equal(a, b)
            else:
                assert a == b and type(a) is type(b)
    assert len(RecordBuilder().build()) == 0
    rebuilt = RecordTable(table.arrays())  # what the label cache does
    assert rebuilt[2].file_name == records[2].file_name


def test_tables_that_do_not_fit_are_refused() -> None:
    builder = RecordBuilder()
    builder.append(_record(np.random.default_rng(1), 0, 2, 1))
    arrays = builder.build().arrays()
    with pytest.raises(ValueError, match="labels has 1 rows"):
        RecordTable(dict(arrays, labels=arrays["labels"][:1]))
    with pytest.raises(ValueError, match="boxes: float64"):
        RecordTable(dict(arrays, boxes=arrays["boxes"].astype(np.float64)))


def test_source_annotations_match_the_json(tmp_path: Path) -> None:
    paths = write_coco(tmp_path / "ds", num_images=4)
    source = CocoSource(str(paths["img_dir"]), str(paths["ann_file"]))
    raw = json.loads(paths["ann_file"].read_text())
    assert source.to_coco()["annotations"] == [
        dict(id=k + 1, image_id=a["image_id"], category_id=a["category_id"], bbox=a["bbox"],
             area=a["bbox"][2] * a["bbox"][3], iscrowd=a["iscrowd"])
        for k, a in enumerate(sorted(raw["annotations"], key=lambda a: (a["image_id"], a["iscrowd"])))]
    ann = source.get_annotation(0)
    assert ann["boxes"].shape == (1, 4) and ann["ignore"].shape == (1, 4)
    assert ann["boxes"].dtype == np.float32 and ann["labels"].dtype == np.int64
    assert ann["file_name"] == "sub/img0.jpg" and ann["image_id"] == 10
    ann["boxes"][:] = -1  # a copy: the source keeps its boxes
    np.testing.assert_array_equal(source.get_annotation(0)["boxes"], [[2, 3, 22, 13]])
    assert source.image_path(3) == str(paths["img_dir"] / "sub" / "img3.jpg")
    assert len(source.records) == 4 and source.records.num_boxes == source.num_boxes == 7


def test_cached_and_pickled_sources_give_the_same_samples(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("NANODET_GHOST_CACHE", str(tmp_path / "user_cache"))
    paths = write_coco(tmp_path / "ds", num_images=4)
    age(tmp_path / "ds")
    args = (str(paths["img_dir"]), str(paths["ann_file"]))
    fresh = CocoSource(*args, cache_labels=True)
    cached = CocoSource(*args, cache_labels=True)
    assert cached.label_cache  # read from the cache, not from the json
    pickled = pickle.loads(pickle.dumps(fresh))  # as a spawned DataLoader worker gets it
    samples = []
    for source in (fresh, cached, pickled):
        pipeline = TrainPipeline(input_size=[64, 64], mosaic=0.5)
        dataset = DetectionDataset(source, pipeline, seed=7)
        samples.append([dataset[i] for i in (0, 1, 2, 3, 0)])
    for other in samples[1:]:
        for a, b in zip(samples[0], other):
            assert a.keys() == b.keys()
            np.testing.assert_array_equal(a["img"], b["img"])
            np.testing.assert_array_equal(a["gt_boxes"], b["gt_boxes"])
            np.testing.assert_array_equal(a["gt_labels"], b["gt_labels"])


def _python_objects(root: object) -> int:
    """Python containers and strings reachable from `root` (numpy arrays count as one each;
    modules, classes and functions are not followed)."""
    seen, stack = set(), [root]
    while stack:
        obj = stack.pop()
        if id(obj) in seen or isinstance(obj, (type, types.ModuleType, types.FunctionType)):
            continue
        seen.add(id(obj))
        if not isinstance(obj, np.ndarray):
            stack.extend(gc.get_referents(obj))
    return len(seen)


def test_object_count_does_not_grow_with_images(tmp_path: Path) -> None:
    counts = []
    for n in (3, 40):
        paths = write_coco(tmp_path / f"ds{n}", num_images=n)
        counts.append(_python_objects(CocoSource(str(paths["img_dir"]), str(paths["ann_file"]))))
    assert counts[0] == counts[1]
