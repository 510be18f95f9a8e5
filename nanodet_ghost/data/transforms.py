"""Geometric and photometric transforms on numpy images (numpy + OpenCV only, never torch).

Conventions:
- images are uint8 [H, W, 3] BGR; sizes are `(width, height)`;
- boxes are float32 [N, 4] xyxy in continuous pixel coordinates, where pixel `i` spans `[i, i+1)`;
- geometry is a 3x3 matrix mapping original-image coordinates to output coordinates. The random
  shape augmentations are composed into one matrix (NanoDet's `ShapeTransform`), so each sample is
  warped once, and the same matrix maps its boxes and is kept as `meta["warp_matrix"]`;
- colour jitter (brightness, contrast, saturation) and mean/std normalisation are all affine in
  the pixel value, so they are fused into one per-channel affine map applied after the warp.

This module is imported by the torch-free ONNX predictor: keep it free of torch.
"""
from __future__ import annotations

import math
from typing import Any, Dict, Optional, Sequence, Tuple

import cv2
import numpy as np

Size = Tuple[int, int]  # (width, height)
Range = Tuple[float, float]

# BGR weights of the luma that saturation blends towards (cv2.COLOR_BGR2GRAY uses the same).
GRAY_WEIGHTS_BGR = (0.114, 0.587, 0.299)

# warpAffine samples pixel centres at integer coordinates; our boxes put them at i + 0.5.
_TO_CENTRES = np.array([[1.0, 0.0, -0.5], [0.0, 1.0, -0.5], [0.0, 0.0, 1.0]])
_FROM_CENTRES = np.array([[1.0, 0.0, 0.5], [0.0, 1.0, 0.5], [0.0, 0.0, 1.0]])


def translation_matrix(tx: float, ty: float) -> np.ndarray:
    """3x3 float64 matrix of a translation by (tx, ty)."""
    return np.array([[1.0, 0.0, tx], [0.0, 1.0, ty], [0.0, 0.0, 1.0]])


def scale_matrix(sx: float, sy: float) -> np.ndarray:
    """3x3 float64 matrix of an axis-aligned scaling about the origin."""
    return np.array([[sx, 0.0, 0.0], [0.0, sy, 0.0], [0.0, 0.0, 1.0]])


def resize_matrix(src_size: Sequence[int], dst_size: Sequence[int], keep_ratio: bool) -> np.ndarray:
    """Matrix mapping a `src_size` (w, h) image onto `dst_size` (W, H).

    With `keep_ratio` the image is scaled to fit and centred (letterbox); the resized size and the
    offsets are whole pixels, so the padding edges are sharp. Otherwise it is stretched.
    """
    w, h = float(src_size[0]), float(src_size[1])
    dst_w, dst_h = int(dst_size[0]), int(dst_size[1])
    if not keep_ratio:
        return scale_matrix(dst_w / w, dst_h / h)
    ratio = min(dst_w / w, dst_h / h)
    new_w = min(dst_w, max(1, int(round(w * ratio))))
    new_h = min(dst_h, max(1, int(round(h * ratio))))
    m = scale_matrix(new_w / w, new_h / h)
    m[0, 2] = (dst_w - new_w) // 2
    m[1, 2] = (dst_h - new_h) // 2
    return m


def random_shape_matrix(
    rng: np.random.Generator,
    size: Sequence[int],
    scale: Range = (1.0, 1.0),
    stretch: Sequence[Range] = ((1.0, 1.0), (1.0, 1.0)),
    rotation: float = 0.0,
    shear: float = 0.0,
    perspective: float = 0.0,
    translate: float = 0.0,
    flip: float = 0.0,
    flip_vertical: float = 0.0,
) -> np.ndarray:
    """NanoDet's random shape matrix for an image of `size` (w, h), in that image's own frame.

    About the image centre: perspective, scale, per-axis stretch, horizontal flip (probability
    `flip`), vertical flip (probability `flip_vertical`), rotation (+-`rotation` degrees), shear (+-`shear` degrees); then the centre moves to
    `(0.5 +- translate) * (w, h)`. Compose with `resize_matrix(size, ...)` to reach the input size.
    """
    w, h = float(size[0]), float(size[1])
    centre = translation_matrix(-0.5 * w, -0.5 * h)
    persp = np.eye(3)
    if perspective > 0:
        persp[2, 0] = rng.uniform(-perspective, perspective)
        persp[2, 1] = rng.uniform(-perspective, perspective)
    s = rng.uniform(scale[0], scale[1])
    zoom = scale_matrix(s * rng.uniform(*stretch[0]), s * rng.uniform(*stretch[1]))
    mirror = scale_matrix(-1.0 if rng.random() < flip else 1.0, 1.0)
    if flip_vertical > 0:  # no draw when off, so seeded streams stay as they were
        mirror = scale_matrix(1.0, -1.0 if rng.random() < flip_vertical else 1.0) @ mirror
    rot = np.eye(3)
    if rotation > 0:
        a = math.radians(rng.uniform(-rotation, rotation))
        rot[:2, :2] = [[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]]
    skew = np.eye(3)
    if shear > 0:
        skew[0, 1] = math.tan(math.radians(rng.uniform(-shear, shear)))
        skew[1, 0] = math.tan(math.radians(rng.uniform(-shear, shear)))
    move = translation_matrix(
        rng.uniform(0.5 - translate, 0.5 + translate) * w,
        rng.uniform(0.5 - translate, 0.5 + translate) * h,
    )
    return move @ skew @ rot @ mirror @ zoom @ persp @ centre


