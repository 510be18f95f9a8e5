"""Transforms: boxes follow their objects through the full training warp, letterbox round trips."""
from __future__ import annotations

import subprocess
import sys
from typing import Dict, List, Tuple

import cv2
import numpy as np
import pytest

from nanodet_ghost.data.pipeline import NANODET_MEAN_BGR as MEAN
from nanodet_ghost.data.pipeline import NANODET_STD_BGR as STD
from nanodet_ghost.data.pipeline import TrainPipeline
from nanodet_ghost.data.transforms import (
    color_normalize,
    keep_boxes,
    preprocess_image,
    random_shape_matrix,
    resize_matrix,
    warp_boxes,
)

# 12 hues 30 degrees apart, full saturation (BGR). Colour jitter (brightness, contrast, grey-blend
# saturation) scales each pixel's chroma vector (pixel minus its channel mean) by a positive
# factor, so the hue direction identifies the painted object after any jitter.
HUES = np.array([[0, 0, 255], [0, 128, 255], [0, 255, 255], [0, 255, 128], [0, 255, 0],
                 [128, 255, 0], [255, 255, 0], [255, 128, 0], [255, 0, 0], [255, 0, 128],
                 [255, 0, 255], [128, 0, 255]], np.float64)
TOL = 1.5  # pixels: bilinear interpolation spreads an edge by at most one output pixel


def paint_rectangles(rng: np.random.Generator, width: int, height: int,
                     colour_ids: List[int]) -> Tuple[np.ndarray, Dict]:
    """Black image with one non-overlapping rectangle per colour; annotation as a source gives."""
    img = np.zeros((height, width, 3), np.uint8)
    boxes: List[List[float]] = []
    for _ in range(1000):
        if len(boxes) == len(colour_ids):
            break
        w, h = rng.integers(14, 70, 2)
        x, y = rng.integers(0, width - w), rng.integers(0, height - h)
        box = [x, y, x + w, y + h]
        if all(box[0] > b[2] + 8 or b[0] > box[2] + 8 or box[1] > b[3] + 8 or b[1] > box[3] + 8
               for b in boxes):
            boxes.append(box)
    for box, k in zip(boxes, colour_ids):
        img[box[1]:box[3], box[0]:box[2]] = HUES[k]
    ann = dict(image_id=1, file_name="painted.png", height=height, width=width,
               boxes=np.array(boxes, np.float32), labels=np.array(colour_ids, np.int64),
               ignore=np.zeros((0, 4), np.float32))
    return img, ann


def colour_ids_of(chw: np.ndarray) -> np.ndarray:
    """[H, W] index into HUES of each clearly coloured pixel, -1 for background / blends."""
    x = chw.astype(np.float64).transpose(1, 2, 0) * STD + MEAN  # no clipping: keep it linear
    chroma = x - x.mean(2, keepdims=True)
    ref = HUES - HUES.mean(1, keepdims=True)
    ref /= np.linalg.norm(ref, axis=1, keepdims=True)
    norm = np.linalg.norm(chroma, axis=2)
    cos = (chroma @ ref.T) / np.maximum(norm, 1e-9)[..., None]
    ids = cos.argmax(2)
    ids[(norm < 20) | (cos.max(2) < 0.98)] = -1
    return ids


def check_boxes_cover_pixels(sample: Dict, tight: bool, min_box_size: float) -> int:
    """Every box contains all pixels of its colour; returns the number of boxes checked."""
    ids = colour_ids_of(sample["img"])
    boxes, labels = sample["gt_boxes"], sample["gt_labels"]
    assert len(np.unique(labels)) == len(labels)
    for k in np.unique(ids[ids >= 0]):
        ys, xs = np.nonzero(ids == k)
        cx, cy = xs + 0.5, ys + 0.5  # pixel centres
        where = np.nonzero(labels == k)[0]
        if len(where) == 0:
            # dropped: only allowed when what is left is smaller than min_box_size (+ blur)
            assert min(np.ptp(cx), np.ptp(cy)) < min_box_size + 2 * TOL, f"colour {k} lost its box"
            continue
        x1, y1, x2, y2 = boxes[where[0]]
        assert cx.min() >= x1 - TOL and cx.max() <= x2 + TOL, (k, (x1, x2), (cx.min(), cx.max()))
        assert cy.min() >= y1 - TOL and cy.max() <= y2 + TOL, (k, (y1, y2), (cy.min(), cy.max()))
        if tight:
            assert cx.min() <= x1 + 2 * TOL and cx.max() >= x2 - 2 * TOL
            assert cy.min() <= y1 + 2 * TOL and cy.max() >= y2 - 2 * TOL
    for k in labels:  # no box without visible pixels of its colour
        assert (ids == k).any(), f"box of colour {k} has no pixels"
    return len(boxes)


