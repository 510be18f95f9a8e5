"""Reading images by content: decoding, truncation checks and cheap header-only size reads.

Images are returned in their stored orientation (EXIF orientation is not applied), which is the
orientation that `read_image_size` reports and that the annotation sizes are checked against.
"""
from __future__ import annotations

import logging
import os
import struct
from typing import BinaryIO, Optional, Set, Tuple

import cv2
import numpy as np

logger = logging.getLogger(__name__)

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".jpe", ".png", ".bmp", ".webp", ".tif", ".tiff")

_EXTENSION_FORMAT = {
    ".jpg": "jpeg",
    ".jpeg": "jpeg",
    ".jpe": "jpeg",
    ".png": "png",
    ".bmp": "bmp",
    ".webp": "webp",
    ".tif": "tiff",
    ".tiff": "tiff",
}
# The IEND chunk is fixed: zero length, type, constant CRC.
_PNG_IEND = b"\x00\x00\x00\x00IEND\xaeB`\x82"
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# Warn about a lying extension once per file, not at every epoch.
_extension_warned: Set[str] = set()


class ImageReadError(OSError):
    """An image file could not be read or decoded. `path` and `problem` are kept as attributes."""

    def __init__(self, path: str, problem: str) -> None:
        super().__init__(f"{path}: {problem}")
        self.path = str(path)
        self.problem = problem


def sniff_format(head: bytes) -> Optional[str]:
    """Image format from the first bytes of a file: jpeg, png, bmp, webp, tiff, gif, or None."""
    if head[:3] == b"\xff\xd8\xff":
        return "jpeg"
    if head[:8] == _PNG_SIGNATURE:
        return "png"
    if head[:2] == b"BM":
        return "bmp"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "webp"
    if head[:4] in (b"II*\x00", b"MM\x00*"):
        return "tiff"
    if head[:4] == b"GIF8":
        return "gif"
    return None


def _check_complete(data: bytes, fmt: Optional[str]) -> Optional[str]:
    """Problem description if the encoded data is visibly cut short, else None."""
    if fmt == "jpeg":
        # The main image's EOI must follow its last SOS; an EXIF thumbnail has its own pair earlier.
        if data.rfind(b"\xff\xd9") < data.rfind(b"\xff\xda"):
            return "truncated JPEG (no end-of-image marker after the last scan)"
    elif fmt == "png" and _PNG_IEND not in data[-4096:]:
        return "truncated PNG (no IEND chunk)"
    return None


def _to_bgr_uint8(img: np.ndarray, path: str) -> np.ndarray:
    """Grayscale / BGRA / 16-bit / float images -> uint8 [H, W, 3] BGR (alpha dropped)."""
    if img.dtype == np.uint16:
        img = (img >> 8).astype(np.uint8)
    elif img.dtype in (np.float32, np.float64):
        img = (np.clip(img, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    elif img.dtype != np.uint8:
        raise ImageReadError(path, f"unsupported pixel type {img.dtype}")
    if img.ndim == 2 or (img.ndim == 3 and img.shape[2] == 1):
        return cv2.cvtColor(img, cv2.COLOR_GRAY2BGR)
    if img.ndim == 3 and img.shape[2] == 4:
        return cv2.cvtColor(img, cv2.COLOR_BGRA2BGR)
    if img.ndim == 3 and img.shape[2] == 3:
        return img
    raise ImageReadError(path, f"unsupported image shape {img.shape}")


def _read_bytes(path: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except FileNotFoundError:
        raise ImageReadError(path, "file not found") from None
    except OSError as e:
        raise ImageReadError(path, f"cannot read file ({e.strerror or e})") from None


def _warn_if_extension_lies(path: str, fmt: Optional[str]) -> None:
    expected = _EXTENSION_FORMAT.get(os.path.splitext(path)[1].lower())
    if fmt is None or expected is None or expected == fmt or path in _extension_warned:
        return
    _extension_warned.add(path)
    logger.warning("%s: extension says %s but the content is %s; decoding by content",
                   path, expected, fmt)


def read_image(path: str) -> np.ndarray:
    """Decode an image by its content -> uint8 [H, W, 3] BGR.

    Grayscale, alpha and 16-bit images are converted; a file whose extension does not match its
    content is decoded anyway (logged once per file). Raises `ImageReadError(path, problem)` for
    missing, empty, undecodable or truncated files.
    """
    path = str(path)
    data = _read_bytes(path)
    if not data:
        raise ImageReadError(path, "empty file")
    fmt = sniff_format(data[:16])
    _warn_if_extension_lies(path, fmt)
    problem = _check_complete(data, fmt)
    if problem:
        raise ImageReadError(path, problem)
    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if img is None or img.size == 0:
        what = f"{fmt} data" if fmt else "unrecognised image format"
        raise ImageReadError(path, f"cannot decode ({what}, {len(data)} bytes)")
    return _to_bgr_uint8(img, path)


def _jpeg_size(f: BinaryIO) -> Optional[Tuple[int, int]]:
    """(height, width) from the first SOF marker; `f` is positioned after SOI."""
    while True:
        byte = f.read(1)
        while byte and byte != b"\xff":  # tolerate junk between segments
            byte = f.read(1)
        while byte == b"\xff":  # fill bytes
            byte = f.read(1)
        if not byte:
            return None
        marker = byte[0]
        if marker == 0x01 or 0xD0 <= marker <= 0xD9:  # markers without a length field
            continue
        length_bytes = f.read(2)
        if len(length_bytes) < 2:
            return None
        (length,) = struct.unpack(">H", length_bytes)
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            sof = f.read(5)
            if len(sof) < 5:
                return None
            height, width = struct.unpack(">HH", sof[1:5])
            return height, width
        f.seek(length - 2, os.SEEK_CUR)


def read_image_size(path: str) -> Tuple[int, int]:
    """(height, width) of an image, read from the JPEG/PNG header without decoding the pixels.

    Other formats are fully decoded. Raises `ImageReadError` when the size cannot be found.
    """
    path = str(path)
    try:
        with open(path, "rb") as f:
            head = f.read(32)
            fmt = sniff_format(head)
            size: Optional[Tuple[int, int]] = None
            if fmt == "png" and len(head) >= 24 and head[12:16] == b"IHDR":
                width, height = struct.unpack(">II", head[16:24])
                size = (height, width)
            elif fmt == "jpeg":
                f.seek(2)
                size = _jpeg_size(f)
    except FileNotFoundError:
        raise ImageReadError(path, "file not found") from None
    except OSError as e:
        raise ImageReadError(path, f"cannot read file ({e.strerror or e})") from None
    if fmt in ("jpeg", "png"):
        if not size or size[0] <= 0 or size[1] <= 0:
            raise ImageReadError(path, f"no valid size in the {fmt} header")
        return size
    h, w = read_image(path).shape[:2]
    return h, w
