"""COCO bbox evaluation from the command line.

Score an existing COCO results file (no model, no torch needed):
    nanodet-ghost test --ann GT.json --results R.json [--stats-out S.json]

Evaluate a checkpoint (or an exported .onnx / OpenVINO .xml / ncnn .param model) on a config's split:
    nanodet-ghost test CONFIG CKPT [--split val|test] [--out results.json] [--stats-out S.json]

`--plots DIR` (either mode) also writes the figures of `nanodet_ghost.analysis` to DIR: PR and
P / R / F1 curves, confusion matrix, per-class and per-size AP, and in checkpoint mode the first
images with ground truth beside predictions (<split>_predictions.jpg) and, without --out, the
results json (results_<split>.json).

The COCO summary and the per-class AP table go to stdout, logs to stderr. Bad input (missing file,
invalid json, results on unknown image ids, ...) ends with a one-line message and the exit code of
`nanodet_ghost.cli` (listed by --help); `--log-level DEBUG` adds the traceback.
"""
from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import List, Optional

from nanodet_ghost.cli import EXIT_OK, config_path, run_main, tool_parser
from nanodet_ghost.evaluation.backends import DEFAULT_BACKEND, EVAL_BACKENDS
from nanodet_ghost.evaluation.coco import CocoEvalResult, evaluate_results_file
from nanodet_ghost.evaluation.jsonio import save_stats

logger = logging.getLogger(__name__)
PROG = "tools/test.py"


def parse_args(argv: Optional[List[str]] = None, prog: str = PROG) -> argparse.Namespace:
    parser = tool_parser(
        prog, "COCO bbox evaluation of a results file, a checkpoint or an exported model.",
        epilog="examples:\n"
        "  nanodet-ghost test --ann instances_val.json --results results.json --stats-out stats.json\n"
        "  nanodet-ghost test config/ghost.yml work_dirs/run/model_best.ckpt --split val --out r.json",
    )
    parser.add_argument("config", nargs="?", help="config yaml (checkpoint mode)")
    parser.add_argument("checkpoint", nargs="?",
                        help=".ckpt (EMA weights preferred), or .onnx / .xml / .param from `nanodet-ghost export`")
    parser.add_argument("--split", default="val", choices=("val", "test"))
    parser.add_argument("--out", help="write the COCO results json here (checkpoint mode)")
    parser.add_argument("--device", help="torch device (default: cuda if available, else cpu)")
    parser.add_argument("--ann", help="COCO instances json (results-file mode)")
    parser.add_argument("--results", help="COCO bbox results json to score (results-file mode)")
    parser.add_argument("--stats-out", help='write {"stats": [12], "per_class_ap": {...}} here')
    parser.add_argument("--lenient", action="store_true",
                        help="drop detections on image ids unknown to the ground truth instead "
                        "of failing")
    parser.add_argument("--strict", action="store_true",
                        help="fail on an unreadable image of the split instead of dropping it "
                        "and its ground truth (also evaluation.strict in the config)")
    parser.add_argument("--backend", choices=sorted(EVAL_BACKENDS),
                        help="COCOeval implementation (default pycocotools, or evaluation.backend "
                        "of the config); faster_coco_eval needs pip install 'nanodet_ghost[fast-eval]'")
    parser.add_argument("--override", "-o", nargs="*", default=[], metavar="KEY=VALUE",
                        help="config overrides (checkpoint mode)")
    parser.add_argument("--flip-tta", metavar="VIEWS", type=_flip_views, default=(),
                        help="test-time augmentation (checkpoint mode, .ckpt only): average the "
                        "dense outputs of the image and its flips before NMS. VIEWS: h (left-right), "
                        "h,v,hv (also up-down and both: for top-down images, e.g. microscopy). "
                        "Costs one forward per view")
    parser.add_argument("--plots", metavar="DIR",
                        help="write PR / F1 curves, confusion matrix, AP figures (and, in checkpoint "
                        "mode, <split>_predictions.jpg) to DIR")
    args = parser.parse_args(argv)
    file_mode = args.ann is not None or args.results is not None
    if file_mode:
        if args.ann is None or args.results is None:
            parser.error("--ann and --results go together")
        if args.config or args.checkpoint or args.out:
            parser.error("give either --ann/--results or CONFIG CKPT, not both")
        if args.flip_tta:
            parser.error("--flip-tta needs CONFIG CKPT: a results file has no model to run")
    elif not (args.config and args.checkpoint):
        parser.error("give CONFIG CKPT (checkpoint mode) or --ann GT.json --results R.json")
    return args


def _flip_views(text: str) -> tuple:
    from nanodet_ghost.model.head.flip_tta import check_flip_views  # imports torch: only with --flip-tta

    views = tuple(v.strip() for v in text.split(",") if v.strip())
    try:
        if not views or "none" in views:
            raise ValueError
        check_flip_views(views)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r}: give flips from h, v, hv separated by commas, e.g. h or h,v,hv") from None
    return views


def _report(result: CocoEvalResult) -> None:
    """The final table goes to stdout (the one place where this tool prints)."""
    print(result.summary)
    print()
    print(result.table)


def run(args: argparse.Namespace) -> CocoEvalResult:
    """Evaluate according to `args` (see `parse_args`); raises on bad input."""
    reject_unknown_image_ids = not args.lenient
    if args.results is not None:
        result = evaluate_results_file(args.ann, args.results, strict=reject_unknown_image_ids,
                                       backend=args.backend or DEFAULT_BACKEND)
        if args.stats_out:
            logger.info("stats written to %s",
                        save_stats(result.stats, result.per_class_ap, args.stats_out))
        if args.plots:
            from nanodet_ghost.analysis import make_file_plots

            _log_plots(make_file_plots(args.ann, args.results, args.plots))
        return result
    from nanodet_ghost.config import load_config
    from nanodet_ghost.evaluation.runner import evaluate_checkpoint

    overrides = list(args.override) + ([f"evaluation.backend={args.backend}"] if args.backend else [])
    cfg = load_config(config_path(args.config), overrides)
    out = args.out or (str(Path(args.plots) / f"results_{args.split}.json") if args.plots else None)
    result = evaluate_checkpoint(cfg, args.checkpoint, args.split, out=out,
                                 stats_out=args.stats_out, device=args.device,
                                 reject_unknown_image_ids=reject_unknown_image_ids,
                                 reject_unreadable_images=True if args.strict else None,
                                 flip_tta=args.flip_tta)
    if args.plots:
        from nanodet_ghost.analysis import make_split_plots

        _log_plots(make_split_plots(cfg, args.split, out, args.plots))
    return result


def _log_plots(files: List[Path]) -> None:
    logger.info("%d plots written to %s", len(files), files[0].parent if files else "nowhere")


def run_and_report(args: argparse.Namespace) -> int:
    if args.log_level == "INFO":  # the summary and table are printed below: don't log them twice
        logging.getLogger(__name__).setLevel(logging.WARNING)
    _report(run(args))
    return EXIT_OK


def main(argv: Optional[List[str]] = None, prog: str = PROG) -> int:
    return run_main(prog, parse_args, run_and_report, argv)

