"""Shared helpers of the evaluation tests: a tiny hand-made ground truth and the CLI runner."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any, Dict

import numpy as np

from nanodet_ghost.paths import REPO_ROOT

CATEGORY_IDS = [3, 7, 9]
CLASS_NAMES = ["cat", "dog", "bird"]  # bird has no ground truth


def tiny_gt(with_annotations: bool = True) -> Dict[str, Any]:
    anns = [  # id 0 on purpose: pycocotools would count its match as a false positive
        dict(id=0, image_id=1, category_id=3, bbox=[10, 10, 30, 30], area=900, iscrowd=0),
        dict(id=1, image_id=2, category_id=7, bbox=[50, 20, 40, 60], area=2400, iscrowd=0),
        dict(id=2, image_id=2, category_id=3, bbox=[0, 0, 20, 20], area=400, iscrowd=0),
    ]
    return dict(
        images=[dict(id=1, width=100, height=100, file_name="a.jpg"),
                dict(id=2, width=200, height=100, file_name="b.jpg")],
        annotations=anns if with_annotations else [],
        categories=[dict(id=c, name=n) for c, n in zip(CATEGORY_IDS, CLASS_NAMES)],
    )


def perfect_predictions() -> Dict[int, Dict[str, np.ndarray]]:
    return {
        1: dict(boxes=np.array([[10, 10, 40, 40]], np.float32), scores=np.array([0.9]),
                labels=np.array([0])),
        2: dict(boxes=np.array([[50, 20, 90, 80], [0, 0, 20, 20]], np.float32),
                scores=np.array([0.8, 0.7]), labels=np.array([1, 0])),
    }


def run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(REPO_ROOT / "tools" / "test.py"), *args],
                          capture_output=True, text=True, timeout=120, cwd=cwd)


def write(path: Path, obj: Any) -> Path:
    path.write_text(json.dumps(obj))
    return path
