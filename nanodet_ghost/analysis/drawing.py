"""Pictures made of images (numpy + OpenCV): grids, ground truth beside predictions, batches.

Boxes are drawn by `nanodet_ghost.inference.visualize.draw_detections` with the fixed class
palette (`make_palette(num_classes)`), so a class has the same colour in every picture; ground
truth is drawn without scores. All images are uint8 [H, W, 3] BGR.
"""
from __future__ import annotations

import math
from typing import List, Optional, Sequence, Tuple

import cv2
import numpy as np

from nanodet_ghost.data.transforms import denormalize
from nanodet_ghost.inference.common import make_detections
from nanodet_ghost.inference.visualize import draw_detections, make_palette

CELL = (320, 320)  # (width, height) of one picture in a grid
CAPTION_HEIGHT = 22
GAP = 4
GRID_BACKGROUND = (40, 40, 40)
CAPTION_BACKGROUND = (25, 25, 25)
PAD_VALUE = (114, 114, 114)


def fit_to_cell(img: np.ndarray, cell: Tuple[int, int] = CELL) -> Tuple[np.ndarray, np.ndarray]:
    """`img` scaled to fit a (width, height) cell and centred on grey.

    Returns:
        the cell image uint8 [h, w, 3], and the 3x3 matrix mapping `img` pixels into it.
    """
    h, w = img.shape[:2]
    scale = min(cell[0] / w, cell[1] / h)
    new_w, new_h = max(1, int(round(w * scale))), max(1, int(round(h * scale)))
    left, top = (cell[0] - new_w) // 2, (cell[1] - new_h) // 2
    out = np.full((cell[1], cell[0], 3), PAD_VALUE, np.uint8)
    interpolation = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    out[top:top + new_h, left:left + new_w] = cv2.resize(img, (new_w, new_h), interpolation=interpolation)
    matrix = np.array([[new_w / w, 0.0, left], [0.0, new_h / h, top], [0.0, 0.0, 1.0]])
    return out, matrix


