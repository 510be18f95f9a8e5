"""The byte layout of a JPEG file, read without decoding: header, end marker and scans.

Used by `nanodet_ghost.data.image_io`, which does the decoding. Nothing here imports OpenCV.
"""
from __future__ import annotations

import os
import struct
from typing import BinaryIO, Dict, Iterator, List, Optional, Tuple

JPEG_EOI = b"\xff\xd9"
JPEG_SOS = b"\xff\xda"
_EXIF_ORIENTATION_TAG = 0x0112
_SOF_MARKERS = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}  # frame headers (not DHT/JPG/DAC)


# ------------------------------------------------------------------------ header
def exif_orientation(payload: bytes) -> int:
    """EXIF orientation (1..8) from an APP1 payload, 1 when absent or malformed."""
    if payload[:6] != b"Exif\x00\x00" or len(payload) < 14:
        return 1
    tiff = payload[6:]
    order = {b"II": "<", b"MM": ">"}.get(tiff[:2])
    if order is None:
        return 1
    try:
        (ifd_offset,) = struct.unpack(order + "I", tiff[4:8])
        (count,) = struct.unpack(order + "H", tiff[ifd_offset:ifd_offset + 2])
        for k in range(count):
            start = ifd_offset + 2 + 12 * k
            tag, kind = struct.unpack(order + "HH", tiff[start:start + 4])
            if tag == _EXIF_ORIENTATION_TAG and kind == 3:  # SHORT, stored in the value field
                (value,) = struct.unpack(order + "H", tiff[start + 8:start + 10])
                return value if 1 <= value <= 8 else 1
    except struct.error:  # IFD cut short
        return 1
    return 1


def jpeg_header(f: BinaryIO) -> Tuple[Optional[Tuple[int, int]], int]:
    """((height, width) stored, or None; EXIF orientation) from the segments before the first
    frame header; `f` is positioned after SOI."""
    orientation = 1
    while True:
        byte = f.read(1)
        while byte and byte != b"\xff":  # tolerate junk between segments
            byte = f.read(1)
        while byte == b"\xff":  # fill bytes
            byte = f.read(1)
        if not byte:
            return None, orientation
        marker = byte[0]
        if marker == 0x01 or 0xD0 <= marker <= 0xD9:  # markers without a length field
            continue
        length_bytes = f.read(2)
        if len(length_bytes) < 2:
            return None, orientation
        (length,) = struct.unpack(">H", length_bytes)
        if marker == 0xE1 and orientation == 1:
            orientation = exif_orientation(f.read(max(length - 2, 0)))
            continue
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            sof = f.read(5)
            if len(sof) < 5:
                return None, orientation
            height, width = struct.unpack(">HH", sof[1:5])
            return (height, width), orientation
        if marker == 0xDA:  # a scan before any frame header: give up
            return None, orientation
        f.seek(length - 2, os.SEEK_CUR)


# ------------------------------------------------------------------------ segments and scans
def lacks_eoi(data: bytes) -> bool:
    """The main image of a JPEG has no end-of-image marker: the data ends first."""
    if data.rfind(JPEG_EOI) > data.rfind(JPEG_SOS):
        return False  # the common case, decided without walking the file
    return jpeg_end(data) < 0


def jpeg_segments(data: bytes) -> Iterator[Tuple[int, int, int]]:
    """(marker, offset just past the marker, length field or 0) of each segment of the main image
    after SOI, in file order, up to its end-of-image marker or to where the data ends.

    The entropy-coded data after a start-of-scan is skipped to the next marker, so markers
    inside an EXIF thumbnail or trailing data (e.g. a video appended after the photo) are not
    mistaken for the image's own.
    """
    pos, n = 2, len(data)
    while pos + 1 < n:
        if data[pos] != 0xFF:  # junk between segments
            pos = data.find(b"\xff", pos)
            if pos < 0:
                return
            continue
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        pos += 2
        if marker == 0xD9 or marker in (0x00, 0x01) or 0xD0 <= marker <= 0xD8:  # no length field
            yield marker, pos, 0
            if marker == 0xD9:
                return
            continue
        if pos + 2 > n:
            return
        length = int.from_bytes(data[pos:pos + 2], "big")
        yield marker, pos, length
        pos += length
        if marker != 0xDA:
            continue
        while True:  # entropy-coded data runs to the next marker other than FF00 / RSTn
            pos = data.find(b"\xff", pos)
            if pos < 0 or pos + 1 >= n:
                return
            follower = data[pos + 1]
            if follower == 0x00 or 0xD0 <= follower <= 0xD7:
                pos += 2
            elif follower == 0xFF:
                pos += 1
            else:
                break


def jpeg_end(data: bytes) -> int:
    """Offset just past the main image's end-of-image marker, or -1 when the data ends first."""
    for marker, pos, _ in jpeg_segments(data):
        if marker == 0xD9:
            return pos
    return -1


def last_scan_completes(data: bytes) -> bool:
    """Whether every coefficient of every component is received to its last bit once the last
    scan of `data` is (taken as complete): True for a one-scan baseline JPEG and for a
    progressive one whose data stops in its final scan; False when later scans (refinements,
    other components) were still to come, which would have changed every block."""
    components: List[int] = []
    lowest_bit: Dict[Tuple[int, int], int] = {}  # (component, coefficient) -> Al received
    for marker, pos, length in jpeg_segments(data):
        segment = data[pos + 2:pos + length]
        if marker in _SOF_MARKERS and len(segment) >= 6 and not components:
            count = segment[5]
            components = [segment[6 + 3 * i] for i in range(count) if 6 + 3 * i < len(segment)]
        elif marker == 0xDA and len(segment) >= 1:
            count = segment[0]
            if len(segment) < 4 + 2 * count:
                return False
            start, end, bits = segment[1 + 2 * count:4 + 2 * count]
            for component in (segment[1 + 2 * i] for i in range(count)):
                for k in range(start, min(end, 63) + 1):
                    lowest_bit[(component, k)] = bits & 0x0F
    return bool(components) and all(lowest_bit.get((c, k)) == 0
                                     for c in components for k in range(64))
