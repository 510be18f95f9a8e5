"""Images as they are found in the wild: EXIF orientation, JPEGs without an end marker, files cut
mid-scan, PNGs named .jpg; repairs are counted in one summary line per dataset."""
from __future__ import annotations

import json
import logging
import struct
from pathlib import Path

import cv2
import numpy as np
import pytest

from nanodet_ghost.data.coco import CocoSource
from nanodet_ghost.data.image_io import (
    ImageReadError,
    inspect_image,
    read_image,
    read_image_size,
)
from nanodet_ghost.data.voc import VocSource


def _photo(h: int = 120, w: int = 160) -> np.ndarray:
    """Smooth noise: compresses like a photo, so a cut lands inside real entropy-coded data."""
    noise = np.random.default_rng(0).integers(0, 255, (h, w, 3), dtype=np.uint8)
    return cv2.GaussianBlur(noise, (7, 7), 0)


def _jpeg(img: np.ndarray, progressive: bool = False, quality: int = 95) -> bytes:
    ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, quality,
                                         cv2.IMWRITE_JPEG_PROGRESSIVE, int(progressive)])
    assert ok
    return buf.tobytes()


def _exif_segment(orientation: int, byte_order: bytes) -> bytes:
    """An APP1 segment holding a TIFF header and IFD0 with one entry: Orientation (0x0112)."""
    e = "<" if byte_order == b"II" else ">"
    tiff = byte_order + struct.pack(e + "HI", 42, 8)
    entry = struct.pack(e + "HHIH", 0x0112, 3, 1, orientation) + b"\x00\x00"
    payload = b"Exif\x00\x00" + tiff + struct.pack(e + "H", 1) + entry + struct.pack(e + "I", 0)
    return b"\xff\xe1" + struct.pack(">H", len(payload) + 2) + payload


def _with_exif(jpeg: bytes, orientation: int, byte_order: bytes = b"MM") -> bytes:
    return jpeg[:2] + _exif_segment(orientation, byte_order) + jpeg[2:]


# ------------------------------------------------------------------ EXIF orientation
@pytest.mark.parametrize("orientation, turn", [(1, 0), (3, 2), (6, -1), (8, 1)])
@pytest.mark.parametrize("byte_order", [b"MM", b"II"])
def test_exif_orientation_applied(tmp_path: Path, orientation: int, turn: int,
                                  byte_order: bytes) -> None:
    img = np.zeros((40, 60, 3), np.uint8)
    img[:10, :20] = (0, 0, 255)  # red block top-left marks the stored orientation
    img[30:, 50:] = (255, 0, 0)
    plain = _jpeg(img, quality=100)
    stored = cv2.imdecode(np.frombuffer(plain, np.uint8), cv2.IMREAD_COLOR)
    path = tmp_path / f"o{orientation}.jpg"
    path.write_bytes(_with_exif(plain, orientation, byte_order))

    out = read_image(str(path))
    expected = np.rot90(stored, turn)  # k=-1: the photo turned 90 degrees clockwise
    np.testing.assert_array_equal(out, expected)
    np.testing.assert_array_equal(out, cv2.imread(str(path)))  # what NanoDet / ultralytics see
    assert read_image_size(str(path)) == expected.shape[:2]
    info = inspect_image(str(path))
    assert (info.height, info.width, info.orientation) == (*expected.shape[:2], orientation)


def test_yolo_boxes_use_the_oriented_size(tmp_path: Path) -> None:
    from nanodet_ghost.data.yolo import YoloSource

    (tmp_path / "images").mkdir()
    (tmp_path / "labels").mkdir()
    (tmp_path / "images" / "a.jpg").write_bytes(_with_exif(_jpeg(_photo(40, 60)), 6))
    (tmp_path / "labels" / "a.txt").write_text("0 0.5 0.5 0.5 0.5\n")
    src = YoloSource(str(tmp_path), ["cat"])
    ann = src.get_annotation(0)
    assert (ann["height"], ann["width"]) == (60, 40)  # shown upright: width and height swap
    np.testing.assert_allclose(ann["boxes"], [[10, 15, 30, 45]])
    assert src.load_image(0).shape == (60, 40, 3)


# ------------------------------------------------------------------ JPEG end marker
@pytest.mark.parametrize("progressive", [False, True])
def test_jpeg_missing_only_eoi_is_used(tmp_path: Path, progressive: bool) -> None:
    data = _jpeg(_photo(), progressive)
    assert data.endswith(b"\xff\xd9")
    whole = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    path = tmp_path / "no_eoi.jpg"
    path.write_bytes(data[:-2])
    np.testing.assert_array_equal(read_image(str(path)), whole)
    info = inspect_image(str(path))
    assert info.missing_eoi and info.problem is None


@pytest.mark.parametrize("progressive", [False, True])
@pytest.mark.parametrize("cut", [3, 4, 100, "half"])
def test_jpeg_cut_mid_scan_is_rejected(tmp_path: Path, progressive: bool, cut) -> None:
    # with no missing part allowed; tests/data/test_partial_jpeg.py has the default limit
    data = _jpeg(_photo(), progressive)
    keep = len(data) // 2 if cut == "half" else len(data) - cut
    path = tmp_path / "cut.jpg"
    path.write_bytes(data[:keep])
    with pytest.raises(ImageReadError, match=r"cut\.jpg: truncated JPEG"):
        read_image(str(path), max_missing_fraction=0.0)
    info = inspect_image(str(path), max_missing_fraction=0.0)
    assert not info.missing_eoi and info.problem and "truncated JPEG" in info.problem
    assert read_image_size(str(path)) == (120, 160)  # the header alone is still readable


