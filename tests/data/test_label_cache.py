"""Label cache: reused while nothing changed, rebuilt when an annotation, an image or a folder
changes, when the file is damaged (with a warning), written to the user cache folder when the
annotations' folder is read-only; `data.cache_labels` switches it."""
from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Dict, List

import numpy as np
import pytest
from omegaconf import OmegaConf

import nanodet_ghost.data.label_cache as label_cache
from nanodet_ghost.config import load_config
from nanodet_ghost.data.coco import CocoSource
from nanodet_ghost.data.loader import build_dataset
from nanodet_ghost.data.voc import VocSource
from nanodet_ghost.data.yolo import YoloSource

from label_cache_helpers import CLASSES, age, cache_files, coco_dict, write_coco, write_jpeg


@pytest.fixture()
def reads(monkeypatch) -> Dict[str, int]:
    """How often each source class read its annotations (rather than the cache)."""
    counts: Dict[str, int] = {}
    for cls in (CocoSource, VocSource, YoloSource):
        original = cls._read

        def counted(self, *args, _original=original, _name=cls.__name__):
            counts[_name] = counts.get(_name, 0) + 1
            return _original(self, *args)

        monkeypatch.setattr(cls, "_read", counted)
    return counts


@pytest.fixture(autouse=True)
def user_cache(tmp_path: Path, monkeypatch) -> Path:
    """The user cache folder, inside the test's folder."""
    folder = tmp_path / "user_cache"
    monkeypatch.setenv("NANODET_GHOST_CACHE", str(folder))
    return folder


def _coco(paths: Dict[str, Path], **kwargs) -> CocoSource:
    return CocoSource(str(paths["img_dir"]), str(paths["ann_file"]), cache_labels=True, **kwargs)


def _same(a, b) -> None:
    assert len(a) == len(b) and a.summary() == b.summary()
    assert a.class_names == b.class_names and a.category_ids == b.category_ids
    for i in range(len(a)):
        x, y = a.get_annotation(i), b.get_annotation(i)
        assert x.keys() == y.keys()
        for key in x:
            np.testing.assert_array_equal(x[key], y[key])
        assert a.image_path(i) == b.image_path(i)
    assert a.to_coco() == b.to_coco()


def test_second_build_reads_the_cache(tmp_path: Path, reads, caplog) -> None:
    paths = write_coco(tmp_path / "ds", num_images=4, missing=1)
    age(tmp_path / "ds")
    first = _coco(paths)
    assert first.label_cache is not None and reads == {"CocoSource": 1}
    assert Path(first.label_cache).parent == paths["ann_file"].parent / ".nanodet_cache"
    assert os.stat(first.label_cache).st_mode & 0o444 == 0o444  # others may read it
    caplog.set_level(logging.INFO)
    second = _coco(paths)
    assert reads == {"CocoSource": 1} and second.label_cache == first.label_cache
    assert "labels read from the cache" in caplog.text
    assert second.skipped["missing image"] == 1  # the counts come back with the records
    _same(first, second)
    assert "1 missing image" in caplog.text  # the summary line is logged again
    plain = CocoSource(str(paths["img_dir"]), str(paths["ann_file"]))
    assert plain.label_cache is None and reads == {"CocoSource": 2}
    _same(first, plain)


def test_edit_add_image_and_touch_are_seen(tmp_path: Path, reads) -> None:
    paths = write_coco(tmp_path / "ds", num_images=3, missing=1)
    age(tmp_path / "ds")
    assert len(_coco(paths)) == 2
    # an edited annotation file
    data = coco_dict(3)
    del data["annotations"][3]  # the second box of image 1
    paths["ann_file"].write_text(json.dumps(data))
    age(tmp_path / "ds")
    source = _coco(paths)
    assert reads["CocoSource"] == 2 and source.num_boxes + source.num_ignore == 3
    # the missing image appears (its folder changes)
    write_jpeg(paths["img_dir"] / "sub" / "img2.jpg")
    age(tmp_path / "ds", seconds=30)
    source = _coco(paths)
    assert reads["CocoSource"] == 3 and len(source) == 3 and not source.skipped
    assert _coco(paths).label_cache and reads["CocoSource"] == 3
    # a touched folder
    os.utime(paths["img_dir"], None)
    _coco(paths)
    assert reads["CocoSource"] == 4


