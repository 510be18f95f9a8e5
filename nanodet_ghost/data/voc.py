"""Pascal VOC xml source.

Layouts: `root/{JPEGImages, Annotations, ImageSets/Main/<split>.txt}` (split given, or all xml in
`Annotations/` when split is None), or a plain folder with `<stem>.xml` next to `<stem>.<ext>`.
Class names come from the config; `difficult=1` objects become ignore regions. Coordinates are
taken as written (no 1-pixel offset). The image size is read from the image header; the xml
`<size>` is only compared against it.
"""
from __future__ import annotations

import os
import xml.etree.ElementTree as ET
from typing import Dict, List, Optional, Sequence, Tuple

from nanodet_ghost.data.base import DatasetError, DetectionSource
from nanodet_ghost.data.config import DatasetConfig
from nanodet_ghost.data.image_io import IMAGE_EXTENSIONS, ImageReadError, read_image_size

_COORDS = ("xmin", "ymin", "xmax", "ymax")


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


class VocSource(DetectionSource):
    """Pascal VOC xml annotations; `class_names` fixes the label order (label = index).

    Listed images whose xml or image is missing, or whose image header is unreadable, are skipped
    and counted; zero-size / out-of-image boxes are handled by the base class.
    """

    def __init__(self, root: str, class_names: Sequence[str], split: Optional[str] = None,
                 keep_background: bool = True, name: Optional[str] = None) -> None:
        root = str(root)
        default_name = os.path.basename(os.path.normpath(root)) + (f" {split}" if split else "")
        super().__init__(name or default_name, keep_background)
        if not class_names:
            raise DatasetError(f"{root}: VOC datasets need class_names in the config")
        self.root = root
        self.class_names = [str(n) for n in class_names]
        self.category_ids = list(range(1, len(self.class_names) + 1))
        label_of = {n: i for i, n in enumerate(self.class_names)}
        ann_dir, img_dir, stems = self._layout(root, split)
        images_by_stem = _images_by_stem(img_dir)
        for image_id, stem in enumerate(stems):
            xml_path = os.path.join(ann_dir, stem + ".xml")
            where = stem + ".xml"
            if not os.path.isfile(xml_path):
                self._skip("missing annotation file", where)
                continue
            xml_root = parse_xml(xml_path)
            boxes, labels, difficult = parse_voc_objects(xml_path, xml_root, label_of)
            file_name = images_by_stem.get(stem) or _existing(img_dir, xml_root.findtext("filename"))
            if file_name is None:
                self._skip("missing image", where)
                continue
            img_path = os.path.join(img_dir, file_name)
            try:
                height, width = read_image_size(img_path)
            except ImageReadError:
                self._skip("unreadable image", file_name)
                continue
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
        self._finish()

    @staticmethod
    def _layout(root: str, split: Optional[str]) -> Tuple[str, str, List[str]]:
        """(annotation folder, image folder, stems in order) for the VOC or plain layout."""
        if not os.path.isdir(root):
            raise DatasetError(f"{root}: VOC root folder not found")
        voc_ann, voc_img = os.path.join(root, "Annotations"), os.path.join(root, "JPEGImages")
        if split:
            list_file = os.path.join(root, "ImageSets", "Main", f"{split}.txt")
            if not os.path.isfile(list_file):
                raise DatasetError(f"{list_file}: split list not found (split '{split}')")
            with open(list_file, "r", encoding="utf-8") as f:
                stems = [line.split()[0] for line in f if line.strip()]
            return voc_ann, voc_img, stems
        if os.path.isdir(voc_ann):
            img_dir = voc_img if os.path.isdir(voc_img) else voc_ann
            return voc_ann, img_dir, _xml_stems(voc_ann)
        return root, root, _xml_stems(root)

    @classmethod
    def from_config(cls, cfg: DatasetConfig, class_names: Sequence[str]) -> "VocSource":
        return cls(cfg.root, class_names, split=cfg.split, keep_background=cfg.keep_background,
                   name=cfg.name)


def _xml_stems(folder: str) -> List[str]:
    return sorted(os.path.splitext(f)[0] for f in os.listdir(folder) if f.lower().endswith(".xml"))


def _images_by_stem(folder: str) -> Dict[str, str]:
    """stem -> file name of the images in `folder` (the first extension in IMAGE_EXTENSIONS wins)."""
    found: Dict[str, str] = {}
    rank = {ext: i for i, ext in enumerate(IMAGE_EXTENSIONS)}
    try:
        names = sorted(os.listdir(folder),
                       key=lambda f: rank.get(os.path.splitext(f)[1].lower(), len(rank)))
    except OSError:
        return found
    for f in names:
        stem, ext = os.path.splitext(f)
        if ext.lower() in rank:
            found.setdefault(stem, f)
    return found


def _existing(folder: str, file_name: Optional[str]) -> Optional[str]:
    """`file_name` (from the xml) if it names a file in `folder`, else None."""
    if not file_name or not file_name.strip():
        return None
    file_name = os.path.basename(file_name.strip())
    return file_name if os.path.isfile(os.path.join(folder, file_name)) else None
