"""Training and validation pipelines: raw record (image + annotation) -> sample.

A raw record is `img` uint8 [h, w, 3] BGR plus the annotation dict of a source (see
docs/contracts.md "Raw records"). A sample is
`dict(img=float32 [3, H, W], gt_boxes=float32 [N, 4] xyxy input pixels, gt_labels=int64 [N],
gt_ignore=float32 [M, 4], meta=dict(image_id, file_name, orig_hw, input_hw, warp_matrix))`,
all numpy (`collate` makes the tensors). Randomness comes only from the `rng` argument, so a
sample is reproducible from its generator state.
"""
from __future__ import annotations

import math
from typing import Any, Dict, List, Optional, Protocol, Sequence, Tuple

import numpy as np

from nanodet_ghost.data.transforms import (
    color_normalize,
    keep_boxes,
    preprocess_image,
    random_color_affine,
    random_shape_matrix,
    resize_matrix,
    scale_matrix,
    translation_matrix,
    warp_boxes,
    warp_image,
)

Record = Tuple[np.ndarray, Dict[str, Any]]  # (img uint8 [h, w, 3] BGR, annotation dict)
Sample = Dict[str, Any]
# (img, annotation, placement 3x3 image -> canvas, visible crop (x0, y0, x1, y1) in image pixels)
Tile = Tuple[np.ndarray, Dict[str, Any], np.ndarray, Tuple[int, int, int, int]]

NANODET_MEAN_BGR = (103.53, 116.28, 123.675)
NANODET_STD_BGR = (57.375, 57.12, 58.395)


class Pipeline(Protocol):
    """What `DetectionDataset` needs from a pipeline."""

    def num_extra_images(self, rng: np.random.Generator) -> int:
        """How many more random records the next call wants (3 for a mosaic, else 0)."""

    def __call__(self, img: np.ndarray, ann: Dict[str, Any], rng: np.random.Generator,
                 extra: Sequence[Record] = ()) -> Sample:
        """Turn a record (plus `extra` records) into a sample."""


def _ignore_of(ann: Dict[str, Any]) -> np.ndarray:
    ignore = ann.get("ignore")
    if ignore is None:
        return np.zeros((0, 4), np.float32)
    return np.asarray(ignore, np.float32).reshape(-1, 4)


def _make_sample(chw: np.ndarray, boxes: np.ndarray, labels: np.ndarray, ignore: np.ndarray,
                 ann: Dict[str, Any], orig_hw: Tuple[int, int], m: np.ndarray) -> Sample:
    meta = dict(
        image_id=int(ann["image_id"]),
        file_name=str(ann["file_name"]),
        orig_hw=(int(orig_hw[0]), int(orig_hw[1])),
        input_hw=(int(chw.shape[1]), int(chw.shape[2])),
        warp_matrix=np.asarray(m, np.float32),
    )
    return dict(
        img=chw,
        gt_boxes=np.asarray(boxes, np.float32).reshape(-1, 4),
        gt_labels=np.asarray(labels, np.int64).reshape(-1),
        gt_ignore=np.asarray(ignore, np.float32).reshape(-1, 4),
        meta=meta,
    )


class ValPipeline:
    """Letterbox / stretch resize and normalisation only (`transforms.preprocess_image`).

    Boxes are mapped into input pixels; only boxes that end up empty are dropped.
    """

    def __init__(
        self,
        input_size: Sequence[int],
        keep_ratio: bool = True,
        mean: Sequence[float] = NANODET_MEAN_BGR,
        std: Sequence[float] = NANODET_STD_BGR,
    ) -> None:
        self.input_size = (int(input_size[0]), int(input_size[1]))
        self.keep_ratio = keep_ratio
        self.mean = tuple(float(v) for v in mean)
        self.std = tuple(float(v) for v in std)

    def num_extra_images(self, rng: np.random.Generator) -> int:
        return 0

    def __call__(self, img: np.ndarray, ann: Dict[str, Any],
                 rng: Optional[np.random.Generator] = None, extra: Sequence[Record] = ()) -> Sample:
        chw, meta = preprocess_image(img, self.input_size, self.keep_ratio, self.mean, self.std)
        m = meta["warp_matrix"].astype(np.float64)
        w, h = self.input_size
        boxes = warp_boxes(ann["boxes"], m, w, h)
        keep = keep_boxes(boxes, 0.0)
        ignore = warp_boxes(_ignore_of(ann), m, w, h)
        ignore = ignore[keep_boxes(ignore, 0.0)]
        labels = np.asarray(ann["labels"], np.int64).reshape(-1)
        return _make_sample(chw, boxes[keep], labels[keep], ignore, ann, img.shape[:2], m)


