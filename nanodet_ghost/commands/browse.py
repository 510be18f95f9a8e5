"""Write dataset samples, as the network sees them, with their boxes and class names as PNG files.

    nanodet-ghost browse CONFIG [--split train|val|test] [--n 16] [--out DIR]
        [--seed 0] [-o data.train.root=/path ...]

Train samples go through the full augmentation of the config (`data.augment`); val / test samples
through the letterbox resize only. Images are de-normalised with `data.mean` / `data.std`; ignore
regions are drawn in grey.
"""
from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any, Dict, List, Sequence, Tuple

import cv2
import numpy as np

from nanodet_ghost.cli import EXIT_OK, config_path, run_main, tool_parser
from nanodet_ghost.config import load_config
from nanodet_ghost.data.loader import build_dataset
from nanodet_ghost.data.transforms import denormalize

logger = logging.getLogger(__name__)
PROG = "tools/browse_dataset.py"


def class_colour(label: int) -> Tuple[int, int, int]:
    """A stable, well separated BGR colour per class (golden-ratio hue steps)."""
    hue = int((label * 0.618033988749895 % 1.0) * 180)
    bgr = cv2.cvtColor(np.uint8([[[hue, 220, 255]]]), cv2.COLOR_HSV2BGR)[0, 0]
    return int(bgr[0]), int(bgr[1]), int(bgr[2])


def draw_sample(sample: Dict[str, Any], class_names: Sequence[str], mean: Sequence[float],
                std: Sequence[float]) -> np.ndarray:
    """uint8 [H, W, 3] BGR picture of a pipeline sample with labelled boxes."""
    img = denormalize(sample["img"], mean, std)
    for box in np.asarray(sample["gt_ignore"]).reshape(-1, 4):
        x1, y1, x2, y2 = (int(round(v)) for v in box)
        cv2.rectangle(img, (x1, y1), (x2 - 1, y2 - 1), (160, 160, 160), 1, cv2.LINE_AA)
    for box, label in zip(np.asarray(sample["gt_boxes"]).reshape(-1, 4), sample["gt_labels"]):
        x1, y1, x2, y2 = (int(round(v)) for v in box)
        colour = class_colour(int(label))
        cv2.rectangle(img, (x1, y1), (x2 - 1, y2 - 1), colour, 1, cv2.LINE_AA)
        name = class_names[int(label)] if 0 <= int(label) < len(class_names) else str(int(label))
        (tw, th), base = cv2.getTextSize(name, cv2.FONT_HERSHEY_SIMPLEX, 0.35, 1)
        ty = y1 - 2 if y1 - th - base - 2 >= 0 else y1 + th + 2
        cv2.rectangle(img, (x1, ty - th - 1), (x1 + tw + 1, ty + base - 1), colour, -1)
        cv2.putText(img, name, (x1 + 1, ty - 1), cv2.FONT_HERSHEY_SIMPLEX, 0.35, (0, 0, 0), 1,
                    cv2.LINE_AA)
    return img


def parse_args(argv: List[str] | None = None, prog: str = PROG) -> argparse.Namespace:
    parser = tool_parser(prog, "Draw augmented dataset samples to PNG files.")
    parser.add_argument("config", help="YAML config (see config/)")
    parser.add_argument("--split", choices=("train", "val", "test"), default="train")
    parser.add_argument("--n", type=int, default=16, help="number of samples to write")
    parser.add_argument("--out", type=Path, default=None,
                        help="output folder (default: outputs/browse_<split>)")
    parser.add_argument("--seed", type=int, default=0, help="picks the images and augmentations")
    parser.add_argument("-o", "--override", action="append", default=[], metavar="KEY=VALUE",
                        help="config override, e.g. -o data.train.root=/data/coco (repeatable)")
    return parser.parse_args(argv)


def run(args: argparse.Namespace) -> int:
    cfg = load_config(config_path(args.config), args.override)
    dataset = build_dataset(cfg.data, args.split, seed=args.seed)
    out_dir = args.out or Path("outputs") / f"browse_{args.split}"
    out_dir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(args.seed)
    n = min(args.n, len(dataset))
    indices = rng.choice(len(dataset), n, replace=False) if n < len(dataset) else range(n)
    num_boxes = 0
    for k, index in enumerate(indices):
        sample = dataset[int(index)]
        if "unreadable" in sample:  # val / test datasets stand in for an unreadable image
            logger.warning("%s: %s", sample["meta"]["file_name"], sample["unreadable"])
            continue
        picture = draw_sample(sample, dataset.class_names, cfg.data.mean, cfg.data.std)
        stem = Path(str(sample["meta"]["file_name"])).stem
        path = out_dir / f"{args.split}_{k:03d}_{stem}.png"
        if not cv2.imwrite(str(path), picture):
            raise OSError(f"cannot write {path}")
        num_boxes += len(sample["gt_boxes"])
        logger.debug("wrote %s (%d boxes)", path, len(sample["gt_boxes"]))
    print(f"wrote {n} {args.split} samples ({num_boxes} boxes) to {out_dir}")
    return EXIT_OK


def main(argv: List[str] | None = None, prog: str = PROG) -> int:
    return run_main(prog, parse_args, run, argv)

