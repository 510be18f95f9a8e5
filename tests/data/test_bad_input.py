"""Bad input: every case gives a clear error naming the file, or a counted, summarised skip."""
from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any, Dict, List, Optional

import cv2
import numpy as np
import pytest

from nanodet_ghost.data.base import DatasetError, ImageReadError
from nanodet_ghost.data.coco import CocoSource
from nanodet_ghost.data.image_io import inspect_image, read_image, read_image_size
from nanodet_ghost.data.voc import VocSource
from nanodet_ghost.data.yolo import YoloSource


def _image(h: int = 48, w: int = 64, c: Optional[int] = 3, dtype: Any = np.uint8) -> np.ndarray:
    shape = (h, w) if c is None else (h, w, c)
    high = 65535 if dtype == np.uint16 else 255
    return np.random.default_rng(1).integers(0, high, shape).astype(dtype)


def _encode(img: np.ndarray, ext: str) -> bytes:
    ok, buf = cv2.imencode(ext, img)
    assert ok
    return buf.tobytes()


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


# ------------------------------------------------------------------ images
def test_corrupt_bytes(tmp_path: Path) -> None:
    path = _write(tmp_path / "noise.jpg", np.random.default_rng(0).bytes(5000))
    with pytest.raises(ImageReadError, match=r"noise\.jpg: cannot decode") as info:
        read_image(str(path))
    assert info.value.path == str(path) and "decode" in info.value.problem


def test_corrupt_jpeg_body(tmp_path: Path) -> None:
    data = _encode(_image(), ".jpg")
    path = _write(tmp_path / "garbled.jpg", data[:200] + b"\x00" * 50)  # header intact, body gone
    with pytest.raises(ImageReadError, match=r"garbled\.jpg"):
        read_image(str(path))


