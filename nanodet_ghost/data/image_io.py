"""Reading images by content: decoding, repairs, truncation checks and cheap header reads.

- Images are decoded by their content, whatever the extension says (a PNG named `.jpg` works).
- The EXIF orientation of a JPEG is applied, as `cv2.imread` and ultralytics do, so boxes drawn
  on the photo as it is shown match. `read_image_size` / `inspect_image` report that oriented size
  (orientations 5-8 swap width and height).
- A JPEG whose image data is whole but that lacks its end-of-image marker is used: it is decoded
  with the marker appended. It counts as whole when appending a few filler bytes before the marker
  changes nothing, i.e. the decoder needs no byte past the end of the file.
- A JPEG cut mid-scan is decoded as libjpeg does (the missing part filled in) when that part is at
  most `max_missing_fraction` of the image (`data.max_missing_fraction`, default 0.01); beyond
  that it raises `ImageReadError`. The missing part is measured by decoding the file twice, once
  with the data as it is and once followed by random entropy-coded bytes: every pixel that
  depends on a byte past the end differs between the two. A scan is decoded in block raster
  order, so the missing part is everything from the first differing 16x16 block (an MCU) on. When
  the data stops before the last scan the picture needed (a progressive file cut before its final
  refinement, or a sequential one before its last component), every block lacks something: the
  whole picture counts as missing (`jpeg_structure.last_scan_completes`).
- Nothing here logs per file; the dataset sources count what `inspect_image` reports and log one
  summary line per dataset.
"""
from __future__ import annotations

import contextlib
import contextvars
import io
import os
import struct
from dataclasses import dataclass
from typing import BinaryIO, Dict, Iterator, Optional, Tuple

import cv2
import numpy as np

from nanodet_ghost.data.jpeg_structure import (
    JPEG_EOI,
    JPEG_SOS,
    jpeg_header,
    lacks_eoi,
    last_scan_completes,
)

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".jpe", ".png", ".bmp", ".webp", ".tif", ".tiff")

EXTENSION_FORMAT = {".jpg": "jpeg", ".jpeg": "jpeg", ".jpe": "jpeg", ".png": "png", ".bmp": "bmp",
                    ".webp": "webp", ".tif": "tiff", ".tiff": "tiff"}
# The IEND chunk is fixed: zero length, type, constant CRC.
_PNG_IEND = b"\x00\x00\x00\x00IEND\xaeB`\x82"
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# Entropy-coded bits the decoder would consume if the scan were incomplete; 0xAA starts with a 1
# bit where libjpeg's fill for missing data has a 0, so any byte still needed changes the decode.
_JPEG_PROBE_FILL = b"\xaa" * 4
_MCU = 16  # the largest JPEG MCU side (4:2:0): the unit in which the missing part is counted
_EDGE = 2  # pixels at a block's edges that upsampling can change from a neighbouring block
DEFAULT_MAX_MISSING_FRACTION = 0.01
_TAIL_BYTES = 4096
# path -> ((size, mtime_ns), missing fraction, or None when it does not decode): JPEGs without an
# end marker already measured, so that each is decoded thrice at most once per process (DataLoader
# workers inherit it by fork).
_missing_eoi_verdicts: Dict[str, Tuple[Optional[Tuple[int, int]], Optional[float]]] = {}
# The limit a dataset source built in `max_missing_fraction(...)` takes (it keeps its own copy).
_max_missing: contextvars.ContextVar[float] = contextvars.ContextVar(
    "max_missing_fraction", default=DEFAULT_MAX_MISSING_FRACTION)


def check_max_missing_fraction(limit: float) -> float:
    """`limit` as a float when it is a fraction in [0, 1]; else a ValueError naming the key."""
    if not 0.0 <= float(limit) <= 1.0:
        raise ValueError(f"data.max_missing_fraction must be in [0, 1], got {limit}")
    return float(limit)


