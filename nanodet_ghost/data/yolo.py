"""YOLO txt source: `root/images[/<split>]/**/<stem>.<ext>` with `root/labels[/<split>]/**/<stem>.txt`.

Each label line is `cls cx cy w h`, the box centre and size normalised to [0, 1] by the image
width / height. A missing or empty label file means a background image. Class names come from the
config or from `root/data.yaml` (`names:` as a list or an `{index: name}` dict); when both are
present they must agree.
"""
from __future__ import annotations

import os
from typing import Any, List, Optional, Sequence, Tuple

import yaml

from nanodet_ghost.data.base import DatasetError, DetectionSource
from nanodet_ghost.data.config import DatasetConfig
from nanodet_ghost.data.image_io import IMAGE_EXTENSIONS, ImageReadError, read_image_size

# Normalised values written with limited precision may overshoot 1 by a rounding step.
_EPS = 1e-6


def read_yaml_names(path: str) -> List[str]:
    """Class names from a YOLO `data.yaml` (`names:` list, or dict keyed 0..n-1)."""
    try:
        with open(path, "r", encoding="utf-8") as f:
            data = yaml.safe_load(f)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise DatasetError(f"{path}: invalid YAML{where}: {getattr(e, 'problem', e)}") from None
    names: Any = data.get("names") if isinstance(data, dict) else None
    if isinstance(names, dict):
        try:
            keys = sorted(int(k) for k in names)
        except (TypeError, ValueError):
            raise DatasetError(f"{path}: 'names' dict keys must be class indices") from None
        if keys != list(range(len(keys))):
            raise DatasetError(f"{path}: 'names' dict keys must be 0..{len(keys) - 1}, got {keys}")
        by_int = {int(k): v for k, v in names.items()}
        names = [by_int[k] for k in keys]
    if not isinstance(names, list) or not names:
        raise DatasetError(f"{path}: needs a non-empty 'names:' list or dict")
    return [str(n) for n in names]


def parse_yolo_labels(path: str, num_classes: int) -> Tuple[List[List[float]], List[int]]:
    """([[cx, cy, w, h] normalised], [class]) from a label file; bad lines raise DatasetError."""
    rows: List[List[float]] = []
    classes: List[int] = []
    try:
        with open(path, "r", encoding="utf-8") as f:
            lines = f.readlines()
    except UnicodeDecodeError as e:
        raise DatasetError(f"{path}: not UTF-8 text (byte {e.start})") from None
    for lineno, line in enumerate(lines, start=1):
        fields = line.split()
        if not fields:
            continue
        where = f"{path}:{lineno}"
        if len(fields) != 5:
            raise DatasetError(f"{where}: expected 5 fields 'cls cx cy w h', got {len(fields)}: "
                               f"{line.strip()!r}")
        try:
            cls_f = float(fields[0])
            values = [float(v) for v in fields[1:]]
        except ValueError:
            raise DatasetError(f"{where}: non-numeric value in {line.strip()!r}") from None
        if not 0 <= cls_f < num_classes or cls_f != int(cls_f):
            raise DatasetError(f"{where}: class {fields[0]} is not an integer in "
                               f"[0, {num_classes - 1}]")
        bad = [v for v in values if not -_EPS <= v <= 1 + _EPS]  # also catches nan
        if bad:
            raise DatasetError(f"{where}: values must be normalised to [0, 1], got "
                               f"{line.strip()!r}")
        rows.append(values)
        classes.append(int(cls_f))
    return rows, classes


class YoloSource(DetectionSource):
    """YOLO-format dataset rooted at `root` (see the module docstring for the layout).

    Images whose header cannot be read are skipped and counted; boxes are converted to xyxy
    pixels with the image size from the header and checked by the base class.
    """

    def __init__(self, root: str, class_names: Optional[Sequence[str]] = None,
                 split: Optional[str] = None, keep_background: bool = True,
                 name: Optional[str] = None) -> None:
        root = str(root)
        default_name = os.path.basename(os.path.normpath(root)) + (f" {split}" if split else "")
        super().__init__(name or default_name, keep_background)
        self.root = root
        self.class_names = self._resolve_names(root, class_names)
        self.category_ids = list(range(1, len(self.class_names) + 1))
        img_dir = os.path.join(root, "images", split) if split else os.path.join(root, "images")
        lbl_dir = os.path.join(root, "labels", split) if split else os.path.join(root, "labels")
        if not os.path.isdir(img_dir):
            raise DatasetError(f"{img_dir}: YOLO image folder not found")
        self.missing_labels = 0
        for image_id, rel in enumerate(_list_images(img_dir)):
            label_path = os.path.join(lbl_dir, os.path.splitext(rel)[0] + ".txt")
            if os.path.isfile(label_path):
                rows, classes = parse_yolo_labels(label_path, len(self.class_names))
            else:
                # A missing label file is the YOLO convention for a background image.
                self.missing_labels += 1
                rows, classes = [], []
            img_path = os.path.join(img_dir, rel)
            try:
                height, width = read_image_size(img_path)
            except ImageReadError:
                self._skip("unreadable image", rel)
                continue
            boxes = [[(cx - w / 2) * width, (cy - h / 2) * height,
                      (cx + w / 2) * width, (cy + h / 2) * height] for cx, cy, w, h in rows]
            self._add_image(image_id=image_id, file_name=rel, path=img_path, height=height,
                            width=width, boxes=boxes, labels=classes,
                            where=os.path.relpath(label_path, root))
        self._finish()

    def summary(self) -> str:
        text = super().summary()
        if self.missing_labels:
            text += f"; {self.missing_labels} images without a label file (background)"
        return text

    @staticmethod
    def _resolve_names(root: str, class_names: Optional[Sequence[str]]) -> List[str]:
        yaml_path = os.path.join(root, "data.yaml")
        from_yaml = read_yaml_names(yaml_path) if os.path.isfile(yaml_path) else None
        if class_names:
            names = [str(n) for n in class_names]
            if from_yaml is not None and from_yaml != names:
                raise DatasetError(f"{yaml_path}: names {from_yaml} differ from the configured "
                                   f"class_names {names}")
            return names
        if from_yaml is None:
            raise DatasetError(f"{root}: no class_names in the config and no data.yaml with "
                               "'names:'")
        return from_yaml

    @classmethod
    def from_config(cls, cfg: DatasetConfig, class_names: Sequence[str]) -> "YoloSource":
        return cls(cfg.root, list(class_names) or None, split=cfg.split,
                   keep_background=cfg.keep_background, name=cfg.name)


def _list_images(img_dir: str) -> List[str]:
    """Image paths relative to `img_dir`, recursively, sorted."""
    found = []
    for dirpath, dirnames, filenames in os.walk(img_dir):
        dirnames.sort()
        for f in filenames:
            if os.path.splitext(f)[1].lower() in IMAGE_EXTENSIONS:
                found.append(os.path.relpath(os.path.join(dirpath, f), img_dir))
    return sorted(found)