def is_affine(m: np.ndarray) -> bool:
    """True when the 3x3 matrix has no perspective part (warpAffine suffices)."""
    return abs(m[2, 0]) < 1e-12 and abs(m[2, 1]) < 1e-12 and abs(m[2, 2] - 1.0) < 1e-12


def warp_image(
    img: np.ndarray,
    m: np.ndarray,
    dst_size: Sequence[int],
    dst: Optional[np.ndarray] = None,
) -> np.ndarray:
    """Warp `img` [h, w, C] through the 3x3 matrix `m` into a `dst_size` (W, H) image, bilinear.

    Outside the source is 0, or, when `dst` is given, the pixels of `dst` are kept where the source
    does not land (used to paste mosaic tiles). warpAffine is used when `m` is affine.
    """
    m_px = _TO_CENTRES @ m @ _FROM_CENTRES
    size = (int(dst_size[0]), int(dst_size[1]))
    border = cv2.BORDER_CONSTANT if dst is None else cv2.BORDER_TRANSPARENT
    if is_affine(m_px):
        return cv2.warpAffine(img, m_px[:2], size, dst=dst, flags=cv2.INTER_LINEAR,
                              borderMode=border, borderValue=(0, 0, 0))
    return cv2.warpPerspective(img, m_px, size, dst=dst, flags=cv2.INTER_LINEAR,
                               borderMode=border, borderValue=(0, 0, 0))


def warp_boxes(boxes: np.ndarray, m: np.ndarray, width: float, height: float) -> np.ndarray:
    """Map xyxy boxes [N, 4] through the 3x3 matrix `m` and clip them to [0, width] x [0, height].

    All four corners are transformed and the axis-aligned box around them is kept, so a rotated
    box still covers its object. Returns float32 [N, 4] (boxes that leave the image get zero size).
    """
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    if len(boxes) == 0:
        return np.zeros((0, 4), np.float32)
    x1, y1, x2, y2 = boxes.T
    xs = np.stack([x1, x2, x1, x2], axis=1).reshape(-1)
    ys = np.stack([y1, y1, y2, y2], axis=1).reshape(-1)
    pts = np.stack([xs, ys, np.ones_like(xs)], axis=1) @ np.asarray(m, np.float64).T
    if not is_affine(np.asarray(m, np.float64)):
        pts = pts[:, :2] / pts[:, 2:3]
    px = pts[:, 0].reshape(-1, 4)
    py = pts[:, 1].reshape(-1, 4)
    out = np.stack([px.min(1), py.min(1), px.max(1), py.max(1)], axis=1)
    out[:, 0::2] = out[:, 0::2].clip(0.0, width)
    out[:, 1::2] = out[:, 1::2].clip(0.0, height)
    return out.astype(np.float32)


def keep_boxes(boxes: np.ndarray, min_size: float) -> np.ndarray:
    """Boolean mask [N] of boxes at least `min_size` wide and high (and never empty)."""
    wh = boxes[:, 2:4] - boxes[:, 0:2]
    return (wh > 0).all(1) & (wh >= min_size).all(1)


