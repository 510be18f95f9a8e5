"""JPEGs whose data stops mid-scan: used when at most `data.max_missing_fraction` of the picture is
missing (counted as repaired, with the fraction), unreadable beyond."""
from __future__ import annotations

import logging
from pathlib import Path

import cv2
import numpy as np
import pytest

from nanodet_ghost.data.image_io import (
    ImageReadError,
    inspect_image,
    max_missing_fraction,
    raster_fraction,
    read_image,
)
from nanodet_ghost.data.voc import VocSource

H, W = 240, 320


def _photo(seed: int = 0) -> np.ndarray:
    """Smooth noise: every block carries entropy-coded data, so a cut lands inside a scan."""
    noise = np.random.default_rng(seed).integers(0, 255, (H, W, 3), dtype=np.uint8)
    return cv2.GaussianBlur(noise, (5, 5), 0)


def _jpeg(progressive: bool, seed: int = 0) -> bytes:
    ok, buf = cv2.imencode(".jpg", _photo(seed), [cv2.IMWRITE_JPEG_QUALITY, 90,
                                                  cv2.IMWRITE_JPEG_PROGRESSIVE, int(progressive)])
    assert ok
    return buf.tobytes()


def _decode(data: bytes) -> np.ndarray:
    return cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)


def _true_fraction(data: bytes, keep: int) -> float:
    """Missing part measured against the whole file's decode (what the file should have shown)."""
    return raster_fraction(_decode(data[:keep] + b"\xff\xd9") != _decode(data))


def test_raster_fraction_counts_from_the_first_block() -> None:
    diff = np.zeros((40, 50), bool)
    assert raster_fraction(diff) == 0.0
    diff[20, 37] = True  # block row 1 (rows 16..31), block column 2 (columns 32..47)
    expected = ((40 - 32) * 50 + (32 - 16) * (50 - 32)) / (40 * 50)
    assert raster_fraction(diff) == pytest.approx(expected)
    diff[15, :] = True  # the bottom edge of every block above: upsampling bleed, not missing
    diff[16:, 31] = True  # the right edge of the block to the left
    assert raster_fraction(diff) == pytest.approx(expected)
    diff[5, 5] = True
    assert raster_fraction(diff[..., None]) == 1.0


@pytest.mark.parametrize("cut", [0.001, 0.004, 0.02, 0.1, 0.5])
def test_baseline_cut_measured_as_decoded(tmp_path: Path, cut: float) -> None:
    data = _jpeg(progressive=False)
    keep = int(len(data) * (1 - cut))
    path = tmp_path / "cut.jpg"
    path.write_bytes(data[:keep])
    info = inspect_image(str(path), max_missing_fraction=1.0)
    truth = _true_fraction(data, keep)
    assert 0.0 < truth < 1.0
    # a baseline scan is decoded in raster order: the measure is the true missing part, to a block
    assert abs(info.missing_fraction - truth) <= 2 * 16 * 16 / (H * W)
    assert info.missing_eoi and info.problem is None
    img = read_image(str(path), max_missing_fraction=1.0)
    np.testing.assert_array_equal(img, _decode(data[:keep] + b"\xff\xd9"))
    first_missing_row = int(H * (1 - info.missing_fraction)) // 16 * 16 - 16
    np.testing.assert_array_equal(img[:max(first_missing_row, 0)],
                                  _decode(data)[:max(first_missing_row, 0)])


@pytest.mark.parametrize("cut", [8, 40, 200])
def test_progressive_cut_in_the_last_scan(tmp_path: Path, cut: int) -> None:
    data = _jpeg(progressive=True)
    keep = len(data) - 2 - cut
    path = tmp_path / "cut.jpg"
    path.write_bytes(data[:keep])
    info = inspect_image(str(path), max_missing_fraction=1.0)
    # the last scan refines what earlier scans drew everywhere: the picture differs from the whole
    # file's exactly in the part of that scan the data does not reach
    assert 0.0 < info.missing_fraction < 0.5
    assert info.missing_fraction == pytest.approx(_true_fraction(data, keep), abs=2 * 256 / (H * W))


def test_progressive_cut_early_is_rejected(tmp_path: Path) -> None:
    data = _jpeg(progressive=True)
    path = tmp_path / "half.jpg"
    path.write_bytes(data[:len(data) // 2])
    info = inspect_image(str(path))
    assert info.missing_fraction > 0.01 and "max_missing_fraction" in info.problem
    with pytest.raises(ImageReadError, match=r"half\.jpg: truncated JPEG .* of the image is missing"):
        read_image(str(path))


@pytest.mark.parametrize("progressive", [False, True])
def test_threshold(tmp_path: Path, progressive: bool) -> None:
    data = _jpeg(progressive, seed=1)
    path = tmp_path / "cut.jpg"
    path.write_bytes(data[:len(data) - 150])
    fraction = inspect_image(str(path), max_missing_fraction=1.0).missing_fraction
    assert 0.0 < fraction < 0.2
    assert read_image(str(path), max_missing_fraction=fraction).shape == (H, W, 3)
    with pytest.raises(ImageReadError, match="max_missing_fraction"):
        read_image(str(path), max_missing_fraction=fraction * 0.99)
    below = inspect_image(str(path), max_missing_fraction=fraction * 0.99)
    assert below.problem and not below.missing_eoi
    with max_missing_fraction(fraction):  # the limit a source built here takes
        assert read_image(str(path)).shape == (H, W, 3)
    with pytest.raises(ValueError, match="max_missing_fraction"):
        with max_missing_fraction(1.5):
            pass


def _voc_xml(path: Path, filename: str) -> None:
    path.write_text(f"<annotation><filename>{filename}</filename><size><width>{W}</width>"
                    f"<height>{H}</height></size><object><name>cat</name><bndbox><xmin>1</xmin>"
                    "<ymin>1</ymin><xmax>20</xmax><ymax>20</ymax></bndbox></object></annotation>")


def test_summary_line_counts_partly_decoded(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    data = _jpeg(progressive=False)
    (tmp_path / "a_tail.jpg").write_bytes(data[:len(data) - 60])
    (tmp_path / "b_half.jpg").write_bytes(data[:len(data) // 2])
    for stem in ("a_tail", "b_half"):
        _voc_xml(tmp_path / f"{stem}.xml", f"{stem}.jpg")
    fraction = inspect_image(str(tmp_path / "a_tail.jpg"), max_missing_fraction=1.0).missing_fraction
    assert 0.0 < fraction <= 0.01
    with caplog.at_level(logging.INFO, logger="nanodet_ghost"):
        src = VocSource(str(tmp_path), ["cat"], name="cut")
    line = [r.getMessage() for r in caplog.records if r.getMessage().startswith("cut:")]
    assert line == [f"cut: 2 images, 2 boxes, 0 ignore regions; repaired 1 partly decoded JPEG "
                    f"(a_tail.jpg: {fraction:.2%} missing); found 1 JPEG file that will not decode "
                    "(b_half.jpg); layout: VOC flat folder (xml beside the images)"]
    assert src.load_image(0).shape == (H, W, 3)
    with pytest.raises(ImageReadError):
        src.load_image(1)
    with max_missing_fraction(0.0):  # data.max_missing_fraction: 0 restores the old behaviour
        strict = VocSource(str(tmp_path), ["cat"], name="strict")
    assert strict.fixed == {} and strict.flagged["JPEG file that will not decode"] == 2
    with pytest.raises(ImageReadError):
        strict.load_image(0)