AUGMENTS = {
    "nanodet_defaults": dict(tight=True, kwargs=dict()),
    "rotation_shear_stretch": dict(tight=False, kwargs=dict(
        rotation=30.0, shear=10.0, stretch=((0.8, 1.2), (0.8, 1.2)), scale=(0.5, 1.5))),
    "perspective": dict(tight=False, kwargs=dict(perspective=0.0008, rotation=10.0)),
    "both_flips": dict(tight=True, kwargs=dict(flip_vertical=0.5)),
}


@pytest.mark.parametrize("name", sorted(AUGMENTS))
def test_full_train_pipeline_keeps_boxes_on_their_objects(name: str) -> None:
    spec = AUGMENTS[name]
    pipeline = TrainPipeline((320, 320), keep_ratio=True, min_box_size=2.0, **spec["kwargs"])
    checked = 0
    for seed in range(50):
        rng = np.random.default_rng(seed)
        img, ann = paint_rectangles(rng, 360, 240, list(rng.choice(12, 5, replace=False)))
        sample = pipeline(img, ann, rng)
        assert sample["img"].shape == (3, 320, 320) and sample["img"].dtype == np.float32
        checked += check_boxes_cover_pixels(sample, spec["tight"], 2.0)
        # meta["warp_matrix"] maps the original boxes onto the output boxes
        m = sample["meta"]["warp_matrix"].astype(np.float64)
        mapped = warp_boxes(ann["boxes"], m, 320, 320)
        keep = keep_boxes(mapped, 2.0)
        np.testing.assert_allclose(mapped[keep], sample["gt_boxes"], atol=1e-2)
        np.testing.assert_array_equal(ann["labels"][keep], sample["gt_labels"])
    assert checked > 100  # most objects stay in view


def test_vertical_flip_mirrors_rows_and_draws_nothing_when_off() -> None:
    rng = np.random.default_rng(0)
    m = random_shape_matrix(rng, (200, 100), flip_vertical=1.0)
    box = np.array([[20.0, 10.0, 60.0, 30.0]], np.float32)
    np.testing.assert_allclose(warp_boxes(box, m, 200, 100), [[20.0, 70.0, 60.0, 90.0]], atol=1e-4)
    # flip_vertical=0 consumes no random numbers: seeded augmentations stay as they were
    a, b = np.random.default_rng(3), np.random.default_rng(3)
    random_shape_matrix(a, (200, 100), flip=0.5, translate=0.2)
    random_shape_matrix(b, (200, 100), flip=0.5, translate=0.2, flip_vertical=0.0)
    assert a.random() == b.random()


def test_mosaic_keeps_boxes_on_their_objects() -> None:
    pipeline = TrainPipeline((320, 320), mosaic=1.0, rotation=5.0, min_box_size=2.0)
    for seed in range(25):
        rng = np.random.default_rng(seed)
        records = [paint_rectangles(rng, int(rng.integers(200, 400)), int(rng.integers(200, 400)),
                                    [3 * t, 3 * t + 1, 3 * t + 2]) for t in range(4)]
        assert pipeline.num_extra_images(rng) == 3
        sample = pipeline(*records[0], rng, extra=records[1:])
        check_boxes_cover_pixels(sample, tight=False, min_box_size=2.0)