def random_color_affine(
    rng: np.random.Generator,
    brightness: float = 0.0,
    contrast: Range = (1.0, 1.0),
    saturation: Range = (1.0, 1.0),
) -> Tuple[float, float, float]:
    """Draw NanoDet's colour jitter, each part with probability 0.5, as `(gain, offset, sat)`.

    On 0..255 pixels x: brightness adds `255 * U(-brightness, brightness)`, contrast multiplies by
    `U(*contrast)` and saturation blends with the grey level: `sat * y + (1 - sat) * gray(y)`.
    The result is `sat * gain * x + (1 - sat) * gain * gray(x) + offset` (grey is linear and its
    weights sum to 1, so the offset passes through the saturation blend unchanged).
    """
    delta = rng.uniform(-brightness, brightness) * 255.0 if rng.random() < 0.5 else 0.0
    gain = rng.uniform(*contrast) if rng.random() < 0.5 else 1.0
    sat = rng.uniform(*saturation) if rng.random() < 0.5 else 1.0
    return gain, gain * delta, sat


def color_normalize(
    img: np.ndarray,
    mean: Sequence[float],
    std: Sequence[float],
    gain: float = 1.0,
    offset: float = 0.0,
    sat: float = 1.0,
    out: Optional[np.ndarray] = None,
) -> np.ndarray:
    """uint8 [H, W, 3] BGR -> float32 [3, H, W]: colour jitter (see `random_color_affine`) then
    `(x - mean) / std`, fused into one weighted sum per channel written straight into CHW (into
    `out` when given: float32 [3, H, W], e.g. a window of a larger padded input)."""
    h, w = img.shape[:2]
    out = np.empty((3, h, w), np.float32) if out is None else out
    planes = cv2.split(img)
    gray = cv2.cvtColor(img, cv2.COLOR_BGR2GRAY) if sat != 1.0 else None
    for c in range(3):
        a = sat * gain / std[c]
        bias = (offset - mean[c]) / std[c]
        if gray is None:
            cv2.addWeighted(planes[c], a, planes[c], 0.0, bias, dst=out[c], dtype=cv2.CV_32F)
        else:
            b = (1.0 - sat) * gain / std[c]
            cv2.addWeighted(planes[c], a, gray, b, bias, dst=out[c], dtype=cv2.CV_32F)
    return out


def denormalize(chw: np.ndarray, mean: Sequence[float], std: Sequence[float]) -> np.ndarray:
    """float32 [3, H, W] normalised BGR -> uint8 [H, W, 3] BGR (for visualisation)."""
    img = np.asarray(chw, np.float32).transpose(1, 2, 0) * np.asarray(std, np.float32)
    img += np.asarray(mean, np.float32)
    return np.ascontiguousarray(img.clip(0, 255).round().astype(np.uint8))


def preprocess_image(
    img_bgr: np.ndarray,
    input_size: Sequence[int],
    keep_ratio: bool,
    mean: Sequence[float],
    std: Sequence[float],
) -> Tuple[np.ndarray, Dict[str, Any]]:
    """Validation / inference preprocessing: resize (letterbox when `keep_ratio`) and normalise.

    Args:
        img_bgr: uint8 [h, w, 3] BGR.
        input_size: (W, H) of the network input.
    Returns:
        chw: float32 [3, H, W]; the letterbox padding is 0 before normalisation.
        meta: dict(orig_hw=(h, w), input_hw=(H, W), warp_matrix=float32 [3, 3] original->input).
    """
    h, w = img_bgr.shape[:2]
    dst_w, dst_h = int(input_size[0]), int(input_size[1])
    m = resize_matrix((w, h), (dst_w, dst_h), keep_ratio)
    # A resize + border rather than a warp: cv2.resize replicates the image edge when upscaling,
    # where a warp would blend the outermost pixels with the black padding.
    new_w, new_h = int(round(m[0, 0] * w)), int(round(m[1, 1] * h))
    left, top = int(m[0, 2]), int(m[1, 2])
    img = img_bgr if (new_w, new_h) == (w, h) else cv2.resize(
        img_bgr, (new_w, new_h), interpolation=cv2.INTER_LINEAR)
    if (new_w, new_h) == (dst_w, dst_h):
        chw = color_normalize(img, mean, std)
    else:  # the black border, normalised, around the image normalised in place: no padded copy
        chw = np.empty((3, dst_h, dst_w), np.float32)
        chw[:] = (-np.asarray(mean, np.float64) / np.asarray(std, np.float64)).astype(np.float32)[:, None, None]
        color_normalize(img, mean, std, out=chw[:, top:top + new_h, left:left + new_w])
    meta = dict(orig_hw=(h, w), input_hw=(dst_h, dst_w), warp_matrix=m.astype(np.float32))
    return chw, meta
