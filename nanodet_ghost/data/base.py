"""Shared logic of the dataset sources (coco, voc, yolo): records, box checks, skip counts, to_coco.

A source holds one `ImageRecord` per usable image. Subclasses parse their annotation format, call
`_add_image` for each image (which validates, clips and counts boxes) and `_finish` once, which logs
one summary line per dataset. Problems that make a file unusable raise `DatasetError` naming the
file; recoverable dirt (zero-size or out-of-image boxes, missing images) is skipped and counted in
`source.skipped` / `source.fixed` and reported in that summary. `_inspect_image` reads each image's
header and tail once, so repairs done at decode time (PNG named .jpg, JPEG without end marker) and
images that will not decode are in that same line rather than logged per file. A source left with
no image at all raises `DatasetError`.

Records are kept flat (`data/records.py`) so that DataLoader workers share them with the parent.
With `cache_labels`, what a source verified is saved and reused while its files are unchanged
(`data/label_cache.py`); `_read_or_load` runs a subclass's reading step or restores the cache.
"""
from __future__ import annotations

import dataclasses
import logging
import os
from collections import Counter
from typing import TYPE_CHECKING, Any, Callable, Dict, Iterable, List, Optional, Sequence, Set, Union

import numpy as np

from nanodet_ghost.data.image_io import (
    ImageInfo,
    ImageReadError,
    current_max_missing_fraction,
    inspect_image,
    read_image,
    read_image_size,
)
from nanodet_ghost.data.label_cache import LabelCache
from nanodet_ghost.data.records import ImageRecord, RecordBuilder, RecordTable

if TYPE_CHECKING:
    from nanodet_ghost.data.config import DatasetConfig

logger = logging.getLogger(__name__)

__all__ = ["DatasetError", "ImageReadError", "ImageRecord", "DetectionSource"]

_MAX_EXAMPLES = 3
_PLURALS = {"box": "boxes", "image": "images", "region": "regions", "file": "files",
            "mismatch": "mismatches"}
# Skips that are a choice of the user rather than dirt in the data.
_BENIGN_SKIPS = {"background image"}
# Skip kinds that drop a whole image (the others drop boxes).
_IMAGE_SKIPS = {"missing image", "unreadable image", "missing annotation file", "background image"}


class DatasetError(ValueError):
    """Malformed dataset files; the message names the file and the problem (line / position)."""


def _plural(kind: str, n: int) -> str:
    if n == 1:
        return kind
    words = kind.split(" ")
    for i, word in enumerate(words):
        if word in _PLURALS:
            words[i] = _PLURALS[word]
            break
    return " ".join(words)


def _as_boxes(boxes: Any) -> np.ndarray:
    return np.asarray(boxes, dtype=np.float64).reshape(-1, 4)