def test_preprocess_and_inverse_warp_round_trip_boxes() -> None:
    h, w = 360, 640  # non-square, so the letterbox pads top and bottom
    img = np.zeros((h, w, 3), np.uint8)
    boxes = np.array([[0, 0, 640, 360], [100.5, 20, 300, 200.25], [600, 300, 640, 360]],
                     np.float32)
    img[20:200, 101:300] = (0, 0, 255)
    chw, meta = preprocess_image(img, (320, 320), True, MEAN, STD)
    assert chw.shape == (3, 320, 320) and chw.dtype == np.float32
    assert meta["orig_hw"] == (360, 640) and meta["input_hw"] == (320, 320)
    m = meta["warp_matrix"].astype(np.float64)
    np.testing.assert_allclose(m, [[0.5, 0, 0], [0, 0.5, 70], [0, 0, 1]])  # centred letterbox
    pad = (np.zeros(3) - MEAN) / STD
    np.testing.assert_allclose(chw[:, :70].reshape(3, -1).mean(1), pad, rtol=1e-5)  # top
    np.testing.assert_allclose(chw[:, 250:].reshape(3, -1).mean(1), pad, rtol=1e-5)  # bottom
    on_input = warp_boxes(boxes, m, 320, 320)
    np.testing.assert_allclose(on_input[0], [0, 70, 320, 250], atol=1e-4)
    back = warp_boxes(on_input, np.linalg.inv(m), w, h)
    np.testing.assert_allclose(back, boxes, atol=1e-3)
    # and the painted red block sits where its box says
    ys, xs = np.nonzero(colour_ids_of(chw) == 0)
    assert abs(xs.min() - on_input[1, 0]) <= 1 and abs(xs.max() + 1 - on_input[1, 2]) <= 1
    assert abs(ys.min() - on_input[1, 1]) <= 1 and abs(ys.max() + 1 - on_input[1, 3]) <= 1


def test_preprocess_stretch_without_keep_ratio() -> None:
    img = np.full((100, 50, 3), 128, np.uint8)
    chw, meta = preprocess_image(img, (320, 160), False, MEAN, STD)
    assert chw.shape == (3, 160, 320) and meta["input_hw"] == (160, 320)
    np.testing.assert_allclose(meta["warp_matrix"], [[6.4, 0, 0], [0, 1.6, 0], [0, 0, 1]],
                               rtol=1e-6)


def test_resize_matrix_letterbox_is_whole_pixels_and_centred() -> None:
    m = resize_matrix((333, 517), (320, 320), keep_ratio=True)
    new_w = round(m[0, 0] * 333)
    assert m[1, 1] * 517 == pytest.approx(320)
    assert m[0, 2] == (320 - new_w) // 2 and m[1, 2] == 0


def test_color_normalize_without_jitter_is_mean_std() -> None:
    img = np.random.default_rng(0).integers(0, 256, (7, 9, 3)).astype(np.uint8)
    ref = ((img.astype(np.float64) - MEAN) / STD).transpose(2, 0, 1)
    np.testing.assert_allclose(color_normalize(img, MEAN, STD), ref, atol=1e-5)


def test_warp_boxes_perspective_and_empty() -> None:
    assert warp_boxes(np.zeros((0, 4)), np.eye(3), 10, 10).shape == (0, 4)
    m = np.array([[1.0, 0, 0], [0, 1, 0], [0.001, 0, 1]])
    out = warp_boxes(np.array([[10, 10, 20, 20]]), m, 100, 100)
    corners = np.array([[10, 10, 1], [20, 10, 1], [10, 20, 1], [20, 20, 1]]) @ m.T
    xy = corners[:, :2] / corners[:, 2:]
    np.testing.assert_allclose(out[0], [*xy.min(0), *xy.max(0)], rtol=1e-5)


def test_transforms_module_does_not_import_torch() -> None:
    code = ("import sys, nanodet_ghost.data.transforms; "
            "sys.exit(1 if 'torch' in sys.modules else 0)")
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


@pytest.mark.parametrize("hw", [(480, 640), (640, 480), (100, 333), (320, 320), (17, 900)])
def test_preprocess_pads_by_filling_around_the_normalised_image(hw) -> None:
    # the reference: letterbox with a black border, then normalise the whole input
    img = np.random.default_rng(hw[0]).integers(0, 256, (*hw, 3), dtype=np.uint8)
    mean, std = [103.53, 116.28, 123.675], [57.375, 57.12, 58.395]
    chw, meta = preprocess_image(img, (320, 256), True, mean, std)
    m = meta["warp_matrix"]
    new_w, new_h = int(round(m[0, 0] * hw[1])), int(round(m[1, 1] * hw[0]))
    left, top = int(m[0, 2]), int(m[1, 2])
    resized = cv2.resize(img, (new_w, new_h), interpolation=cv2.INTER_LINEAR) if (new_w, new_h) != hw[::-1] else img
    padded = cv2.copyMakeBorder(resized, top, 256 - new_h - top, left, 320 - new_w - left, cv2.BORDER_CONSTANT,
                                value=(0, 0, 0))
    assert chw.shape == (3, 256, 320)
    np.testing.assert_array_equal(chw, color_normalize(padded, mean, std))
