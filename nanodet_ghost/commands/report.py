"""What a config's dataset holds, and whether its boxes suit the input size.

    nanodet-ghost report CONFIG [--split train] [--out DIR] [-o KEY=VALUE ...]

Prints, for every split of the config: images, boxes per class, images without boxes, ignore
regions; then, for `--split`: the share of GT boxes that get at least one positive from the
training assigner (ATSS over anchors of `model.loss.octave_base_scale` x stride) at
`data.train_input_size` (else `data.input_size`), by box size; then the loaders' own summary lines (what they skipped or
repaired). Writes DIR/dataset_report.png (default outputs/dataset_report): boxes per class, box
width / height histograms against the strides and anchor sizes, and the coverage by size.

Boxes are resized as validation resizes them (no augmentation). A low coverage for small boxes
means they are too small for the input size: raise `data.input_size` or lower the strides.
"""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import List, Optional

from nanodet_ghost.analysis.dataset_stats import (
    positive_coverage,
    report_figure,
    report_table,
    split_stats,
)
from nanodet_ghost.analysis.figures import save_figure
from nanodet_ghost.cli import EXIT_OK, UsageError, config_path, run_main, tool_parser
from nanodet_ghost.config import load_config
from nanodet_ghost.data.loader import SPLITS, build_source_for
from nanodet_ghost.model import build_model

PROG = "tools/dataset_report.py"


def parse_args(argv: Optional[List[str]] = None, prog: str = PROG) -> argparse.Namespace:
    parser = tool_parser(prog, __doc__.splitlines()[0])
    parser.set_defaults(log_level="WARNING")  # the loaders' summaries are in the report already
    parser.add_argument("config", help="YAML config")
    parser.add_argument("--split", choices=SPLITS, default="train",
                        help="split whose box sizes and positive coverage are reported (default train)")
    parser.add_argument("--out", type=Path, default=Path("outputs") / "dataset_report",
                        help="folder of dataset_report.png")
    parser.add_argument("-o", "--override", action="append", default=[], metavar="KEY=VALUE",
                        help="config override, e.g. -o data.input_size=[416,416] (repeatable)")
    return parser.parse_args(argv)


def run(args: argparse.Namespace) -> int:
    """Print the report and write the figure."""
    cfg = load_config(config_path(args.config), args.override)
    data = cfg.data
    if data.get(args.split) is None:
        raise UsageError(f"{args.config}: the config has no data.{args.split} section")
    sources = {split: build_source_for(data[split], list(data.class_names), split)
               for split in SPLITS if data.get(split) is not None}
    class_names = list(data.class_names) or list(sources[args.split].class_names)
    stats = [split_stats(split, source) for split, source in sources.items()]
    loss_fn = build_model(cfg.model).loss_fn  # the training's own anchors and assigner
    size = data.train_input_size or data.input_size  # the size the assigner sees the boxes at
    coverage = positive_coverage(sources[args.split], loss_fn, size, data.keep_ratio)
    assigner = (f"ATSS top-{loss_fn.assigner.topk}, anchors {loss_fn.octave_base_scale:g} x stride "
                f"{list(loss_fn.strides)}")
    print(report_table(stats, class_names, coverage, args.split, assigner))
    fig = report_figure(stats, class_names, coverage, loss_fn.strides, loss_fn.octave_base_scale, args.split)
    path = save_figure(fig, args.out / "dataset_report.png")
    print(f"\nwrote {path}")
    return EXIT_OK


def main(argv: Optional[List[str]] = None, prog: str = PROG) -> int:
    return run_main(prog, parse_args, run, argv)

