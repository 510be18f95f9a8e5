"""The embedded quickstart dataset: seeded shapes on cluttered backgrounds, written as COCO.

Six classes (`SYNTHETIC_CLASSES`) of shapes with random rotation, size (28-128 px) and a textured
fill (shaded, striped, checkered or mottled, in two colours) on 288-384 px images of varied aspect
ratio. Backgrounds are smooth colour noise, gradients or stripes, with clutter lines and
distractors: soft, smoothly lumpy blobs with no corners that belong to no class. Objects may overlap (at most a third of
an earlier object is hidden) and may be cut by the image border. Boxes are the visible extent of
each object.

Files are generated once (no download) into `<cache>/synthetic_v3/<split>/` as `images/*.jpg` plus
`annotations.json`, where `<cache>` is the `root` argument, else `$NANODET_GHOST_CACHE`, else
`$XDG_CACHE_HOME/nanodet_ghost`, else `~/.cache/nanodet_ghost`. A split is regenerated when its
completion marker is missing or was written with other parameters. The same seed gives the same
bytes.
"""
from __future__ import annotations

import json
import logging
import math
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import cv2
import numpy as np

from nanodet_ghost.data.coco import CocoSource
from nanodet_ghost.paths import CACHE_ENV_VAR, default_cache_dir  # noqa: F401 (re-exported)

logger = logging.getLogger(__name__)

SYNTHETIC_CLASSES = ("circle", "triangle", "rectangle", "star", "ring", "cross")
VERSION = "synthetic_v3"
# split -> (number of images, seed)
SPLITS: Dict[str, Tuple[int, int]] = {"train": (300, 1001), "val": (60, 2002), "test": (60, 3003)}
_MARKER = "_complete.json"
_JPEG_QUALITY = 92
_MIN_SIZE, _MAX_SIZE = 28, 128
_MIN_CONTRAST = 70.0  # L2 distance (0..255 BGR) between an object and the background under it
_MAX_HIDDEN = 1 / 3  # a new object may hide at most this fraction of an earlier one
_SUBPIXEL = 16  # cv2 drawing with shift=4


# ----------------------------------------------------------------------------- drawing
def _background(rng: np.random.Generator, w: int, h: int) -> np.ndarray:
    """float32 [h, w, 3] in 0..255: colour noise, gradient or stripes, then clutter."""
    kind = rng.integers(3)
    if kind == 0:  # smooth colour blobs
        cells = rng.integers(3, 12)
        small = rng.uniform(0, 255, (cells, cells, 3)).astype(np.float32)
        grey = small.mean(2, keepdims=True)
        small = grey + (small - grey) * rng.uniform(0.3, 0.8)  # muted, so objects stand out
        bg = cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)
    elif kind == 1:  # linear gradient between two colours
        c0, c1 = rng.uniform(0, 255, (2, 3)).astype(np.float32)
        a = rng.uniform(0, 2 * math.pi)
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        t = xx * math.cos(a) + yy * math.sin(a)
        t = (t - t.min()) / max(float(t.max() - t.min()), 1.0)
        bg = c0 + t[..., None] * (c1 - c0)
    else:  # sinusoidal stripes at a random angle
        c0, c1 = rng.uniform(0, 255, (2, 3)).astype(np.float32)
        a = rng.uniform(0, math.pi)
        period = rng.uniform(6, 40)
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        t = 0.5 + 0.5 * np.sin((xx * math.cos(a) + yy * math.sin(a)) * (2 * math.pi / period))
        bg = c0 + t[..., None] * (c1 - c0)
    bg = np.clip(bg + rng.normal(0, rng.uniform(3, 12), (h, w, 3)), 0, 255).astype(np.uint8)
    for _ in range(rng.integers(2, 14)):  # clutter: thin lines and polylines
        pts = rng.uniform(-20, [w + 20, h + 20], (rng.integers(2, 5), 2)).astype(np.int32)
        colour = tuple(int(v) for v in rng.integers(0, 256, 3))
        cv2.polylines(bg, [pts], False, colour, int(rng.integers(1, 4)), cv2.LINE_AA)
    bg = bg.astype(np.float32)
    for _ in range(rng.integers(0, 4)):
        bg = _distractor(rng, bg)
    return bg


