"""Pascal VOC xml source.

Layouts (folder names matched case-insensitively, `.xml` / `.jpg` / `.png` extensions too):
- VOC devkit: `root/{Annotations, JPEGImages, ImageSets/Main/<split>.txt}`; with `split: null`
  every xml in `Annotations/` is used, so `ImageSets` may be absent.
- Export layout: `root/{annotations, images}` (LabelImg, CVAT, Roboflow, Kaggle sets).
- Flat folder: `<stem>.xml` next to `<stem>.<ext>` (LabelImg's default).
- Nested: xml and images in matching sub-folders, e.g. `Annotations/batch1/x.xml` with
  `JPEGImages/batch1/x.jpg` (or `batch1/x.xml` next to `batch1/x.jpg` in a flat folder).

`split` picks, in this order: `ImageSets/Main/<split>.txt`; `annotations/<split>/` with
`images/<split>/`; a `root/<split>/` folder in any of the layouts above (Roboflow's
`train/ valid/ test/`). When none exists the error lists what was looked for.

Class names come from the config; `difficult=1` objects become ignore regions. Coordinates are
taken as written (no 1-pixel offset). The image size is read from the image header (EXIF
orientation applied); the xml `<size>` is only compared against it.
"""
from __future__ import annotations

import os
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

from nanodet_ghost.data import label_cache
from nanodet_ghost.data.base import DatasetError, DetectionSource
from nanodet_ghost.data.config import DatasetConfig
from nanodet_ghost.data.image_io import IMAGE_EXTENSIONS

_COORDS = ("xmin", "ymin", "xmax", "ymax")
_ANNOTATION_DIRS = ("annotations",)
_IMAGE_DIRS = ("jpegimages", "images")


def parse_xml(path: str) -> ET.Element:
    """Root of an xml file; malformed xml raises `DatasetError` with the file, line and column."""
    try:
        return ET.parse(path).getroot()
    except ET.ParseError as e:
        line, col = e.position
        raise DatasetError(f"{path}: invalid XML at line {line}, column {col}: {e}") from None
    except OSError as e:
        raise DatasetError(f"{path}: cannot read annotation file ({e.strerror or e})") from None


def _xml_size(root: ET.Element) -> Optional[Tuple[int, int]]:
    """(height, width) from `<size>`, or None when absent / unparsable / zero."""
    try:
        w = int(float(root.findtext("size/width", "")))
        h = int(float(root.findtext("size/height", "")))
    except ValueError:
        return None
    return (h, w) if h > 0 and w > 0 else None


def parse_voc_objects(xml_path: str, root: ET.Element,
                      label_of: Dict[str, int]) -> Tuple[List[List[float]], List[int], List[bool]]:
    """([xyxy], [label], [difficult]) of every `<object>`; unknown classes raise DatasetError."""
    boxes: List[List[float]] = []
    labels: List[int] = []
    difficult: List[bool] = []
    for k, obj in enumerate(root.iter("object")):
        name = (obj.findtext("name") or "").strip()
        if name not in label_of:
            raise DatasetError(f"{xml_path}: object {k} has class '{name}', which is not in "
                               f"class_names {list(label_of)}")
        bndbox = obj.find("bndbox")
        if bndbox is None:
            raise DatasetError(f"{xml_path}: object {k} ('{name}') has no <bndbox>")
        try:
            boxes.append([float(bndbox.findtext(c, "")) for c in _COORDS])
            flag = int(float((obj.findtext("difficult") or "0").strip() or 0))
        except ValueError:
            values = {c: bndbox.findtext(c) for c in _COORDS}
            raise DatasetError(f"{xml_path}: object {k} ('{name}') has a non-numeric box or "
                               f"difficult flag: {values}") from None
        labels.append(label_of[name])
        difficult.append(flag != 0)
    return boxes, labels, difficult


@dataclass
class VocLayout:
    """Where one split's files are. Stems are '/'-separated paths relative to `ann_dir` without
    the extension; the image of stem `a/b` is looked up as `img_dir/a/b.<ext>`."""

    description: str  # named in the summary line, e.g. "VOC Annotations/ + JPEGImages/"
    ann_dir: str
    img_dir: str
    stems: List[str]
    xml_files: Dict[str, str]  # stem -> xml path relative to ann_dir (keeps its case)