class TrainPipeline:
    """NanoDet's training augmentation: one random warp per sample, colour jitter, normalisation.

    The arguments after `std` are the fields of `AugmentConfig` (same names, same meaning):
    `scale` range, per-axis `stretch` ranges `[[x_lo, x_hi], [y_lo, y_hi]]`, `rotation` and
    `shear` in degrees, `perspective`, `translate` (fraction of the size), `flip` and `flip_vertical`
    probabilities, `brightness` (fraction of 255), `contrast` and `saturation` ranges, `multi_scale` (ratio range
    of the input size, drawn per sample and rounded to multiples of 32), `mosaic` probability,
    `mosaic_scale` (the zoom range of mosaic samples instead of `scale`) and `min_box_size` in input
    pixels.
    """

    def __init__(
        self,
        input_size: Sequence[int],
        keep_ratio: bool = True,
        mean: Sequence[float] = NANODET_MEAN_BGR,
        std: Sequence[float] = NANODET_STD_BGR,
        scale: Sequence[float] = (0.6, 1.4),
        stretch: Sequence[Sequence[float]] = ((1.0, 1.0), (1.0, 1.0)),
        rotation: float = 0.0,
        shear: float = 0.0,
        perspective: float = 0.0,
        translate: float = 0.2,
        flip: float = 0.5,
        flip_vertical: float = 0.0,
        brightness: float = 0.2,
        contrast: Sequence[float] = (0.6, 1.4),
        saturation: Sequence[float] = (0.5, 1.2),
        multi_scale: Optional[Sequence[float]] = None,
        mosaic: float = 0.0,
        mosaic_scale: Optional[Sequence[float]] = None,
        min_box_size: float = 2.0,
    ) -> None:
        self.input_size = (int(input_size[0]), int(input_size[1]))
        self.keep_ratio = keep_ratio
        self.mean = tuple(float(v) for v in mean)
        self.std = tuple(float(v) for v in std)
        self.shape_kwargs = dict(
            scale=(float(scale[0]), float(scale[1])),
            stretch=tuple((float(a), float(b)) for a, b in stretch),
            rotation=float(rotation),
            shear=float(shear),
            perspective=float(perspective),
            translate=float(translate),
            flip=float(flip),
            flip_vertical=float(flip_vertical),
        )
        self.color_kwargs = dict(
            brightness=float(brightness),
            contrast=(float(contrast[0]), float(contrast[1])),
            saturation=(float(saturation[0]), float(saturation[1])),
        )
        self.multi_scale = None if multi_scale is None else (float(multi_scale[0]),
                                                             float(multi_scale[1]))
        self.mosaic = float(mosaic)
        # A mosaic sample draws its warp with `mosaic_scale` in place of `scale`.
        self.mosaic_shape_kwargs = self.shape_kwargs if mosaic_scale is None else {
            **self.shape_kwargs, "scale": (float(mosaic_scale[0]), float(mosaic_scale[1]))}
        self.min_box_size = float(min_box_size)

    def sample_input_size(self, rng: np.random.Generator) -> Tuple[int, int]:
        """(W, H) of the next sample: `input_size`, or a multi-scale draw (multiples of 32)."""
        if self.multi_scale is None:
            return self.input_size
        ratio = rng.uniform(*self.multi_scale)
        return tuple(max(32, int(round(s * ratio / 32.0)) * 32) for s in self.input_size)

    def num_extra_images(self, rng: np.random.Generator) -> int:
        return 3 if self.mosaic > 0 and rng.random() < self.mosaic else 0

    def __call__(self, img: np.ndarray, ann: Dict[str, Any], rng: np.random.Generator,
                 extra: Sequence[Record] = ()) -> Sample:
        """Augment one record, or a 2x2 mosaic of it and the 3 records in `extra`."""
        dst_w, dst_h = self.sample_input_size(rng)
        if extra:
            canvas = (2 * dst_w, 2 * dst_h)
            tiles = _mosaic_layout([(img, ann)] + list(extra), canvas, dst_w, dst_h, rng)
        else:
            h, w = img.shape[:2]
            canvas = (w, h)
            tiles = [(img, ann, np.eye(3), (0, 0, w, h))]
        m_canvas = resize_matrix(canvas, (dst_w, dst_h), self.keep_ratio) @ random_shape_matrix(
            rng, canvas, **(self.mosaic_shape_kwargs if extra else self.shape_kwargs))

        out = np.zeros((dst_h, dst_w, 3), np.uint8) if extra else None
        boxes_all: List[np.ndarray] = []
        labels_all: List[np.ndarray] = []
        ignore_all: List[np.ndarray] = []
        for tile_img, tile_ann, place, (x0, y0, x1, y1) in tiles:
            m = m_canvas @ place
            if out is None:
                out = warp_image(tile_img, m, (dst_w, dst_h))
            else:
                # Paste the visible crop only; the other tiles' pixels stay where it does not land.
                crop = tile_img[y0:y1, x0:x1]
                warp_image(crop, m @ translation_matrix(x0, y0), (dst_w, dst_h), dst=out)
            boxes, labels = _crop_boxes(tile_ann["boxes"], (x0, y0, x1, y1),
                                        np.asarray(tile_ann["labels"], np.int64).reshape(-1))
            boxes = warp_boxes(boxes, m, dst_w, dst_h)
            keep = keep_boxes(boxes, self.min_box_size)
            boxes_all.append(boxes[keep])
            labels_all.append(labels[keep])
            ignore, _ = _crop_boxes(_ignore_of(tile_ann), (x0, y0, x1, y1))
            ignore = warp_boxes(ignore, m, dst_w, dst_h)
            ignore_all.append(ignore[keep_boxes(ignore, 1.0)])

        gain, offset, sat = random_color_affine(rng, **self.color_kwargs)
        chw = color_normalize(out, self.mean, self.std, gain, offset, sat)
        return _make_sample(chw, np.concatenate(boxes_all), np.concatenate(labels_all),
                            np.concatenate(ignore_all), ann, img.shape[:2], m_canvas @ tiles[0][2])