class DetectionSource:
    """Base class of the raw-record sources (see docs/contracts.md, "Raw records").

    Attributes: `class_names: list[str]`, `category_ids: list[int]` (contiguous label -> COCO
    category id), `skipped: Counter[str]` (dropped images / boxes by kind), `fixed: Counter[str]`
    (kept after repair, e.g. clipped boxes), `name` (used in log lines), `label_cache` (the
    label cache file read or written, else None).
    """

    class_names: List[str]
    category_ids: List[int]

    def __init__(self, name: str, keep_background: bool = True) -> None:
        self.name = name
        self.keep_background = keep_background
        self.layout = ""  # the folder layout that was read, e.g. "VOC Annotations/ + JPEGImages/"
        self.class_names = []
        self.category_ids = []
        self.skipped: Counter = Counter()
        self.fixed: Counter = Counter()
        self.flagged: Counter = Counter()
        self._examples: Dict[str, List[str]] = {}
        self._files: Counter = Counter()  # distinct files per kind
        self._last_file: Dict[str, str] = {}
        # filled by `_add_image` while reading, flattened by `_finish`
        self._records: Union[RecordBuilder, RecordTable] = RecordBuilder()
        self._size_warned: Set[int] = set()
        # a JPEG cut mid-scan with at most this fraction missing is used (data.max_missing_fraction)
        self.max_missing_fraction = current_max_missing_fraction()
        self.label_cache: Optional[str] = None

    # ---------------------------------------------------------------- public interface
    def __len__(self) -> int:
        return len(self._records)

    def load_image(self, index: int) -> np.ndarray:
        """uint8 [H, W, 3] BGR image; raises `ImageReadError(path, problem)`."""
        rec = self._records[index]
        img = read_image(rec.path, self.max_missing_fraction)
        if img.shape[:2] != (rec.height, rec.width) and index not in self._size_warned:
            self._size_warned.add(index)
            logger.warning("%s: decoded image is %dx%d but the annotation says %dx%d; boxes may "
                           "be misplaced", rec.path, img.shape[1], img.shape[0], rec.width,
                           rec.height)
        return img

    def get_annotation(self, index: int) -> Dict[str, Any]:
        """dict(image_id, file_name, height, width, boxes float32 [N,4] xyxy, labels int64 [N],
        ignore float32 [M,4] xyxy, ignore_labels int64 [M]); arrays are copies."""
        rec = self._records[index]
        return dict(
            image_id=rec.image_id,
            file_name=rec.file_name,
            height=rec.height,
            width=rec.width,
            boxes=rec.boxes.copy(),
            labels=rec.labels.copy(),
            ignore=rec.ignore.copy(),
            ignore_labels=rec.ignore_labels.copy(),
        )

    @classmethod
    def from_config(cls, cfg: "DatasetConfig", class_names: Sequence[str],
                    cache_labels: bool = False) -> "DetectionSource":
        """Build from a `data.<split>` config node; `class_names` is `data.class_names`,
        `cache_labels` is `data.cache_labels`."""
        raise NotImplementedError(f"{cls.__name__} does not implement from_config")

    def image_path(self, index: int) -> str:
        return self._records[index].path

    @property
    def records(self) -> RecordTable:
        """All records as flat arrays (see `data/records.py`); read-only."""
        if not isinstance(self._records, RecordTable):
            raise RuntimeError(f"{self.name}: records are still being read")
        return self._records

    @property
    def num_boxes(self) -> int:
        return self._records.num_boxes

    @property
    def num_ignore(self) -> int:
        return self._records.num_ignore

    def to_coco(self) -> Dict[str, Any]:
        """COCO instances-format ground truth of the kept images (ignore regions: iscrowd=1).

        Boxes are `[x, y, w, h]` in original pixels; annotation ids run from 1.
        """
        images, annotations = [], []
        for rec in self._records:
            images.append(dict(id=rec.image_id, file_name=rec.file_name, height=rec.height,
                               width=rec.width))
            for boxes, labels, areas, crowd in ((rec.boxes, rec.labels, rec.areas, 0),
                                               (rec.ignore, rec.ignore_labels, rec.ignore_areas, 1)):
                for box, label, area in zip(boxes.tolist(), labels.tolist(), areas.tolist()):
                    x1, y1, x2, y2 = box
                    annotations.append(dict(
                        id=len(annotations) + 1, image_id=rec.image_id,
                        category_id=self.category_ids[label], bbox=[x1, y1, x2 - x1, y2 - y1],
                        area=area, iscrowd=crowd,
                    ))
        categories = [dict(id=cid, name=name, supercategory="")
                      for cid, name in zip(self.category_ids, self.class_names)]
        return dict(info=dict(description=self.name), licenses=[], images=images,
                    annotations=annotations, categories=categories)

    def summary(self) -> str:
        """One line: image / box counts, then what was skipped or repaired, with example files."""
        text = (f"{self.name}: {len(self)} images, {self.num_boxes} boxes, "
                f"{self.num_ignore} ignore regions")
        for verb, counts in (("skipped", self.skipped), ("repaired", self.fixed),
                             ("found", self.flagged)):
            parts = []
            for kind, n in sorted(counts.items()):
                examples = self._examples.get(kind, [])
                rest = self._files[kind] - len(examples)
                more = f", +{rest} more {_plural('file', rest)}" if rest > 0 else ""
                parts.append(f"{n} {_plural(kind, n)} ({', '.join(examples)}{more})")
            if parts:
                text += f"; {verb} " + ", ".join(parts)
        for note in self._summary_notes():
            text += f"; {note}"
        return text

    def _summary_notes(self) -> List[str]:
        """Trailing parts of the summary line; the layout that was read comes last."""
        return [f"layout: {self.layout}"] if self.layout else []

    # ---------------------------------------------------------------- for subclasses
    # Attributes of a subclass (json values) that the label cache saves and restores.
    _cached_attributes: Sequence[str] = ()

    def _read_or_load(self, read: Callable[[], Iterable[str]], cache: bool, place: str,
                      stem: str, identity: Dict[str, Any]) -> None:
        """Fill the source with `read()` (which calls `_add_image` and returns the files and
        folders its result depends on), or from the label cache when `cache` and the cache is
        up to date; then `_finish`. See `data/label_cache.py` for `place`, `stem`, `identity`.
        Never synchronises ranks itself (rank-0-only code may build a source under DDP); the
        training DataModule builds on rank 0 first (`label_cache.rank_zero_first`).
        """
        if not cache:
            read()
            self._finish()
            return
        self._read_through_cache(read, place, stem, identity)

    def _read_through_cache(self, read: Callable[[], Iterable[str]], place: str, stem: str,
                            identity: Dict[str, Any]) -> None:
        # the threshold decides which cut JPEGs count as repaired: part of what was verified
        cache = LabelCache(place, stem, {**identity, "max_missing_fraction": self.max_missing_fraction})
        if cache.load(self._restore_cached):
            self.label_cache = cache.path
            self._finish()
            return
        cache.prepare()
        try:
            watched = read()
            self._finish()
        except BaseException:
            cache.abandon()
            raise
        state = dict(
            class_names=list(self.class_names), category_ids=[int(c) for c in self.category_ids],
            layout=self.layout, skipped=dict(self.skipped), fixed=dict(self.fixed),
            flagged=dict(self.flagged), examples=self._examples, files=dict(self._files),
            attributes={name: getattr(self, name) for name in self._cached_attributes},
            summary=self.summary(),  # for whoever opens the file; restored sources make their own
        )
        arrays = dict(self._records.arrays(),
                      size_warned=np.array(sorted(self._size_warned), dtype=np.int64))
        self.label_cache = cache.save(state, arrays, watched)

    def _restore_cached(self, state: Dict[str, Any], arrays: Dict[str, np.ndarray]) -> None:
        """Take over what `_read_through_cache` saved; raises on content that does not fit."""
        records = RecordTable(arrays)
        size_warned = {int(i) for i in arrays["size_warned"]}
        if size_warned and not 0 <= min(size_warned) <= max(size_warned) < len(records):
            raise ValueError("size_warned indices outside the records")
        class_names = [str(n) for n in state["class_names"]]
        category_ids = [int(c) for c in state["category_ids"]]
        if len(class_names) != len(category_ids):
            raise ValueError("class_names and category_ids differ in length")
        counters = [Counter({str(k): int(n) for k, n in state[key].items()})
                    for key in ("skipped", "fixed", "flagged")]
        examples = {str(k): [str(f) for f in v] for k, v in state["examples"].items()}
        files = Counter({str(k): int(n) for k, n in state["files"].items()})
        attributes = dict(state["attributes"])
        if set(attributes) != set(self._cached_attributes):
            raise ValueError(f"attributes {sorted(attributes)}, expected "
                             f"{sorted(self._cached_attributes)}")
        self._records, self._size_warned = records, size_warned
        self.class_names, self.category_ids = class_names, category_ids
        self.layout = str(state["layout"])
        self.skipped, self.fixed, self.flagged = counters
        self._examples, self._files = examples, files
        for name, value in attributes.items():
            setattr(self, name, value)

    def _skip(self, kind: str, where: str, n: int = 1) -> None:
        """Count `n` dropped items of `kind` (e.g. "zero-size box") seen in file `where`."""
        self._count(self.skipped, kind, where, n)

    def _fix(self, kind: str, where: str, n: int = 1) -> None:
        """Count `n` items of `kind` that were kept after a repair (e.g. "clipped box")."""
        self._count(self.fixed, kind, where, n)

    def _flag(self, kind: str, where: str, n: int = 1) -> None:
        """Count `n` items of `kind` that are kept as they are but worth a mention."""
        self._count(self.flagged, kind, where, n)

    def _inspect_image(self, path: str, file_name: str,
                       need_size: bool = True) -> Optional[ImageInfo]:
        """Header facts of one image, its defects counted under `file_name`; None (skip counted)
        when the file is missing or its header is unreadable.

        With `need_size`, formats whose header gives no size are decoded to get it.
        """
        try:
            info = inspect_image(path, self.max_missing_fraction)
            if need_size and info.height is None:
                height, width = read_image_size(path)
                info = dataclasses.replace(info, height=height, width=width)
        except ImageReadError as e:
            self._skip("missing image" if e.problem == "file not found" else "unreadable image",
                       file_name)
            return None
        if info.extension_mismatch:
            ext = os.path.splitext(file_name)[1].lower()
            self._fix(f"{str(info.format).upper()} file with a {ext} extension", file_name)
        if info.missing_eoi and info.missing_fraction:
            self._fix("partly decoded JPEG", f"{file_name}: {info.missing_fraction:.2%} missing")
        elif info.missing_eoi:
            self._fix("JPEG file without an end-of-image marker", file_name)
        if info.problem:
            self._flag(f"{str(info.format).upper()} file that will not decode", file_name)
        return info

    def _count(self, counter: Counter, kind: str, where: str, n: int) -> None:
        if n <= 0:
            return
        counter[kind] += n
        examples = self._examples.setdefault(kind, [])
        if self._last_file.get(kind) == where:  # files are visited one after the other
            return
        self._last_file[kind] = where
        self._files[kind] += 1
        if len(examples) < _MAX_EXAMPLES:
            examples.append(where)

    def _clean_boxes(self, boxes: np.ndarray, width: int, height: int, where: str,
                     what: str) -> tuple:
        """Drop non-finite, zero/negative-size and wholly outside boxes; clip the rest.

        boxes: float64 [N, 4] xyxy. Returns (clipped boxes float64 [K, 4], keep mask bool [N]).
        """
        finite = np.isfinite(boxes).all(axis=1)
        safe = np.where(finite[:, None], boxes, 0.0)
        positive = finite & (safe[:, 2] > safe[:, 0]) & (safe[:, 3] > safe[:, 1])
        clipped = safe.copy()
        clipped[:, 0::2] = clipped[:, 0::2].clip(0, width)
        clipped[:, 1::2] = clipped[:, 1::2].clip(0, height)
        inside = (clipped[:, 2] > clipped[:, 0]) & (clipped[:, 3] > clipped[:, 1])
        keep = positive & inside
        changed = keep & (clipped != safe).any(axis=1)
        self._skip(f"non-finite {what}", where, int((~finite).sum()))
        self._skip(f"zero-size {what}", where, int((finite & ~positive).sum()))
        self._skip(f"{what} outside the image", where, int((positive & ~inside).sum()))
        self._fix(f"clipped {what}", where, int(changed.sum()))
        return clipped[keep], keep

    def _add_image(self, *, image_id: int, file_name: str, path: str, height: int, width: int,
                   boxes: Any, labels: Any, where: str, areas: Optional[Any] = None,
                   ignore: Any = (), ignore_labels: Any = (),
                   ignore_areas: Optional[Any] = None) -> bool:
        """Validate and store one image's annotations. Returns False if the image was dropped.

        boxes / ignore: [N, 4] xyxy original pixels; labels / ignore_labels: [N] contiguous;
        areas: [N] (default: box area after clipping). `where` names the annotation file in logs.
        """
        boxes, ignore = _as_boxes(boxes), _as_boxes(ignore)
        labels = np.asarray(labels, dtype=np.int64).reshape(-1)
        ignore_labels = np.asarray(ignore_labels, dtype=np.int64).reshape(-1)
        boxes, keep = self._clean_boxes(boxes, width, height, where, "box")
        ignore, keep_ignore = self._clean_boxes(ignore, width, height, where, "ignore region")
        labels, ignore_labels = labels[keep], ignore_labels[keep_ignore]
        areas = _areas(boxes, areas, keep)
        ignore_areas = _areas(ignore, ignore_areas, keep_ignore)
        if len(boxes) == 0 and not self.keep_background:
            self._skip("background image", where)
            return False
        self._records.append(ImageRecord(
            image_id=int(image_id), file_name=file_name, path=path, height=int(height),
            width=int(width), boxes=boxes.astype(np.float32), labels=labels, areas=areas,
            ignore=ignore.astype(np.float32), ignore_labels=ignore_labels,
            ignore_areas=ignore_areas,
        ))
        return True

    def _finish(self) -> None:
        """Log the summary once: WARNING if anything was skipped, repaired or flagged, else INFO.

        Raises `DatasetError` when no image is left.
        """
        if isinstance(self._records, RecordBuilder):
            self._records = self._records.build()
        if not self._records:
            raise DatasetError(self._nothing_left())
        dirty = (any(k not in _BENIGN_SKIPS for k in self.skipped) or bool(self.fixed)
                 or bool(self.flagged))
        logger.log(logging.WARNING if dirty else logging.INFO, "%s", self.summary())

    def _nothing_left(self) -> str:
        """Why the source holds no image (subclasses check "nothing found" with layout details)."""
        dropped = {k: n for k, n in self.skipped.items() if k in _IMAGE_SKIPS}
        if not dropped:
            where = f" (layout: {self.layout})" if self.layout else ""
            return f"{self.name}: no images found{where}"
        if set(dropped) == {"background image"}:
            return (f"{self.name}: all {dropped['background image']} images have no boxes and "
                    "keep_background is false, so no image is left; check class_names and the "
                    "labels, or set keep_background: true")
        return f"{self.name}: no usable image is left ({self.summary()})"


def _areas(boxes: np.ndarray, given: Optional[Any], keep: np.ndarray) -> np.ndarray:
    if given is None:
        return ((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])).astype(np.float64)
    return np.asarray(given, dtype=np.float64).reshape(-1)[keep]
