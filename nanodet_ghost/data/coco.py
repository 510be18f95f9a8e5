"""COCO instances-json source: an image folder (`root`) plus `instances_*.json` (`ann_file`).

`file_name` is relative to the image folder and may hold sub-folders (`train2017/1.jpg`,
`a/b/c.jpg`). When none of the json's images is found there, `DatasetError` names one of them
and the folder searched (the json belongs to another image folder). Each image's header and tail
are read once, so PNGs named `.jpg`, JPEGs without an end marker, files that will not decode and
sizes that differ from the json (e.g. EXIF-rotated photos) are counted in the summary line.

Category ids (e.g. COCO's non-contiguous 1..90) map to contiguous labels in id order, or in the
order of `class_names` when given; `category_ids[label]` maps back. `bbox` `[x, y, w, h]` becomes
xyxy; `iscrowd=1` annotations become ignore regions. Original image ids and areas are kept, so
`to_coco()` reproduces the input ground truth for evaluation.
"""
from __future__ import annotations

import json
import os
from typing import Any, Dict, List, Optional, Sequence, Tuple

from nanodet_ghost.data import label_cache
from nanodet_ghost.data.base import DatasetError, DetectionSource
from nanodet_ghost.data.config import DatasetConfig


def load_json(path: str) -> Any:
    """Parse a json file; invalid json raises `DatasetError` with the file, line and column."""
    try:
        with open(path, "r", encoding="utf-8") as f:
            return json.load(f)
    except FileNotFoundError:
        raise DatasetError(f"{path}: annotation file not found") from None
    except json.JSONDecodeError as e:
        raise DatasetError(
            f"{path}: invalid JSON at line {e.lineno}, column {e.colno}: {e.msg}") from None
    except UnicodeDecodeError as e:
        raise DatasetError(f"{path}: not UTF-8 text (byte {e.start}): {e.reason}") from None


def _category_order(ann_file: str, categories: List[Dict[str, Any]],
                    class_names: Optional[Sequence[str]]) -> Tuple[List[str], List[int]]:
    """(class_names, category_ids) in label order; checks `class_names` against the json."""
    by_id = sorted(categories, key=lambda c: c["id"])
    names = [str(c["name"]) for c in by_id]
    if len(set(names)) != len(names):
        dup = sorted({n for n in names if names.count(n) > 1})
        raise DatasetError(f"{ann_file}: duplicate category names {dup}")
    if class_names is None or list(class_names) == names:
        return names, [int(c["id"]) for c in by_id]
    wanted = [str(n) for n in class_names]
    if sorted(wanted) != sorted(names):
        missing = sorted(set(names) - set(wanted))
        extra = sorted(set(wanted) - set(names))
        raise DatasetError(
            f"{ann_file}: class_names do not match the json categories "
            f"(in json only: {missing}; in class_names only: {extra}); json categories: {names}")
    id_of = {str(c["name"]): int(c["id"]) for c in by_id}
    return wanted, [id_of[n] for n in wanted]


def _require_keys(ann_file: str, obj: Any, keys: Sequence[str], what: str) -> None:
    if not isinstance(obj, dict):
        raise DatasetError(f"{ann_file}: {what} is not a json object")
    missing = [k for k in keys if k not in obj]
    if missing:
        raise DatasetError(f"{ann_file}: {what} lacks {missing}")


