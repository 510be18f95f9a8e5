#!/usr/bin/env python
"""Train a detector: `tools/train.py CONFIG [--resume [CKPT]] [key=value ...]`.

Checkpoints, TensorBoard/CSV logs, the resolved config and the final evaluation go to
`train.save_dir`. `--resume` alone continues from the run's last checkpoint.
"""
from __future__ import annotations

import argparse
import logging
import sys

from nanodet_ghost.config import ConfigError, load_config
from nanodet_ghost.trainer.checkpoint import CheckpointMismatchError
from nanodet_ghost.trainer.runner import ClassCountError, train


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("config", help="YAML config")
    parser.add_argument("--resume", nargs="?", const="last", default=None,
                        help="resume from CKPT, or from save_dir/checkpoints/last.ckpt when no path is given")
    parser.add_argument("--no-final-eval", action="store_true", help="skip the evaluation of the best checkpoint")
    parser.add_argument("--log-level", default="INFO")
    parser.add_argument("overrides", nargs="*", help="config overrides, e.g. train.max_epochs=10")
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        cfg = load_config(args.config, args.overrides)
        result = train(cfg, resume=args.resume, evaluate_at_end=not args.no_final_eval)
    except (ConfigError, ClassCountError, CheckpointMismatchError, FileNotFoundError) as exc:
        print(f"tools/train.py: error: {exc}", file=sys.stderr)
        return 2
    if not result.is_global_zero:
        return 0
    if result.final_eval:
        for split in ("val", "test"):
            if split in result.final_eval:
                print(f"{split} mAP@[.5:.95] = {result.final_eval[split]['mAP']:.4f}")
    print(f"best checkpoint: {result.best_checkpoint}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