@contextlib.contextmanager
def max_missing_fraction(limit: float) -> Iterator[None]:
    """Within the block, `current_max_missing_fraction()` is `limit` (a fraction in [0, 1])."""
    token = _max_missing.set(check_max_missing_fraction(limit))
    try:
        yield
    finally:
        _max_missing.reset(token)


def current_max_missing_fraction() -> float:
    """The largest missing fraction of a JPEG cut mid-scan that is still used (default 0.01)."""
    return _max_missing.get()


class ImageReadError(OSError):
    """An image file could not be read or decoded. `path` and `problem` are kept as attributes."""

    def __init__(self, path: str, problem: str) -> None:
        super().__init__(f"{path}: {problem}")
        self.path = str(path)
        self.problem = problem


@dataclass(frozen=True)
class ImageInfo:
    """What the header and tail of an image file say, without decoding the pixels.

    `height` / `width` are the displayed size (EXIF orientation applied), None when the header
    does not give them (formats other than JPEG / PNG). `extension_format` is what the file
    extension promises (None for an unknown extension). `missing_eoi`: a JPEG that is decoded
    with its missing end-of-image marker appended. `missing_fraction`: for such a JPEG cut
    mid-scan, the fraction of the image its data does not reach (0.0 when only the marker is
    missing; None for other files). `problem`: why the file will not decode, when that is
    already known (a truncated JPEG or PNG, or too much of a JPEG missing); None otherwise.
    """

    format: Optional[str]
    height: Optional[int]
    width: Optional[int]
    orientation: int = 1
    extension_format: Optional[str] = None
    missing_eoi: bool = False
    problem: Optional[str] = None
    missing_fraction: Optional[float] = None

    @property
    def extension_mismatch(self) -> bool:
        """The content is a known format other than the one the extension promises."""
        return (self.format is not None and self.extension_format is not None
                and self.format != self.extension_format)


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


def _extension_format(path: str) -> Optional[str]:
    return EXTENSION_FORMAT.get(os.path.splitext(path)[1].lower())


def apply_orientation(img: np.ndarray, orientation: int) -> np.ndarray:
    """Turn a decoded image [H, W, C] as EXIF `orientation` (1..8) says, like cv2.imread does."""
    if orientation in (5, 6, 7, 8):
        img = cv2.transpose(img)
    flip = {2: 1, 3: -1, 4: 0, 6: 1, 7: -1, 8: 0}.get(orientation)
    return img if flip is None else cv2.flip(img, flip)


def _oriented(size: Tuple[int, int], orientation: int) -> Tuple[int, int]:
    return (size[1], size[0]) if orientation in (5, 6, 7, 8) else size


def _decode(data: bytes) -> Optional[np.ndarray]:
    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    return None if img is None or img.size == 0 else img


def _stat_key(path: str) -> Optional[Tuple[int, int]]:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_size, st.st_mtime_ns


def _missing_fraction(data: bytes, decoded: np.ndarray) -> Optional[float]:
    """Fraction of the image whose pixels in `decoded` (the decode of `data` + EOI) depend on bytes
    past the end of `data`; None when the probe does not decode."""
    rng = np.random.default_rng(len(data))  # the same probe for the same file
    fill = rng.integers(0, 0xFF, max(len(data), 4096), dtype=np.uint8).tobytes()  # no 0xFF: no marker
    if data.endswith(b"\xff"):
        fill = b"\x00" + fill  # a cut right after 0xFF: make it a stuffed byte, not a marker
    probe = _decode(data + fill + JPEG_EOI)
    if probe is None or probe.shape != decoded.shape:
        return None
    return raster_fraction(probe != decoded)