def test_arguments_pick_their_own_cache(tmp_path: Path, reads) -> None:
    paths = write_coco(tmp_path / "ds", num_images=2)
    age(tmp_path / "ds")
    _coco(paths)
    reordered = _coco(paths, class_names=CLASSES[::-1])
    assert reads["CocoSource"] == 2 and reordered.class_names == CLASSES[::-1]
    assert len(cache_files(tmp_path / "ds")) == 2
    assert _coco(paths).class_names == CLASSES and reads["CocoSource"] == 2


def test_corrupt_cache_is_rebuilt_with_a_warning(tmp_path: Path, reads, caplog) -> None:
    paths = write_coco(tmp_path / "ds", num_images=3)
    age(tmp_path / "ds")
    good = _coco(paths)
    cache = Path(good.label_cache)
    for damage in (b"not a zip file", cache.read_bytes()[:300]):
        cache.write_bytes(damage)
        caplog.clear()
        with caplog.at_level(logging.WARNING):
            rebuilt = _coco(paths)
        assert "is unreadable" in caplog.text and str(cache) in caplog.text
        _same(good, rebuilt)
        assert rebuilt.label_cache == str(cache)
    assert reads["CocoSource"] == 3
    _same(good, _coco(paths))
    assert reads["CocoSource"] == 3  # the rewritten file is read


def test_records_that_do_not_fit_count_as_corrupt(tmp_path: Path, reads, caplog) -> None:
    paths = write_coco(tmp_path / "ds", num_images=3)
    age(tmp_path / "ds")
    cache = Path(_coco(paths).label_cache)
    with np.load(cache, allow_pickle=False) as npz:
        arrays = {k: npz[k] for k in npz.files}
    arrays["box_offsets"] = arrays["box_offsets"][::-1].copy()
    with open(cache, "wb") as f:
        np.savez(f, **arrays)
    with caplog.at_level(logging.WARNING):
        _coco(paths)
    assert "box_offsets" in caplog.text and reads["CocoSource"] == 2


def test_read_only_folder_uses_the_user_cache(tmp_path: Path, reads, user_cache: Path) -> None:
    paths = write_coco(tmp_path / "ds", num_images=2)
    folder = paths["ann_file"].parent
    age(tmp_path / "ds")
    folder.chmod(0o555)  # no write bit: left alone also by root, who could write there
    try:
        first = _coco(paths)
        second = _coco(paths)
    finally:
        folder.chmod(0o755)
    assert not (folder / ".nanodet_cache").exists()
    assert Path(first.label_cache).parent == user_cache / "labels"
    assert second.label_cache == first.label_cache and reads["CocoSource"] == 1


def test_fresh_files_are_not_cached(tmp_path: Path, reads, monkeypatch) -> None:
    paths = write_coco(tmp_path / "ds", num_images=2)
    monkeypatch.setattr(label_cache, "_RACY_S", 3600.0)
    assert _coco(paths).label_cache is None
    assert not cache_files(tmp_path / "ds")


def test_failed_build_leaves_no_cache_folder(tmp_path: Path) -> None:
    paths = write_coco(tmp_path / "ds", num_images=2)
    paths["ann_file"].write_text("{not json")
    with pytest.raises(ValueError, match="invalid JSON"):
        _coco(paths)
    assert not (paths["ann_file"].parent / ".nanodet_cache").exists()


def _voc(root: Path) -> None:
    for i in range(2):
        write_jpeg(root / "JPEGImages" / f"a{i}.jpg", seed=i)
        (root / "Annotations").mkdir(parents=True, exist_ok=True)
        (root / "Annotations" / f"a{i}.xml").write_text(
            "<annotation><object><name>cat</name><bndbox><xmin>1</xmin><ymin>2</ymin>"
            f"<xmax>{20 + i}</xmax><ymax>30</ymax></bndbox></object></annotation>")


