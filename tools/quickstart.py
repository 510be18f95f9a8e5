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

import cv2

from nanodet_ghost.config import load_config
from nanodet_ghost.data.synthetic import ensure_synthetic
from nanodet_ghost.inference.predictor import Predictor
from nanodet_ghost.inference.visualize import draw_detections
from nanodet_ghost.paths import REPO_ROOT
from nanodet_ghost.trainer.runner import train

DEMO_SCORE_THR = 0.3  # the score a demo-style prediction must reach to be drawn


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default=str(REPO_ROOT / "config" / "quickstart.yml"))
    parser.add_argument("overrides", nargs="*", help="config overrides, e.g. train.max_epochs=2")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    cfg = load_config(args.config, args.overrides)
    result = train(cfg)
    if result.best_checkpoint is None or not result.final_eval:
        logging.error("training produced no checkpoint")
        return 1

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
    return 0


if __name__ == "__main__":
    sys.exit(main())
