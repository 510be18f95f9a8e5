#!/usr/bin/env python
"""COCO bbox evaluation from the command line.

Score an existing COCO results file (no model, no torch needed):
    python tools/test.py --ann GT.json --results R.json [--stats-out S.json]

Evaluate a checkpoint (or an exported .onnx model) on a config's split:
    python tools/test.py CONFIG CKPT [--split val|test] [--out results.json] [--stats-out S.json]

The COCO summary and the per-class AP table go to stdout, logs to stderr. Bad input (missing file,
invalid json, results on unknown image ids, ...) ends with a one-line message and exit code 1;
`--log-level DEBUG` adds the traceback.
"""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import List, Optional

_REPO_ROOT = str(Path(__file__).resolve().parent.parent)
if _REPO_ROOT not in sys.path:  # run as `python tools/test.py` without installing the package
    sys.path.insert(0, _REPO_ROOT)

from nanodet_ghost.evaluation.coco import CocoEvalResult, evaluate_results_file  # noqa: E402
from nanodet_ghost.evaluation.jsonio import save_stats  # noqa: E402

logger = logging.getLogger("nanodet_ghost.tools.test")


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="tools/test.py",
        description="COCO bbox evaluation of a results file, a checkpoint or an ONNX model.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n"
        "  tools/test.py --ann instances_val.json --results results.json --stats-out stats.json\n"
        "  tools/test.py config/ghost.yml work_dirs/run/model_best.ckpt --split val --out r.json",
    )
    parser.add_argument("config", nargs="?", help="config yaml (checkpoint mode)")
    parser.add_argument("checkpoint", nargs="?", help=".ckpt (EMA weights preferred) or .onnx")
    parser.add_argument("--split", default="val", choices=("val", "test"))
    parser.add_argument("--out", help="write the COCO results json here (checkpoint mode)")
    parser.add_argument("--device", help="torch device (default: cuda if available, else cpu)")
    parser.add_argument("--ann", help="COCO instances json (results-file mode)")
    parser.add_argument("--results", help="COCO bbox results json to score (results-file mode)")
    parser.add_argument("--stats-out", help='write {"stats": [12], "per_class_ap": {...}} here')
    parser.add_argument("--lenient", action="store_true",
                        help="drop detections on image ids unknown to the ground truth instead "
                        "of failing")
    parser.add_argument("--override", "-o", nargs="*", default=[], metavar="KEY=VALUE",
                        help="config overrides (checkpoint mode)")
    parser.add_argument("--log-level", default="INFO",
                        choices=("DEBUG", "INFO", "WARNING", "ERROR"))
    args = parser.parse_args(argv)
    file_mode = args.ann is not None or args.results is not None
    if file_mode:
        if args.ann is None or args.results is None:
            parser.error("--ann and --results go together")
        if args.config or args.checkpoint or args.out:
            parser.error("give either --ann/--results or CONFIG CKPT, not both")
    elif not (args.config and args.checkpoint):
        parser.error("give CONFIG CKPT (checkpoint mode) or --ann GT.json --results R.json")
    return args


def _report(result: CocoEvalResult) -> None:
    """The final table goes to stdout (the one place where this tool prints)."""
    print(result.summary)
    print()
    print(result.table)


def run(args: argparse.Namespace) -> CocoEvalResult:
    """Evaluate according to `args` (see `parse_args`); raises on bad input."""
    strict = not args.lenient
    if args.results is not None:
        result = evaluate_results_file(args.ann, args.results, strict=strict)
        if args.stats_out:
            logger.info("stats written to %s",
                        save_stats(result.stats, result.per_class_ap, args.stats_out))
        return result
    from nanodet_ghost.config import load_config
    from nanodet_ghost.evaluation.runner import evaluate_checkpoint

    cfg = load_config(args.config, args.override)
    return evaluate_checkpoint(cfg, args.checkpoint, args.split, out=args.out,
                               stats_out=args.stats_out, device=args.device, strict=strict)


def main(argv: Optional[List[str]] = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=args.log_level, format="%(levelname)s %(name)s: %(message)s")
    if args.log_level == "INFO":  # the summary and table are printed below: don't log them twice
        logging.getLogger("nanodet_ghost.evaluation.coco").setLevel(logging.WARNING)
    try:
        result = run(args)
    except (ValueError, OSError) as exc:  # bad input: one line, no stack trace
        logger.debug("traceback", exc_info=True)
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        sys.stderr.write(f"tools/test.py: error: {msg}\n")
        return 1
    _report(result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