def _distractor(rng: np.random.Generator, img: np.ndarray) -> np.ndarray:
    """Paint one soft, irregular blob (no class): the detector must learn what is not an object."""
    h, w = img.shape[:2]
    size = rng.uniform(_MIN_SIZE, 1.2 * _MAX_SIZE)
    # a smooth lumpy outline (low harmonics only): no corners, so it never reads as a polygon shape
    angles = np.linspace(0, 2 * math.pi, 48, endpoint=False)
    harmonics = np.arange(2, 5)[:, None]
    lumps = (rng.uniform(0.05, 0.2, (3, 1)) * np.cos(harmonics * angles + rng.uniform(0, 2 * math.pi, (3, 1))))
    radius = size / 2 * (1 + lumps.sum(0))
    pts = np.stack((np.cos(angles) * radius, np.sin(angles) * radius), 1) + rng.uniform(0, (w, h))
    alpha = np.zeros((h, w), np.uint8)
    cv2.fillPoly(alpha, [np.round(pts * _SUBPIXEL).astype(np.int32)], 255, cv2.LINE_AA, 4)
    blur = int(rng.integers(1, 4)) * 4 + 1  # out of focus: soft edges, unlike the objects
    k_alpha = cv2.GaussianBlur(alpha, (blur, blur), 0).astype(np.float32)[..., None] / 255.0
    colour = rng.uniform(0, 255, 3).astype(np.float32)
    opacity = rng.uniform(0.35, 0.8)
    return img * (1 - opacity * k_alpha) + colour * (opacity * k_alpha)


def _polygon(kind: str, rng: np.random.Generator, r: float) -> np.ndarray:
    """Vertices [K, 2] of a polygon shape of radius `r` about the origin, unrotated."""
    if kind == "triangle":
        angles = np.deg2rad(np.array([-90, 30, 150]) + rng.uniform(-15, 15, 3))
        return np.stack([np.cos(angles), np.sin(angles)], 1) * r
    if kind == "rectangle":
        aspect = rng.uniform(0.45, 1.0)
        return np.array([[-1, -aspect], [1, -aspect], [1, aspect], [-1, aspect]]) * r * 0.9
    if kind == "star":
        inner = rng.uniform(0.38, 0.55)
        k = np.arange(10)
        radius = np.where(k % 2 == 0, 1.0, inner) * r
        angles = -math.pi / 2 + k * math.pi / 5
        return np.stack([np.cos(angles) * radius, np.sin(angles) * radius], 1)
    if kind == "cross":
        t = rng.uniform(0.18, 0.32)
        return np.array([[-t, -1], [t, -1], [t, -t], [1, -t], [1, t], [t, t], [t, 1], [-t, 1],
                         [-t, t], [-1, t], [-1, -t], [-t, -t]]) * r
    raise ValueError(kind)


def _shape_alpha(kind: str, rng: np.random.Generator, w: int, h: int, cx: float, cy: float,
                 size: float) -> np.ndarray:
    """Anti-aliased coverage uint8 [h, w] (0..255) of one shape of extent `size` at (cx, cy)."""
    alpha = np.zeros((h, w), np.uint8)
    r = size / 2.0
    centre = (int(round(cx * _SUBPIXEL)), int(round(cy * _SUBPIXEL)))
    if kind == "circle":
        cv2.circle(alpha, centre, int(round(r * _SUBPIXEL)), 255, -1, cv2.LINE_AA, 4)
    elif kind == "ring":
        thickness = rng.uniform(0.22, 0.4) * r
        mid = int(round((r - thickness / 2) * _SUBPIXEL))
        cv2.circle(alpha, centre, mid, 255, max(1, int(round(thickness))), cv2.LINE_AA, 4)
    else:
        pts = _polygon(kind, rng, r)
        a = rng.uniform(0, 2 * math.pi)
        rot = np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])
        pts = pts @ rot.T + (cx, cy)
        cv2.fillPoly(alpha, [np.round(pts * _SUBPIXEL).astype(np.int32)], 255, cv2.LINE_AA, 4)
    return alpha


def _object_colour(rng: np.random.Generator, under: np.ndarray) -> np.ndarray:
    """A random saturated colour (BGR float32) that stands out from the pixels `under` it."""
    mean = under.reshape(-1, 3).mean(0) if under.size else np.zeros(3, np.float32)
    best, best_dist = None, -1.0
    for _ in range(12):
        hsv = np.uint8([[[rng.integers(0, 180), rng.integers(90, 256), rng.integers(60, 256)]]])
        colour = cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR)[0, 0].astype(np.float32)
        dist = float(np.linalg.norm(colour - mean))
        if dist >= _MIN_CONTRAST:
            return colour
        if dist > best_dist:
            best, best_dist = colour, dist
    return best