def raster_fraction(diff: np.ndarray) -> float:
    """Fraction of the image from the first 16x16 block whose inside (2 pixels in from its edges)
    holds a True of `diff` ([H, W] or [H, W, C] bool) to the end, in raster order; 0.0 when
    `diff` is all False."""
    if diff.ndim == 3:
        diff = diff.any(axis=2)
    if not diff.any():
        return 0.0
    h, w = diff.shape
    rows, cols = -(-h // _MCU), -(-w // _MCU)
    padded = np.zeros((rows * _MCU, cols * _MCU), bool)
    padded[:h, :w] = diff
    tiles = padded.reshape(rows, _MCU, cols, _MCU)
    # A missing block is garbage throughout; the decoder's smoothing of chroma only carries that
    # into the edge pixels of the blocks beside and above it, which are whole: look inside.
    blocks = tiles[:, _EDGE:-_EDGE, :, _EDGE:-_EDGE].any(axis=(1, 3))
    if not blocks.any():
        blocks = tiles.any(axis=(1, 3))
    row, col = divmod(int(np.argmax(blocks.ravel())), cols)  # first block in raster order
    row_end = min(h, (row + 1) * _MCU)
    missing = (h - row_end) * w + (row_end - row * _MCU) * (w - col * _MCU)
    return missing / float(h * w)


def _decode_missing_eoi(data: bytes, path: str, limit: float
                        ) -> Tuple[Optional[np.ndarray], Optional[str], Optional[float]]:
    """(image, None, missing fraction) for a JPEG without end marker whose missing part is at most
    `limit` of the image (0.0: the data is whole); (None, problem, fraction or None) otherwise.
    Fractions are remembered per file (size and mtime)."""
    key = _stat_key(path)
    known = _missing_eoi_verdicts.get(path)
    fraction = known[1] if known is not None and known[0] == key else -1.0
    decoded = None
    if fraction is not None and fraction <= limit:  # else known not to be usable: no decode
        decoded = _decode(data + JPEG_EOI)
        if decoded is None:
            fraction = None
        elif fraction < 0.0:  # not measured yet
            probe = _decode(data + _JPEG_PROBE_FILL + JPEG_EOI)
            whole = probe is not None and probe.shape == decoded.shape and np.array_equal(probe, decoded)
            if whole:
                fraction = 0.0
            elif not last_scan_completes(data):  # scans still to come would refine every block
                fraction = 1.0
            else:
                fraction = _missing_fraction(data, decoded)
        _missing_eoi_verdicts[path] = (key, fraction)
    if fraction is None:
        return None, "truncated JPEG (no end-of-image marker, and the data does not decode)", None
    if fraction > limit:
        return None, (f"truncated JPEG (the image data stops inside a scan: {fraction:.2%} of the "
                      f"picture is not fully decoded, more than data.max_missing_fraction={limit:g})"
                      ), fraction
    return decoded, None, fraction


def _png_problem(data: bytes) -> Optional[str]:
    return None if _PNG_IEND in data[-4096:] else "truncated PNG (no IEND chunk)"


# ------------------------------------------------------------------------ decoding
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


def read_image(path: str, max_missing_fraction: Optional[float] = None) -> np.ndarray:
    """Decode an image by its content -> uint8 [H, W, 3] BGR, EXIF orientation applied.

    Grayscale, alpha and 16-bit images are converted; a file whose extension does not match its
    content is decoded anyway; a JPEG missing only its end marker is repaired, and one cut
    mid-scan is used when at most `max_missing_fraction` of it is missing (None: the current
    limit, `current_max_missing_fraction()`; module docstring). Raises
    `ImageReadError(path, problem)` for missing, empty, undecodable or truncated files.
    """
    path = str(path)
    limit = current_max_missing_fraction() if max_missing_fraction is None else max_missing_fraction
    data = _read_bytes(path)
    if not data:
        raise ImageReadError(path, "empty file")
    fmt = sniff_format(data[:16])
    img: Optional[np.ndarray] = None
    if fmt == "jpeg" and lacks_eoi(data):
        img, problem, _ = _decode_missing_eoi(data, path, limit)
    else:
        problem = _png_problem(data) if fmt == "png" else None
    if problem:
        raise ImageReadError(path, problem)
    if img is None:
        img = _decode(data)
    if img is None:
        what = f"{fmt} data" if fmt else "unrecognised image format"
        raise ImageReadError(path, f"cannot decode ({what}, {len(data)} bytes)")
    img = _to_bgr_uint8(img, path)
    if fmt == "jpeg":
        stream = io.BytesIO(data)
        stream.seek(2)
        img = apply_orientation(img, jpeg_header(stream)[1])
    return img


# ------------------------------------------------------------------------ header reads
def _read_header(f: BinaryIO) -> Tuple[Optional[str], Optional[Tuple[int, int]], int]:
    """(format, displayed (height, width) or None, orientation) from an open file."""
    head = f.read(32)
    fmt = sniff_format(head)
    if fmt == "png" and len(head) >= 24 and head[12:16] == b"IHDR":
        width, height = struct.unpack(">II", head[16:24])
        return fmt, (height, width), 1
    if fmt == "jpeg":
        f.seek(2)
        size, orientation = jpeg_header(f)
        return fmt, (_oriented(size, orientation) if size else None), orientation
    return fmt, None, 1


def _open_error(path: str, e: OSError) -> ImageReadError:
    if isinstance(e, FileNotFoundError):
        return ImageReadError(path, "file not found")
    return ImageReadError(path, f"cannot read file ({e.strerror or e})")


def _tail_problem(f: BinaryIO, path: str, fmt: Optional[str], limit: float
                  ) -> Tuple[bool, Optional[str], Optional[float]]:
    """(missing_eoi, problem, missing fraction) from the end of an open JPEG / PNG file."""
    f.seek(0, os.SEEK_END)
    size = f.tell()
    f.seek(max(size - _TAIL_BYTES, 0))
    tail = f.read()
    if fmt == "png":
        return False, _png_problem(tail), None
    if fmt != "jpeg" or tail.rfind(JPEG_EOI) > max(tail.rfind(JPEG_SOS), -1):
        return False, None, None
    f.seek(0)
    data = f.read()  # rare: no end marker near the end, so the whole file is judged
    if not lacks_eoi(data):
        return False, None, None
    img, problem, fraction = _decode_missing_eoi(data, path, limit)
    return img is not None, problem, fraction


def inspect_image(path: str, max_missing_fraction: Optional[float] = None) -> ImageInfo:
    """Format, displayed size and known defects of an image file, from its header and its tail.

    A JPEG without an end marker near its end is decoded here to measure its missing part
    (`missing_fraction`): usable up to `max_missing_fraction` (None: the current limit), else a
    `problem`. Raises `ImageReadError` when the file cannot be opened or is empty; a JPEG / PNG
    header without a valid size gives `height=None`.
    """
    path = str(path)
    limit = current_max_missing_fraction() if max_missing_fraction is None else max_missing_fraction
    try:
        with open(path, "rb") as f:
            fmt, size, orientation = _read_header(f)
            missing_eoi, problem, fraction = _tail_problem(f, path, fmt, limit)
            empty = f.tell() == 0
    except OSError as e:
        raise _open_error(path, e) from None
    if empty:
        raise ImageReadError(path, "empty file")
    if size and (size[0] <= 0 or size[1] <= 0):
        size = None
    return ImageInfo(
        format=fmt, height=size[0] if size else None, width=size[1] if size else None,
        orientation=orientation, extension_format=_extension_format(path),
        missing_eoi=missing_eoi, problem=problem, missing_fraction=fraction,
    )


def read_image_size(path: str) -> Tuple[int, int]:
    """(height, width) of an image as `read_image` returns it (EXIF orientation applied).

    JPEG and PNG sizes come from the header; other formats are decoded. Raises
    `ImageReadError` when the size cannot be found.
    """
    path = str(path)
    try:
        with open(path, "rb") as f:
            fmt, size, _ = _read_header(f)
    except OSError as e:
        raise _open_error(path, e) from None
    if fmt in ("jpeg", "png"):
        if not size or size[0] <= 0 or size[1] <= 0:
            raise ImageReadError(path, f"no valid size in the {fmt} header")
        return size
    h, w = read_image(path).shape[:2]
    return h, w
