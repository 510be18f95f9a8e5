"""Train a detector: `nanodet-ghost train CONFIG [--resume | --resume-from CKPT] [key=value ...]`.

Checkpoints, TensorBoard/CSV logs, the resolved config and the final evaluation go to
`train.save_dir`. `--resume` continues from the run's own `checkpoints/last.ckpt`;
`--resume-from CKPT` from any checkpoint. Overrides apply to a resumed run too, e.g.
`nanodet-ghost train CONFIG --resume train.max_epochs=60` trains on to epoch 60.
"""
from __future__ import annotations

import argparse
from typing import List, Optional

from nanodet_ghost.cli import EXIT_OK, TIMED_LOG_FORMAT, config_path, run_main, tool_parser
from nanodet_ghost.config import load_config
from nanodet_ghost.trainer.runner import train

PROG = "tools/train.py"


def parse_args(argv: Optional[List[str]] = None, prog: str = PROG) -> argparse.Namespace:
    parser = tool_parser(prog, __doc__)
    parser.add_argument("config", help="YAML config")
    resume = parser.add_mutually_exclusive_group()
    resume.add_argument("--resume", action="store_true",
                        help="continue from train.save_dir/checkpoints/last.ckpt")
    resume.add_argument("--resume-from", metavar="CKPT", help="continue from this checkpoint")
    parser.add_argument("--no-final-eval", action="store_true", help="skip the evaluation of the best checkpoint")
    parser.add_argument("overrides", nargs="*", help="config overrides, e.g. train.max_epochs=10")
    return parser.parse_intermixed_args(argv)  # overrides may follow the options


def run(args: argparse.Namespace) -> int:
    cfg = load_config(config_path(args.config), args.overrides)
    resume = "last" if args.resume else args.resume_from
    result = train(cfg, resume=resume, evaluate_at_end=not args.no_final_eval)
    if not result.is_global_zero:
        return EXIT_OK
    if result.final_eval:
        for split in ("val", "test"):
            if split in result.final_eval:
                print(f"{split} mAP@[.5:.95] = {result.final_eval[split]['mAP']:.4f}")
    print(f"best checkpoint: {result.best_checkpoint}")
    return EXIT_OK


def main(argv: Optional[List[str]] = None, prog: str = PROG) -> int:
    return run_main(prog, parse_args, run, argv, TIMED_LOG_FORMAT)

