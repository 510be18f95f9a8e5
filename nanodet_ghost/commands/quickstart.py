"""The README's main job: train on the embedded synthetic dataset, report COCO mAP, predict.

    nanodet-ghost quickstart [key=value ...]

Generates the dataset on first use (no download), trains the bundled `quickstart` config (its
`train.time_budget`: under 10 minutes in all on 2 CPU cores), evaluates the best checkpoint with
pycocotools, then runs the predictor on the first four validation images and saves a 2x2 grid of
what it found (and, outlined in white, what it missed) next to the checkpoints. Everything is written
under `train.save_dir` (work_dirs/quickstart, relative to the current folder); the dataset under
`$NANODET_GHOST_CACHE` (default ~/.cache/nanodet_ghost).
"""
from __future__ import annotations

import argparse
import logging
from typing import List, Optional

from nanodet_ghost.analysis.drawing import write_image
from nanodet_ghost.analysis.found import find_in_first_images, found_grid
from nanodet_ghost.cli import EXIT_FAILED, EXIT_OK, TIMED_LOG_FORMAT, config_path, run_main, tool_parser
from nanodet_ghost.analysis import PLOTS_DIR
from nanodet_ghost.config import load_config
from nanodet_ghost.data.loader import build_source_for
from nanodet_ghost.inference.predictor import Predictor
from nanodet_ghost.trainer.runner import train

DEMO_SCORE_THR = 0.3  # the score a demo-style prediction must reach to be drawn
FOUND_IOU = 0.5  # a drawn detection of the right class at this IoU finds an object
GRID_IMAGES = 4  # the first val images, not chosen ones
PROG = "tools/quickstart.py"


def parse_args(argv: Optional[List[str]] = None, prog: str = PROG) -> argparse.Namespace:
    parser = tool_parser(prog, __doc__)
    parser.add_argument("--config", default="quickstart",
                        help="a YAML file or a bundled config's name (default quickstart)")
    parser.add_argument("overrides", nargs="*", help="config overrides, e.g. train.max_epochs=2")
    return parser.parse_intermixed_args(argv)  # overrides may come before or after the options


def run(args: argparse.Namespace) -> int:
    cfg = load_config(config_path(args.config), args.overrides)
    result = train(cfg)
    if result.best_checkpoint is None or not result.final_eval:
        logging.getLogger(__name__).error("training produced no checkpoint")
        return EXIT_FAILED

    predictor = Predictor.from_checkpoint(cfg, result.best_checkpoint)
    source = build_source_for(cfg.data.val, list(cfg.data.class_names), "val")
    items = find_in_first_images(source, predictor, GRID_IMAGES, FOUND_IOU, DEMO_SCORE_THR)
    drawing = result.save_dir / "predictions_grid.jpg"
    write_image(drawing, found_grid(items, list(cfg.data.class_names), DEMO_SCORE_THR))
    found = sum(int(item.found.sum()) for item in items)
    total = sum(len(item.found) for item in items)

    val = result.final_eval["val"]
    print("\n=== quickstart finished ===")
    print(f"COCO mAP@[.5:.95] on the synthetic val split: {val['mAP']:.4f} (AP50 {val['stats'][1]:.4f})")
    print("per-class AP: " + ", ".join(f"{k} {v:.3f}" for k, v in val["per_class_ap"].items() if v is not None))
    print(f"best checkpoint: {result.best_checkpoint}")
    print(f"prediction on the first {len(items)} val images: found {found} of {total} objects "
          f"({100.0 * found / max(total, 1):.0f} %) at IoU >= {FOUND_IOU:.2f} with score >= {DEMO_SCORE_THR:.2f} "
          f"-> {drawing}")
    plots = result.save_dir / PLOTS_DIR
    if plots.is_dir():
        print(f"plots: {plots} (results.png: losses and mAP per epoch; val_predictions.jpg: ground truth "
              "beside predictions; PR / F1 curves, confusion matrix, train_batch.jpg)")
    return EXIT_OK


def main(argv: Optional[List[str]] = None, prog: str = PROG) -> int:
    return run_main(prog, parse_args, run, argv, TIMED_LOG_FORMAT)

