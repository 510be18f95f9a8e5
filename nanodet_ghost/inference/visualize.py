"""Drawing detections on BGR images (numpy + OpenCV only)."""
from __future__ import annotations

import colorsys
from typing import List, Optional, Tuple

import cv2
import numpy as np

from nanodet_ghost.inference.common import Detections

Color = Tuple[int, int, int]


def make_palette(n: int) -> List[Color]:
    """`n` distinct, saturated BGR colours (golden-ratio hues, two brightness levels)."""
    colors = []
    for i in range(max(n, 1)):
        hue = (i * 0.618033988749895) % 1.0
        value = 0.95 if i % 2 == 0 else 0.75
        r, g, b = colorsys.hsv_to_rgb(hue, 0.85, value)
        colors.append((int(b * 255), int(g * 255), int(r * 255)))
    return colors


def _text_color(bg: Color) -> Color:
    """Black on light backgrounds, white on dark ones (ITU-R BT.601 luma)."""
    b, g, r = bg
    return (0, 0, 0) if 0.299 * r + 0.587 * g + 0.114 * b > 140 else (255, 255, 255)


def draw_detections(img: np.ndarray, dets: Detections, palette: Optional[List[Color]] = None,
                    score_thr: float = 0.0, thickness: Optional[int] = None,
                    show_scores: bool = True) -> np.ndarray:
    """Copy of `img` (uint8 [H, W, 3] BGR) with boxes and "name 0.87" labels drawn ("name" alone
    with `show_scores=False`, e.g. for ground truth).

    Line width and font scale follow the image size so labels stay readable on large photos."""
    out = img.copy()
    h, w = out.shape[:2]
    palette = palette or make_palette(max(int(dets.labels.max()) + 1 if len(dets) else 1, 80))
    thickness = thickness or max(1, round(0.002 * (h + w) / 2 + 0.5))
    font_scale = max(0.4, thickness / 3.0)
    font = cv2.FONT_HERSHEY_SIMPLEX
    # Lowest scores first, so the most confident boxes end up on top.
    for k in np.argsort(dets.scores, kind="stable"):
        score = float(dets.scores[k])
        if score < score_thr:
            continue
        x1, y1, x2, y2 = (int(round(float(v))) for v in dets.boxes[k])
        color = palette[int(dets.labels[k]) % len(palette)]
        cv2.rectangle(out, (x1, y1), (x2, y2), color, thickness, cv2.LINE_AA)
        text = f"{dets.names[k]} {score:.2f}" if show_scores else str(dets.names[k])
        (tw, th), baseline = cv2.getTextSize(text, font, font_scale, max(1, thickness - 1))
        top = y1 - th - baseline - 2 if y1 - th - baseline - 2 >= 0 else y1  # inside when no room above
        left = min(max(x1, 0), max(w - tw - 2, 0))
        cv2.rectangle(out, (left, top), (left + tw + 2, top + th + baseline + 2), color, -1)
        cv2.putText(out, text, (left + 1, top + th + 1), font, font_scale, _text_color(color),
                    max(1, thickness - 1), cv2.LINE_AA)
    return out


def draw_fps(img: np.ndarray, fps: float) -> np.ndarray:
    """Writes "FPS 23.4" in the top-left corner of `img` (in place) and returns it."""
    text = f"FPS {fps:.1f}"
    scale = max(0.5, img.shape[0] / 600)
    (tw, th), baseline = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, 2)
    cv2.rectangle(img, (0, 0), (tw + 8, th + baseline + 8), (0, 0, 0), -1)
    cv2.putText(img, text, (4, th + 4), cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 255, 0), 2, cv2.LINE_AA)
    return img