class CocoSource(DetectionSource):
    """Images in `img_dir` described by the COCO instances json `ann_file`.

    Images without non-crowd annotations are kept as background when `keep_background`, else
    dropped (counted). Images whose file is missing or empty are skipped and counted. With
    `cache_labels`, the result is cached beside the json (see `data/label_cache.py`), valid while
    the json and the folders of the images keep their size and mtime.
    """

    def __init__(self, img_dir: str, ann_file: str, class_names: Optional[Sequence[str]] = None,
                 keep_background: bool = True, name: Optional[str] = None,
                 cache_labels: bool = False) -> None:
        ann_file, img_dir = str(ann_file), str(img_dir)
        super().__init__(name or os.path.splitext(os.path.basename(ann_file))[0], keep_background)
        self.img_dir = img_dir
        identity = dict(format="coco", paths=dict(img_dir=img_dir, ann_file=ann_file),
                        class_names=None if class_names is None else [str(n) for n in class_names],
                        keep_background=keep_background)
        self._read_or_load(lambda: self._read(img_dir, ann_file, class_names), cache_labels,
                           place=os.path.dirname(ann_file),
                           stem=os.path.splitext(os.path.basename(ann_file))[0], identity=identity)

    def _read(self, img_dir: str, ann_file: str,
              class_names: Optional[Sequence[str]]) -> List[str]:
        """Read and check the json and the image headers; the paths the result depends on."""
        data = load_json(ann_file)
        _require_keys(ann_file, data, ("images", "annotations", "categories"), "the top level")
        for i, cat in enumerate(data["categories"]):
            _require_keys(ann_file, cat, ("id", "name"), f"categories[{i}]")
        self.class_names, self.category_ids = _category_order(ann_file, data["categories"],
                                                              class_names)
        label_of = {cid: label for label, cid in enumerate(self.category_ids)}
        per_image = self._group_annotations(ann_file, data["annotations"], label_of)
        folder = os.path.basename(os.path.normpath(img_dir))
        self.layout = f"COCO {os.path.basename(ann_file)} + {folder}/"
        seen_ids = set()
        image_paths = []
        for i, img in enumerate(data["images"]):
            _require_keys(ann_file, img, ("id", "file_name", "height", "width"), f"images[{i}]")
            image_id, file_name = int(img["id"]), str(img["file_name"])
            if image_id in seen_ids:
                raise DatasetError(f"{ann_file}: duplicate image id {image_id} ({file_name})")
            seen_ids.add(image_id)
            rows = per_image.pop(image_id, [])
            path = os.path.join(img_dir, file_name)
            image_paths.append(path)
            info = self._inspect_image(path, file_name, need_size=False)
            if info is None:
                continue
            height, width = int(img["height"]), int(img["width"])
            mismatch = info.height is not None and (info.height, info.width) != (height, width)
            boxes = [r[0] for r in rows if not r[3]]
            ignore = [r[0] for r in rows if r[3]]
            kept = self._add_image(
                image_id=image_id, file_name=file_name, path=path, height=height,
                width=width, where=file_name,
                boxes=boxes, labels=[r[1] for r in rows if not r[3]],
                areas=[r[2] for r in rows if not r[3]],
                ignore=ignore, ignore_labels=[r[1] for r in rows if r[3]],
                ignore_areas=[r[2] for r in rows if r[3]],
            )
            if mismatch and kept:
                self._flag("image whose size differs from the json", file_name)
                self._size_warned.add(len(self._records) - 1)  # said once, here
        missing = self.skipped["missing image"]
        if missing and missing == len(data["images"]):
            example = str(data["images"][0]["file_name"])
            raise DatasetError(
                f"{ann_file}: none of its {missing} images is in the image folder {img_dir} "
                f"(e.g. {os.path.join(img_dir, example)} does not exist); set root to the folder "
                "that file_name is relative to")
        orphans = sum(len(rows) for rows in per_image.values())
        if orphans:
            raise DatasetError(f"{ann_file}: {orphans} annotations refer to image ids that are "
                               f"not in 'images' (e.g. {sorted(per_image)[:3]})")
        return [ann_file, *label_cache.folders_between(img_dir, image_paths)]

    @staticmethod
    def _group_annotations(ann_file: str, annotations: List[Any],
                           label_of: Dict[int, int]) -> Dict[int, List[tuple]]:
        """image id -> [(xyxy, label, area, iscrowd)]."""
        per_image: Dict[int, List[tuple]] = {}
        for i, ann in enumerate(annotations):
            _require_keys(ann_file, ann, ("image_id", "category_id", "bbox"), f"annotations[{i}]")
            where = f"annotations[{i}] (id {ann.get('id', '?')})"
            cid = int(ann["category_id"])
            if cid not in label_of:
                raise DatasetError(f"{ann_file}: {where} has category_id {cid}, which is not in "
                                   "'categories'")
            bbox = ann["bbox"]
            if not isinstance(bbox, list) or len(bbox) != 4:
                raise DatasetError(f"{ann_file}: {where} bbox must be [x, y, w, h], got {bbox!r}")
            try:
                x, y, w, h = (float(v) for v in bbox)
            except (TypeError, ValueError):
                raise DatasetError(f"{ann_file}: {where} bbox is not numeric: {bbox!r}") from None
            area = float(ann["area"]) if ann.get("area") is not None else w * h
            per_image.setdefault(int(ann["image_id"]), []).append(
                ([x, y, x + w, y + h], label_of[cid], area, bool(ann.get("iscrowd", 0))))
        return per_image

    @classmethod
    def from_config(cls, cfg: DatasetConfig, class_names: Sequence[str],
                    cache_labels: bool = False) -> "CocoSource":
        if not cfg.ann_file:
            raise DatasetError(f"dataset '{cfg.name or cfg.root}': format coco needs ann_file")
        return cls(cfg.root, cfg.ann_file, list(class_names) or None,
                   keep_background=cfg.keep_background, name=cfg.name,
                   cache_labels=cache_labels)