def test_voc_xml_edited_in_place_is_seen(tmp_path: Path, reads) -> None:
    _voc(tmp_path / "voc")
    age(tmp_path / "voc")
    first = VocSource(str(tmp_path / "voc"), CLASSES, cache_labels=True)
    assert first.label_cache and VocSource(str(tmp_path / "voc"), CLASSES,
                                           cache_labels=True).label_cache
    assert reads["VocSource"] == 1
    folder = tmp_path / "voc" / "Annotations"
    before = os.stat(folder).st_mtime_ns
    xml = folder / "a1.xml"
    xml.write_text(xml.read_text().replace("<xmax>21</xmax>", "<xmax>40</xmax>"))  # same size
    assert os.stat(folder).st_mtime_ns == before  # only the file itself tells
    source = VocSource(str(tmp_path / "voc"), CLASSES, cache_labels=True)
    assert reads["VocSource"] == 2 and source.get_annotation(1)["boxes"][0, 2] == 40


def test_yolo_label_file_added_is_seen(tmp_path: Path, reads) -> None:
    root = tmp_path / "yolo"
    for i in range(2):
        write_jpeg(root / "images" / f"b{i}.jpg", seed=i)
    (root / "labels").mkdir()
    (root / "labels" / "b0.txt").write_text("0 0.5 0.5 0.2 0.2\n")
    age(root)
    first = YoloSource(str(root), CLASSES, cache_labels=True)
    assert first.missing_labels == 1 and first.num_boxes == 1
    again = YoloSource(str(root), CLASSES, cache_labels=True)
    assert reads["YoloSource"] == 1 and again.missing_labels == 1
    (root / "labels" / "b1.txt").write_text("1 0.5 0.5 0.4 0.4\n")
    source = YoloSource(str(root), CLASSES, cache_labels=True)
    assert reads["YoloSource"] == 2 and source.num_boxes == 2 and source.missing_labels == 0


def _config(tmp_path: Path, paths: Dict[str, Path], extra: List[str]) -> object:
    cfg = dict(model=dict(head=dict(num_classes=2)), data=dict(
        class_names=CLASSES,
        train=dict(format="coco", root=str(paths["img_dir"]), ann_file=str(paths["ann_file"])),
        val=dict(format="coco", root=str(paths["img_dir"]), ann_file=str(paths["ann_file"]))))
    path = tmp_path / "cfg.yaml"
    path.write_text(OmegaConf.to_yaml(OmegaConf.create(cfg)))
    return load_config(path, extra)


def test_config_key_switches_the_cache(tmp_path: Path, reads) -> None:
    paths = write_coco(tmp_path / "ds", num_images=2)
    age(tmp_path / "ds")
    off = _config(tmp_path, paths, ["data.cache_labels=false"])
    assert build_dataset(off.data, "train").source.label_cache is None
    assert not cache_files(tmp_path / "ds")
    on = _config(tmp_path, paths, [])
    assert on.data.cache_labels is True  # the default
    assert build_dataset(on.data, "train").source.label_cache
    assert build_dataset(on.data, "val").source.label_cache and reads["CocoSource"] == 2
    with pytest.raises(Exception, match="cache_labels"):
        _config(tmp_path, paths, ["data.cache_labels=sometimes"])


def test_user_cache_folder_follows_the_environment(tmp_path: Path, monkeypatch) -> None:
    from nanodet_ghost.paths import default_cache_dir

    assert default_cache_dir() == tmp_path / "user_cache"  # $NANODET_GHOST_CACHE first
    monkeypatch.delenv("NANODET_GHOST_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_cache_dir() == tmp_path / "xdg" / "nanodet_ghost"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert default_cache_dir() == Path.home() / ".cache" / "nanodet_ghost"
