"""What the PyTorch and ONNX predictors share: the result type, image loading and batching.

numpy + OpenCV only (imported by the torch-free `OnnxPredictor`).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from nanodet_ghost.data.image_io import read_image
from nanodet_ghost.data.transforms import preprocess_image

ImageInput = Union[str, "os.PathLike[str]", np.ndarray]


@dataclass
class Detections:
    """Detections of one image, in original-image pixels, sorted by decreasing score.

    Attributes:
        boxes: float32 [K, 4] xyxy.
        scores: float32 [K].
        labels: int64 [K] contiguous class indices.
        names: K class names (`class_names[label]`).
        image_hw: (height, width) of the original image.
        source: the file path when the image was given as a path, else None.
    """

    boxes: np.ndarray
    scores: np.ndarray
    labels: np.ndarray
    names: List[str]
    image_hw: Tuple[int, int]
    source: Optional[str] = None

    def __len__(self) -> int:
        return int(len(self.scores))

    def to_dict(self) -> Dict[str, Any]:
        """Plain dict (boxes/scores/labels as numpy, names as a list)."""
        return dict(boxes=self.boxes, scores=self.scores, labels=self.labels, names=list(self.names),
                    image_hw=self.image_hw, source=self.source)


def make_detections(boxes: np.ndarray, scores: np.ndarray, labels: np.ndarray,
                    class_names: Sequence[str], image_hw: Tuple[int, int],
                    source: Optional[str] = None) -> Detections:
    """`Detections` from arrays (copied to float32 / int64); unknown labels are named `class_<i>`."""
    labels = np.asarray(labels, np.int64).reshape(-1)
    names = [class_names[i] if 0 <= i < len(class_names) else f"class_{i}" for i in labels.tolist()]
    return Detections(np.asarray(boxes, np.float32).reshape(-1, 4), np.asarray(scores, np.float32).reshape(-1),
                      labels, names, (int(image_hw[0]), int(image_hw[1])), source)


def as_image_list(images: Union[ImageInput, Sequence[ImageInput]]) -> Tuple[List[ImageInput], bool]:
    """(list of inputs, whether a single input was given). A path or a 2-D / 3-D array is one
    image; a 4-D array [B, H, W, 3] is B images."""
    if isinstance(images, (str, os.PathLike)) or (isinstance(images, np.ndarray) and images.ndim in (2, 3)):
        return [images], True
    if isinstance(images, np.ndarray) and images.ndim != 4:
        raise ValueError(f"expected an image [H, W, 3] or a list of images, got an array of shape {images.shape}")
    return list(images), False


def load_image(item: ImageInput) -> Tuple[np.ndarray, Optional[str]]:
    """(uint8 [H, W, 3] BGR image, path or None). Paths are read with `read_image` (raises
    `ImageReadError`); arrays must be uint8 BGR with 3 channels (grayscale [H, W] is expanded)."""
    if isinstance(item, (str, os.PathLike)):
        path = os.fspath(item)
        return read_image(path), path
    img = np.asarray(item)
    if img.ndim == 2:
        img = np.repeat(img[:, :, None], 3, axis=2)
    if img.ndim != 3 or img.shape[2] != 3:
        raise ValueError(f"expected a BGR image [H, W, 3], got shape {img.shape}")
    if img.dtype != np.uint8:
        raise ValueError(f"expected a uint8 image, got {img.dtype}")
    return img, None


def preprocess_batch(images: Sequence[np.ndarray], input_size: Sequence[int], keep_ratio: bool,
                     mean: Sequence[float], std: Sequence[float]) -> Tuple[np.ndarray, List[Dict[str, Any]]]:
    """Validation preprocessing of each image, stacked.

    Returns:
        batch: float32 [B, 3, H, W] with (W, H) = `input_size`.
        metas: per image dict(orig_hw, input_hw, warp_matrix float32 [3, 3] original → input).
    """
    chws, metas = [], []
    for img in images:
        chw, meta = preprocess_image(img, input_size, keep_ratio, mean, std)
        chws.append(chw)
        metas.append(meta)
    return (chws[0][None] if len(chws) == 1 else np.stack(chws)), metas  # one image: a view, no copy


def chunks(n: int, size: int) -> List[slice]:
    """Slices covering range(n) in pieces of at most `size` (size <= 0: one piece)."""
    size = n if size <= 0 else size
    return [slice(i, min(n, i + size)) for i in range(0, n, max(size, 1))]