class VocSource(DetectionSource):
    """Pascal VOC xml annotations; `class_names` fixes the label order (label = index).

    Listed images whose xml or image is missing, or whose image header is unreadable, are skipped
    and counted; zero-size / out-of-image boxes are handled by the base class. No image found at
    all raises `DatasetError` naming the folders searched. With `cache_labels`, the result is
    cached in `root` (see `data/label_cache.py`), valid while every xml, the split list and the
    folders of the xml files and images keep their size and mtime.
    """

    def __init__(self, root: str, class_names: Sequence[str], split: Optional[str] = None,
                 keep_background: bool = True, name: Optional[str] = None,
                 cache_labels: bool = False) -> None:
        root = str(root)
        default_name = os.path.basename(os.path.normpath(root)) + (f" {split}" if split else "")
        super().__init__(name or default_name, keep_background)
        if not class_names:
            raise DatasetError(f"{root}: VOC datasets need class_names in the config")
        self.root = root
        self.class_names = [str(n) for n in class_names]
        self.category_ids = list(range(1, len(self.class_names) + 1))
        identity = dict(format="voc", paths=dict(root=root), class_names=self.class_names,
                        split=split, keep_background=keep_background)
        self._read_or_load(lambda: self._read(root, split), cache_labels, place=root,
                           stem=f"voc_{split or 'all'}", identity=identity)

    def _read(self, root: str, split: Optional[str]) -> List[str]:
        """Find the layout, read every xml and image header; the paths the result depends on."""
        label_of = {n: i for i, n in enumerate(self.class_names)}
        layout = find_voc_layout(root, split)
        self.layout = layout.description
        images = _files_by_stem(layout.img_dir, IMAGE_EXTENSIONS)
        for image_id, stem in enumerate(layout.stems):
            where = layout.xml_files.get(stem, stem + ".xml")
            if stem not in layout.xml_files:
                self._skip("missing annotation file", where)
                continue
            xml_path = os.path.join(layout.ann_dir, where)
            xml_root = parse_xml(xml_path)
            boxes, labels, difficult = parse_voc_objects(xml_path, xml_root, label_of)
            file_name = images.get(stem) or _named_in_xml(layout.img_dir, stem, xml_root)
            if file_name is None:
                self._skip("missing image", where)
                continue
            img_path = os.path.join(layout.img_dir, file_name)
            info = self._inspect_image(img_path, file_name)
            if info is None:
                continue
            height, width = int(info.height), int(info.width)
            if _xml_size(xml_root) not in (None, (height, width)):
                self._fix("xml size mismatch", where)
            self._add_image(
                image_id=image_id, file_name=file_name, path=img_path, height=height, width=width,
                where=where,
                boxes=[b for b, d in zip(boxes, difficult) if not d],
                labels=[c for c, d in zip(labels, difficult) if not d],
                ignore=[b for b, d in zip(boxes, difficult) if d],
                ignore_labels=[c for c, d in zip(labels, difficult) if d],
            )
        annotated = [s for s in layout.stems if s in layout.xml_files]
        if annotated and not self._records and self.skipped["missing image"] == len(annotated):
            raise DatasetError(
                f"{root}: none of the {len(annotated)} images named by the annotations was found "
                f"(layout: {layout.description}; e.g. no image '{annotated[0]}.<ext>' in "
                f"{layout.img_dir})")
        xml_paths = [os.path.join(layout.ann_dir, layout.xml_files.get(s, s)) for s in layout.stems]
        # where each image is (or would be) looked for: the folder of img_dir/<stem>
        image_stems = [os.path.join(layout.img_dir, s) for s in layout.stems]
        lists = os.path.join(root, "ImageSets", "Main")
        return [lists, os.path.join(lists, f"{split}.txt") if split else lists, layout.ann_dir,
                layout.img_dir, *xml_paths,
                *label_cache.folders_between(root, xml_paths + image_stems)]

    @classmethod
    def from_config(cls, cfg: DatasetConfig, class_names: Sequence[str],
                    cache_labels: bool = False) -> "VocSource":
        return cls(cfg.root, class_names, split=cfg.split, keep_background=cfg.keep_background,
                   name=cfg.name, cache_labels=cache_labels)


