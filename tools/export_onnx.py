#!/usr/bin/env python
"""Export a trained checkpoint to ONNX (EMA weights, BatchNorm fused, metadata for a config-free run).

    python tools/export_onnx.py CONFIG CKPT --out model.onnx [--input-size W H] [--dynamic-batch]
                                [--opset 13] [--no-simplify] [--no-fuse] [--check-map [SPLIT]]

The output `[B, N, C + 4 * (reg_max + 1)]` holds the class scores after sigmoid, then the
distribution logits (NanoDet-Plus layout); run it with `nanodet_ghost.inference.OnnxPredictor`.
`--check-map` then evaluates the checkpoint (PyTorch) and the export (ONNX Runtime) on the config's
val (or given) split and fails (exit code 3) when their COCO mAP differs by more than 0.002.
"""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import List, Optional

_REPO_ROOT = str(Path(__file__).resolve().parent.parent)
if _REPO_ROOT not in sys.path:  # run as `python tools/export_onnx.py` without installing
    sys.path.insert(0, _REPO_ROOT)

logger = logging.getLogger("nanodet_ghost.tools.export_onnx")


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="tools/export_onnx.py", description=__doc__.splitlines()[0])
    parser.add_argument("config", help="config yaml used for training")
    parser.add_argument("checkpoint", help="Lightning checkpoint (.ckpt; EMA weights preferred)")
    parser.add_argument("--out", required=True, help="the .onnx file to write")
    parser.add_argument("--input-size", nargs=2, type=int, metavar=("W", "H"),
                        help="network input size (default: data.input_size of the config)")
    parser.add_argument("--dynamic-batch", action="store_true", help="symbolic batch dimension")
    parser.add_argument("--opset", type=int, default=13, help="ONNX opset (>= 13, default 13)")
    parser.add_argument("--no-simplify", action="store_true", help="skip onnxsim even if installed")
    parser.add_argument("--no-fuse", action="store_true", help="keep BatchNorm layers separate")
    parser.add_argument("--check-map", nargs="?", const="val", choices=("val", "test"), metavar="SPLIT",
                        help="compare COCO mAP of PyTorch and ONNX Runtime on SPLIT (default val)")
    parser.add_argument("--override", "-o", nargs="*", default=[], metavar="KEY=VALUE",
                        help="config overrides")
    parser.add_argument("--log-level", default="INFO", choices=("DEBUG", "INFO", "WARNING", "ERROR"))
    args = parser.parse_args(argv)
    if args.opset < 13:
        parser.error(f"--opset must be >= 13, got {args.opset}")
    return args


def main(argv: Optional[List[str]] = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=args.log_level, format="%(levelname)s %(name)s: %(message)s")
    from nanodet_ghost.export.onnx import export_checkpoint

    try:
        path = export_checkpoint(args.config, args.checkpoint, args.out, overrides=args.override,
                                 input_size=args.input_size, dynamic_batch=args.dynamic_batch,
                                 opset=args.opset, fuse=not args.no_fuse, simplify=not args.no_simplify)
    except (ValueError, OSError) as exc:  # bad config / checkpoint: one line, no stack trace
        logger.debug("traceback", exc_info=True)
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        sys.stderr.write(f"tools/export_onnx.py: error: {message}\n")
        return 1
    print(f"wrote {path}")
    if args.check_map:
        from nanodet_ghost.config import load_config
        from nanodet_ghost.export.parity import compare_onnx_with_pytorch

        try:
            cfg = load_config(args.config, args.override)
            result = compare_onnx_with_pytorch(cfg, args.checkpoint, path, split=args.check_map)
        except (ValueError, OSError) as exc:
            logger.debug("traceback", exc_info=True)
            sys.stderr.write(f"tools/export_onnx.py: error: --check-map: {str(exc).strip().splitlines()[0]}\n")
            return 1
        print(result.summary())
        return 0 if result.ok else 3
    return 0


if __name__ == "__main__":
    sys.exit(main())
