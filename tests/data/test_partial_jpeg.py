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
from nanodet_ghost.data.jpeg_structure import jpeg_segments, last_scan_completes
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


@pytest.mark.parametrize("progressive", [False, True], ids=["baseline", "progressive"])
@pytest.mark.parametrize("cut", [0.001, 0.004, 0.02, 0.1, 0.5])
def test_cut_measured_as_the_whole_file_shows(tmp_path: Path, progressive: bool, cut: float) -> None:
    data = _jpeg(progressive)
    keep = int(len(data) * (1 - cut))
    path = tmp_path / "cut.jpg"
    path.write_bytes(data[:keep])
    info = inspect_image(str(path), max_missing_fraction=1.0)
    truth = _true_fraction(data, keep)
    assert 0.0 < truth <= 1.0
    # the measure needs no whole file: it is the part that differs from the whole file's picture
    assert abs(info.missing_fraction - truth) <= 2 * 16 * 16 / (H * W)
    assert info.missing_eoi and info.problem is None
    img = read_image(str(path), max_missing_fraction=1.0)
    np.testing.assert_array_equal(img, _decode(data[:keep] + b"\xff\xd9"))
    whole_rows = int(H * (1 - info.missing_fraction)) // 16 * 16 - 16  # above the missing part
    np.testing.assert_array_equal(img[:max(whole_rows, 0)], _decode(data)[:max(whole_rows, 0)])


def _scan_starts(data: bytes) -> list:
    return [pos - 2 for marker, pos, _ in jpeg_segments(data) if marker == 0xDA]


def _end_of_second_last_scan(data: bytes) -> int:
    """Offset where the entropy-coded data of the scan before the last one ends (at the first
    marker after it: a Huffman table or the last scan's header)."""
    segments = list(jpeg_segments(data))
    scans = [i for i, (marker, _, _) in enumerate(segments) if marker == 0xDA]
    return segments[scans[-2] + 1][1] - 2


def test_scans_still_to_come_count_the_whole_picture(tmp_path: Path) -> None:
    data = _jpeg(progressive=True)
    starts = _scan_starts(data)
    assert len(starts) > 2 and last_scan_completes(data[:-2])
    assert len(_scan_starts(_jpeg(progressive=False))) == 1
    # the end of the scan before the final one: little of that scan is missing, but the final
    # refinement of every block is
    keep = _end_of_second_last_scan(data) - 20
    assert starts[-2] < keep
    assert not last_scan_completes(data[:keep])
    path = tmp_path / "early.jpg"
    path.write_bytes(data[:keep])
    info = inspect_image(str(path), max_missing_fraction=1.0)
    assert info.missing_fraction == 1.0
    assert _true_fraction(data, keep) == 1.0
    with pytest.raises(ImageReadError, match=r"early\.jpg: truncated JPEG .*100\.00% of the picture"):
        read_image(str(path))
    # cut inside the final scan: only its part beyond the cut is missing
    path.write_bytes(data[:len(data) - 10])
    assert 0.0 < inspect_image(str(path)).missing_fraction <= 0.01


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


def test_config_key_checked_at_load_and_passed_to_the_source(tmp_path: Path) -> None:
    from nanodet_ghost.config import ConfigError, load_config
    from nanodet_ghost.data.loader import build_dataset
    from nanodet_ghost.paths import CONFIG_DIR

    default = CONFIG_DIR / "nanodet_ghost_320.yml"
    assert load_config(default).data.max_missing_fraction == 0.01
    with pytest.raises(ConfigError, match=r"data\.max_missing_fraction must be in \[0, 1\], got 2"):
        load_config(default, ["data.max_missing_fraction=2"])
    data = _jpeg(progressive=False)
    (tmp_path / "a_tail.jpg").write_bytes(data[:len(data) - 60])
    _voc_xml(tmp_path / "a_tail.xml", "a_tail.jpg")
    split = f"{{format: voc, root: '{tmp_path}'}}"
    for limit, used in ((0.01, True), (0.0, False)):
        cfg = load_config(default, [f"data.max_missing_fraction={limit}", f"data.val={split}",
                                    "data.class_names=[cat]", "model.head.num_classes=1"])
        source = build_dataset(cfg.data, "val").source
        assert source.max_missing_fraction == limit
        assert bool(source.fixed["partly decoded JPEG"]) == used