def test_jpeg_with_trailing_data_after_eoi(tmp_path: Path) -> None:
    data = _jpeg(_photo())
    path = tmp_path / "trailer.jpg"
    path.write_bytes(data + b"\x00" * 5000 + b"\xff\xda junk")  # e.g. a maker trailer
    assert read_image(str(path)).shape == (120, 160, 3)
    assert not inspect_image(str(path)).missing_eoi


# ------------------------------------------------------------------ one summary line
def _voc_xml(path: Path, filename: str, w: int, h: int) -> None:
    path.write_text(f"<annotation><filename>{filename}</filename><size><width>{w}</width>"
                    f"<height>{h}</height></size><object><name>cat</name><bndbox><xmin>1</xmin>"
                    "<ymin>1</ymin><xmax>20</xmax><ymax>20</ymax></bndbox></object></annotation>")


def test_repairs_counted_in_one_summary_line(tmp_path: Path,
                                             caplog: pytest.LogCaptureFixture) -> None:
    photo = _photo()
    (tmp_path / "a_no_eoi.jpg").write_bytes(_jpeg(photo)[:-2])
    ok, png = cv2.imencode(".png", photo)
    (tmp_path / "b_png.jpg").write_bytes(png.tobytes())
    data = _jpeg(photo)
    (tmp_path / "c_cut.jpg").write_bytes(data[:len(data) // 2])
    (tmp_path / "d_fine.JPG").write_bytes(data)
    for stem in ("a_no_eoi", "b_png", "c_cut", "d_fine"):
        _voc_xml(tmp_path / f"{stem}.xml", f"{stem}.jpg", 160, 120)
    with caplog.at_level(logging.DEBUG, logger="nanodet_ghost"):
        src = VocSource(str(tmp_path), ["cat"], name="wild")
        records = [r for r in caplog.records]
        for _ in range(2):  # two "epochs": no per-file log lines at load time
            for i in range(len(src)):
                try:
                    src.load_image(i)
                except ImageReadError as e:
                    assert "c_cut.jpg" in str(e)
    assert len(src) == 4
    assert [r for r in caplog.records if r not in records] == []
    lines = [r for r in records if r.getMessage().startswith("wild:")]
    assert len(lines) == 1 and lines[0].levelno == logging.WARNING
    assert lines[0].getMessage() == (
        "wild: 4 images, 4 boxes, 0 ignore regions; repaired 1 JPEG file without an "
        "end-of-image marker (a_no_eoi.jpg), 1 PNG file with a .jpg extension (b_png.jpg); "
        "found 1 JPEG file that will not decode (c_cut.jpg); "
        "layout: VOC flat folder (xml beside the images)")


def test_many_pngs_named_jpg_give_one_line(tmp_path: Path,
                                           caplog: pytest.LogCaptureFixture) -> None:
    (tmp_path / "img").mkdir()
    ok, png = cv2.imencode(".png", _photo(48, 64))
    images = []
    for i in range(29):
        (tmp_path / "img" / f"f{i:02d}.jpg").write_bytes(png.tobytes())
        images.append(dict(id=i + 1, file_name=f"f{i:02d}.jpg", width=64, height=48))
    ann = tmp_path / "ann.json"
    ann.write_text(json.dumps(dict(images=images, annotations=[],
                                   categories=[dict(id=1, name="cat")])))
    with caplog.at_level(logging.DEBUG, logger="nanodet_ghost"):
        src = CocoSource(str(tmp_path / "img"), str(ann), name="pngs")
        for i in range(len(src)):
            src.load_image(i)
    assert len(src) == 29 and src.fixed == {"PNG file with a .jpg extension": 29}
    assert len(caplog.records) == 1
    assert ("repaired 29 PNG files with a .jpg extension (f00.jpg, f01.jpg, f02.jpg, "
            "+26 more files)") in caplog.records[0].getMessage()


def test_coco_size_differing_from_json_is_flagged_once(tmp_path: Path,
                                                       caplog: pytest.LogCaptureFixture) -> None:
    (tmp_path / "img").mkdir()
    (tmp_path / "img" / "turned.jpg").write_bytes(_with_exif(_jpeg(_photo(40, 60)), 6))
    ann = tmp_path / "ann.json"
    ann.write_text(json.dumps(dict(  # a tool that ignored EXIF wrote the stored size
        images=[dict(id=1, file_name="turned.jpg", width=60, height=40)], annotations=[],
        categories=[dict(id=1, name="cat")])))
    with caplog.at_level(logging.DEBUG, logger="nanodet_ghost"):
        src = CocoSource(str(tmp_path / "img"), str(ann), name="exif")
        assert src.load_image(0).shape == (60, 40, 3)
    assert src.flagged == {"image whose size differs from the json": 1}
    assert [r.getMessage() for r in caplog.records] == [
        "exif: 1 images, 0 boxes, 0 ignore regions; found 1 image whose size differs from the "
        "json (turned.jpg); layout: COCO ann.json + img/"]
