"""Per-image records of a source, stored flat: a few numpy arrays instead of one object per image.

A DataLoader worker forked from the training process shares the parent's memory page by page
until it writes to a page. Reading a Python object writes its reference count, so a list of
118k small objects (dicts, arrays, strings) is copied into every worker as the epoch touches it.
`RecordTable` keeps everything in a handful of large arrays (per-image columns, boxes of all
images concatenated with offsets, file names in one byte buffer), which the workers only read.
The same arrays are what the label cache (`data/label_cache.py`) saves and loads.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Iterator, List, Sequence

import numpy as np

__all__ = ["ImageRecord", "RecordBuilder", "RecordTable", "StringColumn"]

_ENCODING = "utf-8"
_ERRORS = "surrogateescape"  # file names from os.walk may hold undecodable bytes


@dataclass
class ImageRecord:
    """One image. Boxes are xyxy in original pixels; areas are what `to_coco` reports."""

    image_id: int
    file_name: str  # as reported by get_annotation / to_coco (relative to the image folder)
    path: str  # where the image is read from
    height: int
    width: int
    boxes: np.ndarray  # float32 [N, 4]
    labels: np.ndarray  # int64 [N] contiguous
    areas: np.ndarray  # float64 [N]
    ignore: np.ndarray  # float32 [M, 4]
    ignore_labels: np.ndarray  # int64 [M]
    ignore_areas: np.ndarray  # float64 [M]


class StringColumn:
    """Strings stored as one uint8 buffer plus int64 offsets [N + 1]; `column[i]` decodes one."""

    def __init__(self, buffer: np.ndarray, offsets: np.ndarray) -> None:
        self.buffer = buffer
        self.offsets = offsets

    @classmethod
    def from_strings(cls, strings: Sequence[str]) -> "StringColumn":
        encoded = [s.encode(_ENCODING, _ERRORS) for s in strings]
        offsets = np.zeros(len(encoded) + 1, dtype=np.int64)
        np.cumsum([len(b) for b in encoded], out=offsets[1:])
        return cls(np.frombuffer(b"".join(encoded), dtype=np.uint8).copy(), offsets)

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def __getitem__(self, index: int) -> str:
        start, end = self.offsets[index], self.offsets[index + 1]
        return self.buffer[start:end].tobytes().decode(_ENCODING, _ERRORS)

    def __iter__(self) -> Iterator[str]:
        return (self[i] for i in range(len(self)))


# name -> (dtype, trailing shape) of the arrays of a `RecordTable`; the label cache checks these.
COLUMNS: Dict[str, tuple] = {
    "image_ids": (np.int64, ()), "heights": (np.int64, ()), "widths": (np.int64, ()),
    "box_offsets": (np.int64, ()), "boxes": (np.float32, (4,)), "labels": (np.int64, ()),
    "areas": (np.float64, ()),
    "ignore_offsets": (np.int64, ()), "ignore": (np.float32, (4,)),
    "ignore_labels": (np.int64, ()), "ignore_areas": (np.float64, ()),
    "file_name_buffer": (np.uint8, ()), "file_name_offsets": (np.int64, ()),
    "path_buffer": (np.uint8, ()), "path_offsets": (np.int64, ()),
}


class RecordTable:
    """The records of all images of a source, read-only.

    Row `i` has `boxes[box_offsets[i]:box_offsets[i + 1]]` (float32 xyxy) with their `labels`
    (int64) and `areas` (float64), the same for the ignore regions, and the per-image columns
    `image_ids`, `heights`, `widths`, `file_names`, `paths`.
    """

    def __init__(self, arrays: Dict[str, np.ndarray]) -> None:
        for name in COLUMNS:
            setattr(self, name, arrays[name])
        self.file_names = StringColumn(arrays["file_name_buffer"], arrays["file_name_offsets"])
        self.paths = StringColumn(arrays["path_buffer"], arrays["path_offsets"])
        self.check()

    def check(self) -> None:
        """Raise `ValueError` when the arrays do not fit together (e.g. a damaged cache file)."""
        n = len(self.image_ids)
        for name, (dtype, tail) in COLUMNS.items():
            array = getattr(self, name)
            if array.dtype != dtype or array.shape[1:] != tail:
                raise ValueError(f"{name}: {array.dtype} {array.shape}, expected {np.dtype(dtype)} "
                                 f"[*{', '.join(map(str, tail))}]")
        for name in ("heights", "widths"):
            if len(getattr(self, name)) != n:
                raise ValueError(f"{name} has {len(getattr(self, name))} rows for {n} images")
        for offsets, columns in (("box_offsets", ("boxes", "labels", "areas")),
                                 ("ignore_offsets", ("ignore", "ignore_labels", "ignore_areas")),
                                 ("file_name_offsets", ("file_name_buffer",)),
                                 ("path_offsets", ("path_buffer",))):
            off = getattr(self, offsets)
            if len(off) != n + 1 or off[0] != 0 or (np.diff(off) < 0).any():
                raise ValueError(f"{offsets} are not {n + 1} rising offsets from 0")
            for column in columns:
                if len(getattr(self, column)) != off[-1]:
                    raise ValueError(f"{column} has {len(getattr(self, column))} rows, "
                                     f"{offsets} end at {off[-1]}")

    def arrays(self) -> Dict[str, np.ndarray]:
        """The arrays by name (what `RecordTable(arrays)` takes)."""
        return {name: getattr(self, name) for name in COLUMNS}

    def __len__(self) -> int:
        return len(self.image_ids)

    @property
    def num_boxes(self) -> int:
        return int(self.box_offsets[-1])

    @property
    def num_ignore(self) -> int:
        return int(self.ignore_offsets[-1])

    def __getitem__(self, index: int) -> ImageRecord:
        """Row `index`; its arrays are views into the table (copy before changing them)."""
        b0, b1 = self.box_offsets[index], self.box_offsets[index + 1]
        i0, i1 = self.ignore_offsets[index], self.ignore_offsets[index + 1]
        return ImageRecord(
            image_id=int(self.image_ids[index]), file_name=self.file_names[index],
            path=self.paths[index], height=int(self.heights[index]),
            width=int(self.widths[index]), boxes=self.boxes[b0:b1], labels=self.labels[b0:b1],
            areas=self.areas[b0:b1], ignore=self.ignore[i0:i1],
            ignore_labels=self.ignore_labels[i0:i1], ignore_areas=self.ignore_areas[i0:i1])

    def __iter__(self) -> Iterator[ImageRecord]:
        return (self[i] for i in range(len(self)))


class RecordBuilder:
    """Collects `ImageRecord`s while a source reads its annotations; `build()` flattens them."""

    def __init__(self) -> None:
        self._rows: List[ImageRecord] = []

    def __len__(self) -> int:
        return len(self._rows)

    def append(self, record: ImageRecord) -> None:
        self._rows.append(record)

    @property
    def num_boxes(self) -> int:
        return sum(len(r.boxes) for r in self._rows)

    @property
    def num_ignore(self) -> int:
        return sum(len(r.ignore) for r in self._rows)

    def build(self) -> RecordTable:
        rows = self._rows

        def cat(name: str, dtype: type, tail: tuple) -> np.ndarray:
            parts = [np.asarray(getattr(r, name), dtype=dtype).reshape((-1, *tail)) for r in rows]
            return np.concatenate(parts) if parts else np.zeros((0, *tail), dtype=dtype)

        def offsets(name: str) -> np.ndarray:
            off = np.zeros(len(rows) + 1, dtype=np.int64)
            np.cumsum([len(getattr(r, name)) for r in rows], out=off[1:])
            return off

        file_names = StringColumn.from_strings([r.file_name for r in rows])
        paths = StringColumn.from_strings([r.path for r in rows])
        table = RecordTable(dict(
            image_ids=np.array([r.image_id for r in rows], dtype=np.int64),
            heights=np.array([r.height for r in rows], dtype=np.int64),
            widths=np.array([r.width for r in rows], dtype=np.int64),
            box_offsets=offsets("boxes"), boxes=cat("boxes", np.float32, (4,)),
            labels=cat("labels", np.int64, ()), areas=cat("areas", np.float64, ()),
            ignore_offsets=offsets("ignore"), ignore=cat("ignore", np.float32, (4,)),
            ignore_labels=cat("ignore_labels", np.int64, ()),
            ignore_areas=cat("ignore_areas", np.float64, ()),
            file_name_buffer=file_names.buffer, file_name_offsets=file_names.offsets,
            path_buffer=paths.buffer, path_offsets=paths.offsets,
        ))
        self._rows = []
        return table

