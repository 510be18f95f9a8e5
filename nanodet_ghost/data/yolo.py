"""YOLO txt source: a dataset folder, or an ultralytics `data.yaml`.

Layouts (`root` and `split` of the `data.<split>` config):
- Folder: `root/images[/<split>]/**/<stem>.<ext>` with `root/labels[/<split>]/**/<stem>.txt`.
- data.yaml: `root` is the yaml file, or a folder holding `data.yaml` (and no `images/<split>/`);
  `split` picks its `train` / `val` / `test` entry (required). Each entry is an image folder
  (searched recursively), a `.txt` file listing image paths, or a list of those. Entries are
  relative to the yaml's `path:` (itself relative to the yaml's folder; default that folder); an
  entry `../x` that does not exist is also tried as `x`, as ultralytics does for Roboflow exports.
  Lines of a list file are absolute or relative to the list file's folder (`./images/a.jpg`).
  Labels are found as ultralytics finds them: the last `images` folder of the image path
  replaced by `labels`, and the extension by `.txt`.

Each label line is `cls cx cy w h`, the box centre and size normalised to [0, 1] by the image
width / height (EXIF orientation applied, as ultralytics does). A missing or empty label file
means a background image. Class names come from the config or from the yaml's `names:` (a list
or an `{index: name}` dict); when both are present they must agree.
"""
from __future__ import annotations

import os
from typing import Any, Dict, List, Optional, Sequence, Tuple

import yaml

from nanodet_ghost.data import label_cache
from nanodet_ghost.data.base import DatasetError, DetectionSource
from nanodet_ghost.data.config import DatasetConfig
from nanodet_ghost.data.image_io import IMAGE_EXTENSIONS

# Normalised values written with limited precision may overshoot 1 by a rounding step.
_EPS = 1e-6
_YAML_NAMES = ("data.yaml", "data.yml")

# (image path, file_name, label path, label path as the summary names it)
ImageList = List[Tuple[str, str, str, str]]


def load_yaml(path: str) -> Dict[str, Any]:
    """A yaml mapping; invalid yaml raises `DatasetError` with the file, line and column."""
    try:
        with open(path, "r", encoding="utf-8") as f:
            data = yaml.safe_load(f)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise DatasetError(f"{path}: invalid YAML{where}: {getattr(e, 'problem', e)}") from None
    except OSError as e:
        raise DatasetError(f"{path}: cannot read ({e.strerror or e})") from None
    return data if isinstance(data, dict) else {}


def yaml_names(path: str, data: Dict[str, Any]) -> List[str]:
    """Class names from a YOLO yaml mapping (`names:` list, or dict keyed 0..n-1)."""
    names: Any = data.get("names")
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


def read_yaml_names(path: str) -> List[str]:
    """Class names from a YOLO `data.yaml` file."""
    return yaml_names(path, load_yaml(path))


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


def label_path_of(image_path: str) -> str:
    """Ultralytics' rule: the last `images` folder becomes `labels`, the extension `.txt`."""
    images, labels = f"{os.sep}images{os.sep}", f"{os.sep}labels{os.sep}"
    return os.path.splitext(labels.join(image_path.rsplit(images, 1)))[0] + ".txt"