def test_truncated_jpeg(tmp_path: Path) -> None:
    data = _encode(_image(200, 300), ".jpg")
    path = _write(tmp_path / "cut.jpg", data[: len(data) // 2])
    with pytest.raises(ImageReadError, match=r"cut\.jpg: truncated JPEG"):
        read_image(str(path))
    assert read_image_size(str(path)) == (200, 300)  # the header alone is still readable


def test_truncated_png(tmp_path: Path) -> None:
    data = _encode(_image(), ".png")
    path = _write(tmp_path / "cut.png", data[:-30])
    with pytest.raises(ImageReadError, match=r"cut\.png: truncated PNG"):
        read_image(str(path))


def test_jpeg_with_trailing_bytes_is_fine(tmp_path: Path) -> None:
    path = _write(tmp_path / "tail.jpg", _encode(_image(), ".jpg") + b"\x00" * 16)
    assert read_image(str(path)).shape == (48, 64, 3)


def test_png_named_jpg(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    img = _image()
    path = _write(tmp_path / "really_png.jpg", _encode(img, ".png"))
    with caplog.at_level(logging.DEBUG):
        out = read_image(str(path))
        read_image(str(path))
    np.testing.assert_array_equal(out, img)
    assert not caplog.records  # counted by the dataset's summary line, not logged per file
    assert read_image_size(str(path)) == (48, 64)
    info = inspect_image(str(path))
    assert info.extension_mismatch and (info.format, info.extension_format) == ("png", "jpeg")


@pytest.mark.parametrize("ext", [".png", ".jpg"])
def test_grayscale_becomes_bgr(tmp_path: Path, ext: str) -> None:
    path = _write(tmp_path / f"gray{ext}", _encode(_image(c=None), ext))
    out = read_image(str(path))
    assert out.shape == (48, 64, 3) and out.dtype == np.uint8
    assert (out[..., 0] == out[..., 1]).all() and (out[..., 1] == out[..., 2]).all()


def test_rgba_drops_alpha(tmp_path: Path) -> None:
    img = _image(c=4)
    out = read_image(str(_write(tmp_path / "rgba.png", _encode(img, ".png"))))
    np.testing.assert_array_equal(out, img[..., :3])


def test_16bit_scaled_to_8bit(tmp_path: Path) -> None:
    img = _image(dtype=np.uint16)
    out = read_image(str(_write(tmp_path / "deep.png", _encode(img, ".png"))))
    assert out.dtype == np.uint8
    np.testing.assert_array_equal(out, (img >> 8).astype(np.uint8))


def test_missing_and_empty_files(tmp_path: Path) -> None:
    with pytest.raises(ImageReadError, match=r"nothere\.jpg: file not found"):
        read_image(str(tmp_path / "nothere.jpg"))
    with pytest.raises(ImageReadError, match=r"empty\.jpg: empty file"):
        read_image(str(_write(tmp_path / "empty.jpg", b"")))
    with pytest.raises(ImageReadError, match=r"nothere\.jpg: file not found"):
        read_image_size(str(tmp_path / "nothere.jpg"))


# ------------------------------------------------------------------ coco json
def _coco(tmp_path: Path, images: List[Dict[str, Any]], anns: List[Dict[str, Any]],
          write_images: bool = True) -> Path:
    """A COCO json in tmp_path/ann.json; images are 64x48 jpgs in tmp_path/img/."""
    (tmp_path / "img").mkdir(exist_ok=True)
    for im in images:
        im.setdefault("width", 64)
        im.setdefault("height", 48)
        if write_images:
            cv2.imwrite(str(tmp_path / "img" / im["file_name"]), _image())
    for i, a in enumerate(anns):
        a.setdefault("id", i + 1)
        a.setdefault("category_id", 3)
        a.setdefault("iscrowd", 0)
    data = dict(images=images, annotations=anns, categories=[dict(id=3, name="car")])
    path = tmp_path / "ann.json"
    path.write_text(json.dumps(data))
    return path


def test_coco_missing_image_is_counted(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    ann = _coco(tmp_path, [dict(id=1, file_name="a.jpg")],
                [dict(image_id=1, bbox=[1, 1, 5, 5]), dict(image_id=2, bbox=[1, 1, 5, 5])])
    data = json.loads(ann.read_text())
    data["images"].append(dict(id=2, file_name="gone.jpg", width=64, height=48))
    ann.write_text(json.dumps(data))
    with caplog.at_level(logging.INFO):
        src = CocoSource(str(tmp_path / "img"), str(ann), name="mini")
    assert len(src) == 1 and src.skipped == {"missing image": 1}
    lines = [r for r in caplog.records if r.message.startswith("mini:")]
    assert len(lines) == 1 and lines[0].levelno == logging.WARNING
    assert lines[0].message == ("mini: 1 images, 1 boxes, 0 ignore regions; "
                                "skipped 1 missing image (gone.jpg); layout: COCO ann.json + img/")


def test_coco_corrupt_image_raises_on_load(tmp_path: Path) -> None:
    ann = _coco(tmp_path, [dict(id=1, file_name="a.jpg")], [dict(image_id=1, bbox=[1, 1, 5, 5])])
    (tmp_path / "img" / "a.jpg").write_bytes(b"\xff\xd8\xff\xe0not really a jpeg")
    src = CocoSource(str(tmp_path / "img"), str(ann))
    with pytest.raises(ImageReadError, match=r"a\.jpg"):
        src.load_image(0)


def test_coco_zero_and_negative_boxes(tmp_path: Path) -> None:
    ann = _coco(tmp_path, [dict(id=1, file_name="a.jpg")], [
        dict(image_id=1, bbox=[1, 1, 0, 5]), dict(image_id=1, bbox=[1, 1, 5, -2]),
        dict(image_id=1, bbox=[1, 1, 5, 5]), dict(image_id=1, bbox=[3, 3, 0, 0], iscrowd=1)])
    src = CocoSource(str(tmp_path / "img"), str(ann))
    assert src.skipped == {"zero-size box": 2, "zero-size ignore region": 1}
    assert src.num_boxes == 1 and src.num_ignore == 0
    assert "skipped 2 zero-size boxes (a.jpg)" in src.summary()


def test_coco_boxes_outside_image(tmp_path: Path) -> None:
    ann = _coco(tmp_path, [dict(id=1, file_name="a.jpg")], [
        dict(image_id=1, bbox=[-5, 40, 20, 20]),  # partly outside -> clipped
        dict(image_id=1, bbox=[70, 10, 5, 5]),  # wholly right of the image -> dropped
        dict(image_id=1, bbox=[10, -30, 5, 10])])  # wholly above -> dropped
    src = CocoSource(str(tmp_path / "img"), str(ann))
    np.testing.assert_array_equal(src.get_annotation(0)["boxes"], [[0, 40, 15, 48]])
    assert src.skipped == {"box outside the image": 2}
    assert src.fixed == {"clipped box": 1}


def test_coco_bad_json(tmp_path: Path) -> None:
    path = tmp_path / "broken.json"
    path.write_text('{"images": [\n  {"id": 1,}\n]}')
    with pytest.raises(DatasetError, match=r"broken\.json: invalid JSON at line 2, column 12") as e:
        CocoSource(str(tmp_path), str(path))
    assert e.value.__cause__ is None and e.value.__suppress_context__  # no chained traceback


def test_coco_unknown_category_and_bad_bbox(tmp_path: Path) -> None:
    ann = _coco(tmp_path, [dict(id=1, file_name="a.jpg")], [dict(image_id=1, bbox=[1, 1, 5, 5],
                                                                  category_id=7)])
    with pytest.raises(DatasetError, match=r"ann\.json: annotations\[0\].*category_id 7"):
        CocoSource(str(tmp_path / "img"), str(ann))
    ann = _coco(tmp_path, [dict(id=1, file_name="a.jpg")], [dict(image_id=1, bbox=[1, 1, 5])])
    with pytest.raises(DatasetError, match=r"ann\.json: annotations\[0\].*bbox must be"):
        CocoSource(str(tmp_path / "img"), str(ann))


# ------------------------------------------------------------------ voc xml
def _voc_xml(objects: str) -> str:
    return ("<annotation><filename>a.jpg</filename><size><width>64</width><height>48</height>"
            f"</size>{objects}</annotation>")


def _voc_obj(name: str, x1: float, y1: float, x2: float, y2: float) -> str:
    return (f"<object><name>{name}</name><difficult>0</difficult><bndbox><xmin>{x1}</xmin>"
            f"<ymin>{y1}</ymin><xmax>{x2}</xmax><ymax>{y2}</ymax></bndbox></object>")


def _voc(tmp_path: Path, xml: str) -> Path:
    cv2.imwrite(str(tmp_path / "a.jpg"), _image())
    (tmp_path / "a.xml").write_text(xml)
    return tmp_path


def test_voc_bad_xml(tmp_path: Path) -> None:
    _voc(tmp_path, "<annotation>\n  <object><name>cat</name>\n</annotation>")
    with pytest.raises(DatasetError, match=r"a\.xml: invalid XML at line 3, column \d+"):
        VocSource(str(tmp_path), ["cat"])


def test_voc_unknown_class(tmp_path: Path) -> None:
    _voc(tmp_path, _voc_xml(_voc_obj("cat", 1, 1, 9, 9) + _voc_obj("zebra", 1, 1, 9, 9)))
    with pytest.raises(DatasetError,
                       match=r"a\.xml: object 1 has class 'zebra'.*\['cat', 'dog'\]"):
        VocSource(str(tmp_path), ["cat", "dog"])


def test_voc_dirty_boxes(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    _voc(tmp_path, _voc_xml(
        _voc_obj("cat", 5, 5, 5, 9)  # zero width
        + _voc_obj("cat", 9, 9, 4, 20)  # negative width
        + _voc_obj("cat", 50, 40, 80, 60)  # partly outside
        + _voc_obj("cat", 100, 100, 120, 120)  # wholly outside
        + _voc_obj("cat", 1, 1, 9, 9)))
    with caplog.at_level(logging.INFO):
        src = VocSource(str(tmp_path), ["cat"], name="dirty")
    np.testing.assert_array_equal(src.get_annotation(0)["boxes"], [[50, 40, 64, 48], [1, 1, 9, 9]])
    assert src.skipped == {"zero-size box": 2, "box outside the image": 1}
    assert src.fixed == {"clipped box": 1}
    lines = [r.message for r in caplog.records if r.message.startswith("dirty:")]
    assert lines == ["dirty: 1 images, 2 boxes, 0 ignore regions; skipped 1 box outside the image "
                     "(a.xml), 2 zero-size boxes (a.xml); repaired 1 clipped box (a.xml); "
                     "layout: VOC flat folder (xml beside the images)"]


def test_voc_non_numeric_box(tmp_path: Path) -> None:
    _voc(tmp_path, _voc_xml(_voc_obj("cat", "one", 1, 9, 9)))
    with pytest.raises(DatasetError, match=r"a\.xml: object 0 \('cat'\) has a non-numeric box"):
        VocSource(str(tmp_path), ["cat"])


def test_voc_unreadable_image_skipped(tmp_path: Path) -> None:
    _voc(tmp_path, _voc_xml(_voc_obj("cat", 1, 1, 9, 9)))
    cv2.imwrite(str(tmp_path / "b.jpg"), _image())
    (tmp_path / "b.xml").write_text(_voc_xml(_voc_obj("cat", 1, 1, 9, 9)).replace("a.jpg", "b.jpg"))
    (tmp_path / "a.jpg").write_bytes(b"garbage")
    src = VocSource(str(tmp_path), ["cat"])
    assert len(src) == 1 and src.skipped == {"unreadable image": 1}
    assert "skipped 1 unreadable image (a.jpg)" in src.summary()


def test_source_left_without_images_is_an_error(tmp_path: Path) -> None:
    _voc(tmp_path, _voc_xml(_voc_obj("cat", 1, 1, 9, 9)))
    (tmp_path / "a.jpg").write_bytes(b"garbage")
    with pytest.raises(DatasetError, match=r"^sole: no usable image is left \(sole: 0 images.*"
                                           r"skipped 1 unreadable image \(a\.jpg\)"):
        VocSource(str(tmp_path), ["cat"], name="sole")


# ------------------------------------------------------------------ yolo txt
def _yolo(tmp_path: Path, text: str) -> Path:
    (tmp_path / "images").mkdir()
    (tmp_path / "labels").mkdir()
    cv2.imwrite(str(tmp_path / "images" / "a.jpg"), _image())
    (tmp_path / "labels" / "a.txt").write_text(text)
    return tmp_path


@pytest.mark.parametrize("text, message", [
    ("0 0.5 0.5 0.2 0.2\n0 0.5 0.5 0.2\n", r"a\.txt:2: expected 5 fields"),
    ("0 0.5 0.5 0.2 0.2 0.1 0.1\n", r"a\.txt:1: expected 5 fields"),
    ("\n0 0.5 1.5 0.2 0.2\n", r"a\.txt:2: values must be normalised to \[0, 1\]"),
    ("0 0.5 0.5 -0.2 0.2\n", r"a\.txt:1: values must be normalised"),
    ("0 0.5 nan 0.2 0.2\n", r"a\.txt:1: values must be normalised"),
    ("0 0.5 0.5 abc 0.2\n", r"a\.txt:1: non-numeric value"),
    ("2 0.5 0.5 0.2 0.2\n", r"a\.txt:1: class 2 is not an integer in \[0, 1\]"),
    ("0.5 0.5 0.5 0.2 0.2\n", r"a\.txt:1: class 0.5 is not an integer"),
])
def test_yolo_bad_lines(tmp_path: Path, text: str, message: str) -> None:
    _yolo(tmp_path, text)
    with pytest.raises(DatasetError, match=message):
        YoloSource(str(tmp_path), ["cat", "dog"])


def test_yolo_zero_size_box(tmp_path: Path) -> None:
    _yolo(tmp_path, "0 0.5 0.5 0 0.2\n1 0.5 0.5 0.2 0.2\n")
    src = YoloSource(str(tmp_path), ["cat", "dog"])
    assert src.skipped == {"zero-size box": 1} and src.num_boxes == 1
    assert "zero-size box (labels/a.txt)" in src.summary()
