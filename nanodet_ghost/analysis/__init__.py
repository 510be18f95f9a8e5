"""Results people can see: figures of a training run and of an evaluation, dataset statistics.

Plain functions, arrays in and figures out, no Lightning: `coco_curves` (PR, P/R/F1 against
confidence, AP tables, all read from pycocotools' accumulated evaluation), `confusion` (the
detection confusion matrix), `training_log` (the CSV logs per epoch), `figures` (matplotlib, object
API, headless), `drawing` (OpenCV grids of images with boxes), `dataset_stats` (counts, box sizes
and the share of boxes the assigner gives a positive), and `run_plots`, which makes them all.
"""
from nanodet_ghost.analysis.run_plots import (
    PLOTS_DIR,
    make_eval_plots,
    make_file_plots,
    make_run_plots,
    make_split_plots,
)

__all__ = ["PLOTS_DIR", "make_eval_plots", "make_file_plots", "make_run_plots", "make_split_plots"]