class YoloSource(DetectionSource):
    """YOLO-format dataset at `root` (a folder or a data.yaml, see the module docstring).

    Images whose header cannot be read are skipped and counted; boxes are converted to xyxy
    pixels with the image size from the header and checked by the base class. No image found
    raises `DatasetError` naming what was looked for. With `cache_labels`, the result is cached
    in `root` (or beside the data.yaml, see `data/label_cache.py`), valid while the yaml, list
    files, label files and the folders of images and labels keep their size and mtime.
    """

    _cached_attributes = ("missing_labels",)

    def __init__(self, root: str, class_names: Optional[Sequence[str]] = None,
                 split: Optional[str] = None, keep_background: bool = True,
                 name: Optional[str] = None, cache_labels: bool = False) -> None:
        root = str(root)
        base_name = os.path.basename(os.path.normpath(root))
        if os.path.splitext(base_name)[1].lower() in (".yaml", ".yml"):
            base_name = os.path.basename(os.path.dirname(os.path.abspath(root)))
        super().__init__(name or base_name + (f" {split}" if split else ""), keep_background)
        self.root = root
        self.missing_labels = 0
        identity = dict(format="yolo", paths=dict(root=root),
                        class_names=None if class_names is None else [str(n) for n in class_names],
                        split=split, keep_background=keep_background)
        place = root if os.path.isdir(root) else os.path.dirname(root)
        self._read_or_load(lambda: self._read(root, split, class_names), cache_labels, place=place,
                           stem=f"yolo_{split or 'all'}", identity=identity)

    def _read(self, root: str, split: Optional[str],
              class_names: Optional[Sequence[str]]) -> List[str]:
        """Find the images, read every label file and image header; the paths the result
        depends on."""
        looked_at: List[str] = [root]
        images, yaml_path, self.layout = find_yolo_images(root, split, looked_at)
        self.class_names = _resolve_names(root, yaml_path, class_names)
        self.category_ids = list(range(1, len(self.class_names) + 1))
        for image_id, (img_path, file_name, label_path, where) in enumerate(images):
            info = self._inspect_image(img_path, file_name)
            if info is None:
                continue
            if os.path.isfile(label_path):
                rows, classes = parse_yolo_labels(label_path, len(self.class_names))
            else:
                # A missing label file is the YOLO convention for a background image.
                self.missing_labels += 1
                rows, classes = [], []
            height, width = int(info.height), int(info.width)
            boxes = [[(cx - w / 2) * width, (cy - h / 2) * height,
                      (cx + w / 2) * width, (cy + h / 2) * height] for cx, cy, w, h in rows]
            self._add_image(image_id=image_id, file_name=file_name, path=img_path, height=height,
                            width=width, boxes=boxes, labels=classes,
                            where=where)
        image_paths = [img for img, _, _, _ in images]
        label_paths = [label for _, _, label, _ in images]
        top = os.path.dirname(os.path.abspath(root)) if os.path.isfile(root) else root
        # every label file (edits), and the folders of images and labels (added or removed files)
        return [*looked_at, *label_paths,
                *label_cache.folders_between(top, image_paths + label_paths)]

    def _summary_notes(self) -> List[str]:
        notes = super()._summary_notes()
        if self.missing_labels:
            notes.insert(0, f"{self.missing_labels} images without a label file (background)")
        return notes

    @classmethod
    def from_config(cls, cfg: DatasetConfig, class_names: Sequence[str],
                    cache_labels: bool = False) -> "YoloSource":
        return cls(cfg.root, list(class_names) or None, split=cfg.split,
                   keep_background=cfg.keep_background, name=cfg.name, cache_labels=cache_labels)


def _relative(path: str, base: str) -> str:
    """`path` relative to `base` when it lies below it, else `path`."""
    rel = os.path.relpath(path, base)
    return path if rel.startswith("..") else rel


def _resolve_names(root: str, yaml_path: Optional[str],
                   class_names: Optional[Sequence[str]]) -> List[str]:
    from_yaml = read_yaml_names(yaml_path) if yaml_path else None
    if class_names:
        names = [str(n) for n in class_names]
        if from_yaml is not None and from_yaml != names:
            raise DatasetError(f"{yaml_path}: names {from_yaml} differ from the configured "
                               f"class_names {names}")
        return names
    if from_yaml is None:
        raise DatasetError(f"{root}: no class_names in the config and no data.yaml with 'names:'")
    return from_yaml


def find_yolo_images(root: str, split: Optional[str], looked_at: Optional[List[str]] = None,
                     ) -> Tuple[ImageList, Optional[str], str]:
    """([(image path, file_name, label path)], yaml path or None, layout description).

    `looked_at`, when given, receives the yaml, list files and folders that decided the list
    (for the label cache)."""
    looked_at = [] if looked_at is None else looked_at
    if os.path.isfile(root) and os.path.splitext(root)[1].lower() in (".yaml", ".yml"):
        return _yaml_images(root, split, looked_at)
    if not os.path.isdir(root):
        raise DatasetError(f"{root}: YOLO dataset folder or data.yaml not found")
    yaml_path = next((os.path.join(root, n) for n in _YAML_NAMES
                      if os.path.isfile(os.path.join(root, n))), None)
    img_dir = os.path.join(root, "images", split) if split else os.path.join(root, "images")
    lbl_dir = os.path.join(root, "labels", split) if split else os.path.join(root, "labels")
    looked_at += [os.path.join(root, n) for n in _YAML_NAMES] + [img_dir, lbl_dir]
    if not os.path.isdir(img_dir) and yaml_path is not None:
        return _yaml_images(yaml_path, split, looked_at)
    if not os.path.isdir(img_dir):
        rel = os.path.relpath(img_dir, root)
        raise DatasetError(f"{root}: no YOLO images found; looked for the folder {rel}/ and for "
                           f"{' / '.join(_YAML_NAMES)}")
    rel_images = _list_images(img_dir)
    if not rel_images:
        raise DatasetError(f"{img_dir}: no images ({', '.join(IMAGE_EXTENSIONS)}) in this folder "
                           "or below")
    images = []
    for rel in rel_images:
        label_path = os.path.join(lbl_dir, os.path.splitext(rel)[0] + ".txt")
        images.append((os.path.join(img_dir, rel), rel, label_path, _relative(label_path, root)))
    layout = f"YOLO {os.path.relpath(img_dir, root)}/ + {os.path.relpath(lbl_dir, root)}/"
    return images, yaml_path, layout


