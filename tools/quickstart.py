#!/usr/bin/env python
"""The README's main job: train on the embedded synthetic dataset, report COCO mAP, predict.

    python tools/quickstart.py [key=value ...]

Generates the dataset on first use (no download), trains `config/quickstart.yml` (about 10
minutes on 2 CPU cores), evaluates the best checkpoint with pycocotools, then runs the predictor on
one validation image and saves the drawing next to the checkpoints.
"""
from __future__ import annotations

import argparse
import logging
import sys
from typing import List, Optional

import cv2

from nanodet_ghost.cli import EXIT_FAILED, EXIT_OK, TIMED_LOG_FORMAT, config_path, run_main, tool_parser
from nanodet_ghost.analysis import PLOTS_DIR
from nanodet_ghost.config import load_config
from nanodet_ghost.data.synthetic import ensure_synthetic
from nanodet_ghost.inference.predictor import Predictor
from nanodet_ghost.inference.visualize import draw_detections
from nanodet_ghost.paths import REPO_ROOT
from nanodet_ghost.trainer.runner import train

DEMO_SCORE_THR = 0.3  # the score a demo-style prediction must reach to be drawn
PROG = "tools/quickstart.py"


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = tool_parser(PROG, __doc__)
    parser.add_argument("--config", default=str(REPO_ROOT / "config" / "quickstart.yml"))
    parser.add_argument("overrides", nargs="*", help="config overrides, e.g. train.max_epochs=2")
    return parser.parse_intermixed_args(argv)  # overrides may come before or after the options


def run(args: argparse.Namespace) -> int:
    cfg = load_config(config_path(args.config), args.overrides)
    result = train(cfg)
    if result.best_checkpoint is None or not result.final_eval:
        logging.getLogger(__name__).error("training produced no checkpoint")
        return EXIT_FAILED

    predictor = Predictor.from_checkpoint(cfg, result.best_checkpoint)
    image_path = sorted((ensure_synthetic("val", cfg.data.val.root or None) / "images").glob("*.jpg"))[0]
    detections = predictor.predict(str(image_path), score_thr=DEMO_SCORE_THR)
    drawing = result.save_dir / "prediction.png"
    cv2.imwrite(str(drawing), draw_detections(cv2.imread(str(image_path)), detections))

    val = result.final_eval["val"]
    print("\n=== quickstart finished ===")
    print(f"COCO mAP@[.5:.95] on the synthetic val split: {val['mAP']:.4f} (AP50 {val['stats'][1]:.4f})")
    print("per-class AP: " + ", ".join(f"{k} {v:.3f}" for k, v in val["per_class_ap"].items() if v is not None))
    print(f"best checkpoint: {result.best_checkpoint}")
    found = ", ".join(f"{n} {s:.2f}" for n, s in zip(detections.names, detections.scores))
    if not len(detections):  # say how close it came rather than print a bare zero
        top = predictor.predict(str(image_path), score_thr=0.0)
        found = f"none above {DEMO_SCORE_THR:.2f}; best score {float(top.scores.max()):.2f}" if len(top) else "no candidates"
    print(f"prediction on {image_path.name}: {len(detections)} objects ({found}) -> {drawing}")
    plots = result.save_dir / PLOTS_DIR
    if plots.is_dir():
        print(f"plots: {plots} (results.png: losses and mAP per epoch; val_predictions.jpg: ground truth "
              "beside predictions; PR / F1 curves, confusion matrix, train_batch.jpg)")
    return EXIT_OK


def main(argv: Optional[List[str]] = None) -> int:
    return run_main(PROG, parse_args, run, argv, TIMED_LOG_FORMAT)


if __name__ == "__main__":
    sys.exit(main())