def map_boxes(boxes: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """xyxy boxes [K, 4] through the scale + offset `matrix` of `fit_to_cell` (float64)."""
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    return boxes * np.tile(np.diag(matrix)[:2], 2) + np.tile(matrix[:2, 2], 2)


def caption(img: np.ndarray, text: str) -> np.ndarray:
    """`img` with a strip of text above it (`CAPTION_HEIGHT` pixels)."""
    strip = np.full((CAPTION_HEIGHT, img.shape[1], 3), CAPTION_BACKGROUND, np.uint8)
    cv2.putText(strip, text, (4, CAPTION_HEIGHT - 7), cv2.FONT_HERSHEY_SIMPLEX, 0.45,
                (235, 235, 235), 1, cv2.LINE_AA)
    return np.vstack([strip, img])


def tile_images(images: Sequence[np.ndarray], cols: int, gap: int = GAP,
                background: Tuple[int, int, int] = GRID_BACKGROUND) -> np.ndarray:
    """Images of equal size in a grid of `cols` columns, row by row, `gap` pixels apart.

    Returns uint8 [rows * (h + gap) + gap, cols * (w + gap) + gap, 3]; empty cells stay
    `background`.
    """
    if not images:
        raise ValueError("tile_images needs at least one image")
    h, w = images[0].shape[:2]
    if any(img.shape[:2] != (h, w) for img in images):
        raise ValueError(f"tile_images needs images of one size; got {sorted({i.shape[:2] for i in images})}")
    rows = math.ceil(len(images) / cols)
    grid = np.full((rows * (h + gap) + gap, cols * (w + gap) + gap, 3), background, np.uint8)
    for i, img in enumerate(images):
        r, c = divmod(i, cols)
        y, x = gap + r * (h + gap), gap + c * (w + gap)
        grid[y:y + h, x:x + w] = img
    return grid


def draw_labelled_boxes(img: np.ndarray, boxes: np.ndarray, labels: np.ndarray,
                        class_names: Sequence[str], scores: Optional[np.ndarray] = None,
                        score_thr: float = 0.0, palette: Optional[list] = None) -> np.ndarray:
    """Copy of `img` with boxes [K, 4] xyxy (its pixels); "name" labels for ground truth
    (`scores` None), "name 0.87" for detections scoring at least `score_thr`."""
    labels = np.asarray(labels, np.int64).reshape(-1)
    palette = palette or make_palette(len(class_names))
    show_scores = scores is not None
    scores = np.ones(len(labels), np.float32) if scores is None else np.asarray(scores, np.float32)
    dets = make_detections(boxes, scores, labels, class_names, img.shape[:2])
    return draw_detections(img, dets, palette, score_thr=score_thr, show_scores=show_scores)


def gt_and_predictions(img: np.ndarray, gt_boxes: np.ndarray, gt_labels: np.ndarray,
                       pred_boxes: np.ndarray, pred_scores: np.ndarray, pred_labels: np.ndarray,
                       class_names: Sequence[str], score_thr: float, title: str = "",
                       cell: Tuple[int, int] = CELL) -> List[np.ndarray]:
    """Two captioned cells of one image: ground truth, then the predictions >= `score_thr`.

    Boxes are xyxy in `img` pixels. Each cell is uint8 [cell_h + CAPTION_HEIGHT, cell_w, 3].
    """
    fitted, matrix = fit_to_cell(img, cell)
    palette = make_palette(len(class_names))
    gt = draw_labelled_boxes(fitted, map_boxes(gt_boxes, matrix), gt_labels, class_names,
                             palette=palette)
    keep = np.asarray(pred_scores).reshape(-1) >= score_thr
    pred = draw_labelled_boxes(fitted, map_boxes(pred_boxes, matrix)[keep],
                               np.asarray(pred_labels).reshape(-1)[keep], class_names,
                               scores=np.asarray(pred_scores).reshape(-1)[keep], palette=palette)
    prefix = f"{title}: " if title else ""
    return [caption(gt, f"{prefix}ground truth ({len(np.asarray(gt_labels).reshape(-1))})"),
            caption(pred, f"predictions >= {score_thr:.2f} ({int(keep.sum())})")]


def pairs_grid(pairs: Sequence[List[np.ndarray]], pairs_per_row: int = 2) -> np.ndarray:
    """Grid of (ground truth, predictions) cell pairs, `pairs_per_row` pairs to a row."""
    cells = [cell for pair in pairs for cell in pair]
    return tile_images(cells, cols=2 * min(pairs_per_row, max(len(pairs), 1)))


def grid_size(num_images: int, cols: int, cell: Tuple[int, int] = CELL,
              captioned: bool = True, gap: int = GAP) -> Tuple[int, int]:
    """(width, height) of `tile_images` over `num_images` cells made by this module."""
    h = cell[1] + (CAPTION_HEIGHT if captioned else 0)
    rows = math.ceil(num_images / cols)
    return cols * (cell[0] + gap) + gap, rows * (h + gap) + gap


def batch_picture(images: np.ndarray, boxes: Sequence[np.ndarray], labels: Sequence[np.ndarray],
                  class_names: Sequence[str], mean: Sequence[float], std: Sequence[float],
                  max_images: int = 16) -> np.ndarray:
    """A collated batch as the network sees it, with its ground-truth boxes.

    Args:
        images: float32 [B, 3, H, W] normalised BGR (a batch's `images`, as numpy).
        boxes: per image [N_i, 4] xyxy input pixels; labels: per image [N_i].
        mean, std: the normalisation to undo (`data.mean`, `data.std`).
        max_images: the first this many images are drawn.
    Returns:
        uint8 grid, about square, one cell per image at the batch's own size.
    """
    n = min(len(images), max_images)
    palette = make_palette(len(class_names))
    cells = [draw_labelled_boxes(denormalize(images[i], mean, std), boxes[i], labels[i], class_names,
                                 palette=palette) for i in range(n)]
    return tile_images(cells, cols=max(1, math.ceil(math.sqrt(n))))


def write_image(path, img: np.ndarray, quality: int = 90) -> None:
    """Write a JPEG / PNG (by suffix); raises OSError naming the path when OpenCV cannot."""
    params = [cv2.IMWRITE_JPEG_QUALITY, quality] if str(path).lower().endswith((".jpg", ".jpeg")) else []
    if not cv2.imwrite(str(path), img, params):
        raise OSError(f"cannot write image {path}")