def _yaml_images(yaml_path: str, split: Optional[str],
                 looked_at: List[str]) -> Tuple[ImageList, str, str]:
    looked_at.append(yaml_path)
    data = load_yaml(yaml_path)
    entries = [k for k in ("train", "val", "test") if data.get(k)]
    if not split:
        raise DatasetError(f"{yaml_path}: set split to one of its image lists {entries}")
    entry = data.get(split)
    if not entry:
        raise DatasetError(f"{yaml_path}: no '{split}:' entry (it has {entries})")
    base = _dataset_root(yaml_path, data)
    paths: List[str] = []
    for item in entry if isinstance(entry, list) else [entry]:
        target = os.path.join(base, str(item))
        looked_at.append(target)
        if not os.path.exists(target) and str(item).startswith("../"):
            target = os.path.join(base, str(item)[3:])
            looked_at.append(target)
        if os.path.isdir(target):
            paths += [os.path.join(target, rel) for rel in _list_images(target)]
        elif os.path.isfile(target):
            paths += _listed_images(target)
        else:
            raise DatasetError(f"{yaml_path}: '{split}' entry {item!r} is neither a folder nor a "
                               f"list file (looked for {os.path.normpath(target)})")
    paths = sorted({os.path.normpath(p) for p in paths})
    if not paths:
        raise DatasetError(f"{yaml_path}: the '{split}' entry {entry!r} holds no images "
                           f"({', '.join(IMAGE_EXTENSIONS)})")
    images = []
    for p in paths:
        label_path = label_path_of(p)
        images.append((p, _relative(p, base), label_path, _relative(label_path, base)))
    layout = f"YOLO {os.path.basename(yaml_path)} '{split}': {entry}"
    return images, yaml_path, layout


def _dataset_root(yaml_path: str, data: Dict[str, Any]) -> str:
    """The yaml's `path:` (relative to the yaml's folder, else to the working directory), or
    the yaml's folder."""
    folder = os.path.dirname(os.path.abspath(yaml_path))
    path = data.get("path")
    if not path:
        return folder
    path = str(path)
    if os.path.isabs(path):
        return path
    beside = os.path.normpath(os.path.join(folder, path))
    return beside if os.path.isdir(beside) or not os.path.isdir(path) else os.path.abspath(path)


def _listed_images(list_file: str) -> List[str]:
    """Image paths of a list file (one per line; relative lines are relative to its folder)."""
    folder = os.path.dirname(os.path.abspath(list_file))
    try:
        with open(list_file, "r", encoding="utf-8") as f:
            lines = [line.strip() for line in f if line.strip()]
    except (OSError, UnicodeDecodeError) as e:
        raise DatasetError(f"{list_file}: cannot read the image list ({e})") from None
    return [os.path.join(folder, line) for line in lines
            if os.path.splitext(line)[1].lower() in IMAGE_EXTENSIONS]


def _list_images(img_dir: str) -> List[str]:
    """Image paths relative to `img_dir`, recursively, sorted."""
    found = []
    for dirpath, dirnames, filenames in os.walk(img_dir):
        dirnames.sort()
        for f in filenames:
            if os.path.splitext(f)[1].lower() in IMAGE_EXTENSIONS:
                found.append(os.path.relpath(os.path.join(dirpath, f), img_dir))
    return sorted(found)