def _texture(rng: np.random.Generator, colour: np.ndarray, w: int, h: int, cx: float, cy: float,
             size: float) -> np.ndarray:
    """float32 [h, w, 3] fill of one object: `colour` lit by a soft gradient, and for most objects
    a pattern (stripes, checks or mottling) mixing in a second, darker or lighter tone."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    a = rng.uniform(0, 2 * math.pi)
    u = (xx - cx) * math.cos(a) + (yy - cy) * math.sin(a)
    v = -(xx - cx) * math.sin(a) + (yy - cy) * math.cos(a)
    shade = 1.0 + rng.uniform(0.0, 0.25) * u / max(size / 2, 1.0)
    kind = rng.choice(4, p=(0.4, 0.2, 0.2, 0.2))
    period = size * rng.uniform(0.15, 0.35)
    if kind == 1:  # stripes
        pattern = (np.sin(u * (2 * math.pi / period)) > 0).astype(np.float32)
    elif kind == 2:  # checks
        pattern = ((np.floor(u / period) + np.floor(v / period)) % 2).astype(np.float32)
    elif kind == 3:  # mottled
        cells = max(2, int(size / period))
        small = rng.uniform(0, 1, (cells, cells)).astype(np.float32)
        patch = cv2.resize(small, (int(size) + 2, int(size) + 2), interpolation=cv2.INTER_CUBIC)
        pattern = np.zeros((h, w), np.float32)
        x0, y0 = int(cx - size / 2) - 1, int(cy - size / 2) - 1
        xs, ys = slice(max(x0, 0), min(x0 + patch.shape[1], w)), slice(max(y0, 0), min(y0 + patch.shape[0], h))
        pattern[ys, xs] = patch[ys.start - y0:ys.stop - y0, xs.start - x0:xs.stop - x0]
    else:  # plain, shading only
        pattern = np.zeros((h, w), np.float32)
    tone = rng.uniform(0.55, 0.75) if rng.random() < 0.5 else rng.uniform(1.3, 1.5)
    light = shade * (1.0 + (tone - 1.0) * pattern)
    return np.clip(colour * light[..., None].clip(0.4, 1.7), 0, 255)


def render_image(rng: np.random.Generator) -> Tuple[np.ndarray, List[Dict[str, Any]]]:
    """One synthetic image.

    Returns:
        img: uint8 [h, w, 3] BGR.
        objects: list of dict(label=int (index in SYNTHETIC_CLASSES), bbox=[x, y, w, h] of the
            visible pixels, area=visible pixel count).
    """
    long_side = int(rng.integers(288, 385))
    short_side = int(round(long_side * rng.uniform(0.65, 1.0)))
    w, h = (long_side, short_side) if rng.random() < 0.6 else (short_side, long_side)
    img = _background(rng, w, h)
    masks: List[np.ndarray] = []
    labels: List[int] = []
    for _ in range(int(rng.integers(2, 9))):
        label = int(rng.integers(len(SYNTHETIC_CLASSES)))
        kind = SYNTHETIC_CLASSES[label]
        max_size = min(_MAX_SIZE, 0.6 * min(w, h))
        for _attempt in range(20):
            size = float(math.exp(rng.uniform(math.log(_MIN_SIZE), math.log(max_size))))
            cx = rng.uniform(0.3 * size, w - 0.3 * size)  # may be cut by the border
            cy = rng.uniform(0.3 * size, h - 0.3 * size)
            alpha = _shape_alpha(kind, rng, w, h, cx, cy, size)
            mask = alpha > 127
            if mask.sum() < 0.25 * _MIN_SIZE**2:
                continue
            visible = _visible_masks(masks + [mask])
            if all(v.sum() >= (1 - _MAX_HIDDEN) * m.sum() for v, m in zip(visible[:-1], masks)):
                break
        else:
            continue
        fill = _texture(rng, _object_colour(rng, img[mask]), w, h, cx, cy, size)
        k = (alpha.astype(np.float32) / 255.0)[..., None]
        img = img * (1 - k) + fill * k
        masks.append(mask)
        labels.append(label)
    img += rng.normal(0, rng.uniform(2, 6), img.shape)
    out = np.clip(img, 0, 255).round().astype(np.uint8)
    if rng.random() < 0.3:
        out = cv2.GaussianBlur(out, (3, 3), 0)
    objects = []
    for label, vis in zip(labels, _visible_masks(masks)):
        ys, xs = np.nonzero(vis)
        if len(xs) < 16:
            continue
        x0, y0 = int(xs.min()), int(ys.min())
        objects.append(dict(label=label, bbox=[x0, y0, int(xs.max()) + 1 - x0,
                                               int(ys.max()) + 1 - y0], area=int(len(xs))))
    return out, objects


def _visible_masks(masks: Sequence[np.ndarray]) -> List[np.ndarray]:
    """Each mask minus everything drawn after it."""
    out: List[np.ndarray] = []
    above = np.zeros_like(masks[0]) if masks else None
    for mask in reversed(masks):
        out.append(mask & ~above)
        above = above | mask
    return out[::-1]


# ----------------------------------------------------------------------------- files
def generate_split(out_dir: str | os.PathLike, num_images: int, seed: int) -> Path:
    """Write `num_images` images to `out_dir/images/` and `out_dir/annotations.json` (COCO,
    category ids 1..6 in `SYNTHETIC_CLASSES` order), then the completion marker."""
    out_dir = Path(out_dir)
    (out_dir / "images").mkdir(parents=True, exist_ok=True)
    images, annotations = [], []
    for i in range(num_images):
        img, objects = render_image(np.random.default_rng([seed, i]))
        file_name = f"{i:06d}.jpg"
        ok, data = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, _JPEG_QUALITY])
        if not ok:
            raise OSError(f"cannot encode synthetic image {file_name}")
        (out_dir / "images" / file_name).write_bytes(data.tobytes())
        images.append(dict(id=i + 1, file_name=file_name, height=img.shape[0], width=img.shape[1]))
        for obj in objects:
            annotations.append(dict(id=len(annotations) + 1, image_id=i + 1,
                                    category_id=obj["label"] + 1, bbox=obj["bbox"],
                                    area=obj["area"], iscrowd=0))
    categories = [dict(id=k + 1, name=n, supercategory="shape")
                  for k, n in enumerate(SYNTHETIC_CLASSES)]
    coco = dict(info=dict(description=f"nanodet_ghost {VERSION}", seed=seed), licenses=[],
                images=images, annotations=annotations, categories=categories)
    (out_dir / "annotations.json").write_text(json.dumps(coco))
    (out_dir / _MARKER).write_text(json.dumps(_marker(num_images, seed)))
    return out_dir


def _marker(num_images: int, seed: int) -> Dict[str, Any]:
    return dict(version=VERSION, num_images=num_images, seed=seed)


def _is_complete(split_dir: Path, num_images: int, seed: int) -> bool:
    try:
        marker = json.loads((split_dir / _MARKER).read_text())
    except (OSError, ValueError):
        return False
    return marker == _marker(num_images, seed) and (split_dir / "annotations.json").is_file()


def ensure_synthetic(split: str, cache_dir: Optional[str | os.PathLike] = None,
                     num_images: Optional[int] = None, seed: Optional[int] = None) -> Path:
    """Folder of a complete synthetic split (`images/`, `annotations.json`), generated if needed.

    Generation happens in a temporary sibling folder that is renamed into place, so concurrent
    processes (DDP ranks) never read a half-written split.
    """
    if split not in SPLITS and (num_images is None or seed is None):
        raise ValueError(f"unknown synthetic split '{split}': use one of {sorted(SPLITS)} or give "
                         "num_images and seed")
    default_n, default_seed = SPLITS.get(split, (0, 0))
    num_images = default_n if num_images is None else int(num_images)
    seed = default_seed if seed is None else int(seed)
    base = Path(cache_dir) if cache_dir else default_cache_dir()
    split_dir = base / VERSION / split
    if _is_complete(split_dir, num_images, seed):
        return split_dir
    split_dir.parent.mkdir(parents=True, exist_ok=True)
    logger.info("generating the synthetic %s split (%d images) in %s", split, num_images, split_dir)
    tmp = Path(tempfile.mkdtemp(prefix=f".{split}-", dir=split_dir.parent))
    try:
        generate_split(tmp, num_images, seed)
        if split_dir.exists() and not _is_complete(split_dir, num_images, seed):
            shutil.rmtree(split_dir, ignore_errors=True)  # incomplete or stale
        try:
            os.rename(tmp, split_dir)
        except OSError:
            if not _is_complete(split_dir, num_images, seed):  # not another process's copy
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return split_dir


class SyntheticSource(CocoSource):
    """The synthetic split as a COCO source (generated on first use, see `ensure_synthetic`)."""

    def __init__(self, split: str = "train", root: Optional[str] = None,
                 class_names: Optional[Sequence[str]] = None, keep_background: bool = True,
                 name: Optional[str] = None, num_images: Optional[int] = None,
                 seed: Optional[int] = None) -> None:
        if class_names and tuple(class_names) != SYNTHETIC_CLASSES:
            raise ValueError(f"the synthetic dataset has classes {list(SYNTHETIC_CLASSES)}; "
                             f"data.class_names is {list(class_names)} (leave it empty or match)")
        split_dir = ensure_synthetic(split, root or None, num_images, seed)
        super().__init__(str(split_dir / "images"), str(split_dir / "annotations.json"),
                         list(SYNTHETIC_CLASSES), keep_background=keep_background,
                         name=name or f"synthetic_{split}")

    @classmethod
    def from_config(cls, cfg: Any, class_names: Sequence[str],
                    default_split: str = "train") -> "SyntheticSource":
        """`cfg.root`: cache folder ('' = default); `cfg.split`: train / val / test, default
        `default_split` (the config section it came from)."""
        return cls(split=cfg.split or default_split, root=cfg.root or None,
                   class_names=list(class_names) or None, keep_background=cfg.keep_background,
                   name=getattr(cfg, "name", None))