def _crop_boxes(boxes: np.ndarray, rect: Tuple[int, int, int, int],
                labels: Optional[np.ndarray] = None) -> Tuple[np.ndarray, np.ndarray]:
    """Clip xyxy boxes to `rect` (x0, y0, x1, y1); drop the empty ones (and their labels)."""
    boxes = np.asarray(boxes, np.float32).reshape(-1, 4).copy()
    if labels is None:
        labels = np.zeros(len(boxes), np.int64)
    boxes[:, 0::2] = boxes[:, 0::2].clip(rect[0], rect[2])
    boxes[:, 1::2] = boxes[:, 1::2].clip(rect[1], rect[3])
    keep = keep_boxes(boxes, 0.0)
    return boxes[keep], labels[keep]


def _mosaic_layout(records: Sequence[Record], canvas: Tuple[int, int], tile_w: int, tile_h: int,
                   rng: np.random.Generator) -> List[Tile]:
    """YOLOX-style 2x2 mosaic on a `canvas` (2W, 2H) around a random centre.

    Each image is scaled to fit (W, H) and put in its quadrant, touching the centre. Returns per
    image `(img, ann, placement 3x3 image->canvas, visible crop (x0, y0, x1, y1) in the image)`.
    """
    cw, ch = canvas
    xc = rng.uniform(0.5 * tile_w, 1.5 * tile_w)
    yc = rng.uniform(0.5 * tile_h, 1.5 * tile_h)
    tiles = []
    for k, (img, ann) in enumerate(records[:4]):
        h, w = img.shape[:2]
        r = min(tile_w / w, tile_h / h)
        sw, sh = w * r, h * r
        left = xc - sw if k in (0, 2) else xc
        top = yc - sh if k in (0, 1) else yc
        # Visible part of the tile on the canvas, back in image pixels.
        x0 = max(0, int(math.floor((max(left, 0.0) - left) / r)))
        y0 = max(0, int(math.floor((max(top, 0.0) - top) / r)))
        x1 = min(w, int(math.ceil((min(left + sw, cw) - left) / r)))
        y1 = min(h, int(math.ceil((min(top + sh, ch) - top) / r)))
        place = translation_matrix(left, top) @ scale_matrix(r, r)
        tiles.append((img, ann, place, (x0, y0, x1, y1)))
    return tiles