def find_voc_layout(root: str, split: Optional[str]) -> VocLayout:
    """The layout of a VOC root for `split` (see the module docstring); `DatasetError` naming
    what was looked for when there is none."""
    if not os.path.isdir(root):
        raise DatasetError(f"{root}: VOC root folder not found")
    ann_dir = _child_dir(root, _ANNOTATION_DIRS)
    img_dir = _child_dir(root, _IMAGE_DIRS)
    ann_name = os.path.basename(ann_dir) if ann_dir else "Annotations"
    img_name = os.path.basename(img_dir) if img_dir else ann_name
    if split:
        list_file = os.path.join(root, "ImageSets", "Main", f"{split}.txt")
        if os.path.isfile(list_file) and not ann_dir:
            raise DatasetError(f"{list_file} lists split '{split}' but {root} has no "
                               "Annotations/ folder")
        if os.path.isfile(list_file):
            with open(list_file, "r", encoding="utf-8") as f:
                stems = [line.split()[0] for line in f if line.strip()]
            return VocLayout(f"VOC {ann_name}/ + {img_name}/, ImageSets/Main/{split}.txt",
                             ann_dir, img_dir or ann_dir, stems,
                             _files_by_stem(ann_dir, (".xml",)))
        if ann_dir and os.path.isdir(os.path.join(ann_dir, split)):
            split_imgs = os.path.join(img_dir, split) if img_dir else ""
            split_imgs = split_imgs if os.path.isdir(split_imgs) else os.path.join(ann_dir, split)
            return _all_xml(f"VOC {ann_name}/{split}/ + {os.path.relpath(split_imgs, root)}/",
                            os.path.join(ann_dir, split), split_imgs)
        if os.path.isdir(os.path.join(root, split)):
            inner = find_voc_layout(os.path.join(root, split), None)
            inner.description = inner.description.replace("VOC ", f"VOC {split}/: ", 1)
            return inner
        lists = os.path.join(root, "ImageSets", "Main")
        known = sorted(os.path.splitext(f)[0] for f in _listdir(lists) if f.endswith(".txt"))
        raise DatasetError(
            f"{list_file}: split list not found (split '{split}'); also looked for "
            f"{ann_name}/{split}/ and {split}/ in {root}"
            + (f"; ImageSets/Main lists the splits {known}" if known else "")
            + (f"; set split: null to use every xml in {ann_name}/" if ann_dir else ""))
    if ann_dir:
        return _all_xml(f"VOC {ann_name}/ + {img_name}/", ann_dir, img_dir or ann_dir)
    xml_files = _files_by_stem(root, (".xml",))
    if xml_files:
        return VocLayout("VOC flat folder (xml beside the images)", root, root,
                         sorted(xml_files), xml_files)
    raise DatasetError(
        f"{root}: no VOC annotations found; looked for Annotations/**/*.xml (with JPEGImages/), "
        "annotations/**/*.xml (with images/) and **/*.xml beside the images")


def _all_xml(description: str, ann_dir: str, img_dir: str) -> VocLayout:
    xml_files = _files_by_stem(ann_dir, (".xml",))
    if not xml_files:
        raise DatasetError(f"{ann_dir}: no .xml annotation files in this folder or below "
                           f"(layout: {description})")
    return VocLayout(description, ann_dir, img_dir, sorted(xml_files), xml_files)


def _listdir(folder: str) -> List[str]:
    try:
        return sorted(os.listdir(folder))
    except OSError:
        return []


def _child_dir(root: str, lower_names: Sequence[str]) -> Optional[str]:
    """The sub-folder of `root` whose lower-cased name is the first of `lower_names` present."""
    by_lower = {f.lower(): f for f in _listdir(root) if os.path.isdir(os.path.join(root, f))}
    for name in lower_names:
        if name in by_lower:
            return os.path.join(root, by_lower[name])
    return None


def _files_by_stem(folder: str, extensions: Sequence[str]) -> Dict[str, str]:
    """'/'-separated stem -> path relative to `folder`, for files below `folder` whose lower-cased
    extension is in `extensions` (the earliest extension wins when a stem has several)."""
    rank = {ext: i for i, ext in enumerate(extensions)}
    found: Dict[str, Tuple[int, str]] = {}
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames.sort()
        rel_dir = os.path.relpath(dirpath, folder)
        for f in sorted(filenames):
            stem, ext = os.path.splitext(f)
            r = rank.get(ext.lower())
            if r is None:
                continue
            rel = f if rel_dir == "." else os.path.join(rel_dir, f)
            key = (stem if rel_dir == "." else os.path.join(rel_dir, stem)).replace(os.sep, "/")
            if key not in found or r < found[key][0]:
                found[key] = (r, rel)
    return {k: v for k, (_, v) in found.items()}


def _named_in_xml(img_dir: str, stem: str, xml_root: ET.Element) -> Optional[str]:
    """The xml's `<filename>`, in the stem's sub-folder of `img_dir`, when that file exists."""
    file_name = (xml_root.findtext("filename") or "").strip()
    if not file_name:
        return None
    sub = os.path.dirname(stem)
    rel = os.path.join(sub, os.path.basename(file_name)) if sub else os.path.basename(file_name)
    return rel if os.path.isfile(os.path.join(img_dir, rel)) else None
