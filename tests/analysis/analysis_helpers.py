"""Hand-made COCO ground truth and detections for the figure tests (no model, no files)."""
from __future__ import annotations

from typing import Any, Dict, List

import numpy as np

CLASSES = ("cat", "dog", "bird", "fish")  # "fish" has no ground truth


def make_gt(num_images: int = 12, seed: int = 0) -> Dict[str, Any]:
    """COCO instances over 640x480 images: 1-5 boxes of cat/dog/bird in each, sizes from small to
    large, one crowd region; category ids 1..4 (fish never appears)."""
    rng = np.random.default_rng(seed)
    images, anns = [], []
    for i in range(num_images):
        images.append(dict(id=i + 1, file_name=f"{i:03d}.jpg", height=480, width=640))
        for _ in range(int(rng.integers(1, 6))):
            w, h = (float(v) for v in np.exp(rng.uniform(np.log(12), np.log(300), 2)))
            x, y = float(rng.uniform(0, 640 - w)), float(rng.uniform(0, 480 - h))
            anns.append(dict(id=len(anns) + 1, image_id=i + 1, category_id=int(rng.integers(1, 4)),
                             bbox=[x, y, w, h], area=w * h, iscrowd=0))
    anns.append(dict(id=len(anns) + 1, image_id=1, category_id=1, bbox=[500.0, 380.0, 120.0, 90.0],
                     area=120.0 * 90.0, iscrowd=1))
    categories = [dict(id=k + 1, name=n) for k, n in enumerate(CLASSES)]
    return dict(images=images, annotations=anns, categories=categories)


def make_results(gt: Dict[str, Any], seed: int = 1) -> List[Dict[str, Any]]:
    """Detections of a plausible, imperfect detector: most boxes found with jitter (better boxes
    score higher), some missed, some given the wrong class, duplicates and false positives."""
    rng = np.random.default_rng(seed)
    results = []
    for ann in gt["annotations"]:
        if ann["iscrowd"] or rng.random() < 0.15:  # missed
            continue
        x, y, w, h = ann["bbox"]
        jitter = rng.normal(0, 0.12, 4)
        box = [x + jitter[0] * w, y + jitter[1] * h, w * np.exp(jitter[2]), h * np.exp(jitter[3])]
        cat = ann["category_id"] if rng.random() > 0.1 else int(rng.integers(1, 5))
        score = float(np.clip(0.95 - 2.0 * np.abs(jitter).mean() + rng.normal(0, 0.1), 0.06, 0.99))
        results.append(dict(image_id=ann["image_id"], category_id=cat, bbox=box, score=score))
        if rng.random() < 0.2:  # a duplicate, scored lower
            results.append(dict(image_id=ann["image_id"], category_id=cat,
                                bbox=[v * float(rng.uniform(0.97, 1.03)) for v in box], score=score * 0.5))
    for img in gt["images"]:
        for _ in range(int(rng.integers(0, 3))):  # false positives
            w, h = (float(v) for v in rng.uniform(20, 150, 2))
            results.append(dict(image_id=img["id"], category_id=int(rng.integers(1, 5)),
                                bbox=[float(rng.uniform(0, 640 - w)), float(rng.uniform(0, 480 - h)), w, h],
                                score=float(rng.uniform(0.05, 0.6))))
    return results
