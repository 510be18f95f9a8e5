"""Export a trained checkpoint to ONNX (EMA weights, BatchNorm fused, metadata for a config-free run).

    python tools/export_onnx.py CONFIG CKPT --out model.onnx [--head {raw,boxes,nms}] [--input-size W H]
                                [--dynamic-batch] [--opset 13] [--no-simplify] [--no-fuse] [--check-map [SPLIT]]

With the default `--head raw`, the output `[B, N, C + 4 * (reg_max + 1)]` holds the class scores
after sigmoid, then the distribution logits (NanoDet-Plus layout); `--head boxes` and `--head nms`
end in decoded boxes or in detections (see `nanodet-ghost export`). Run any of them with
`nanodet_ghost.inference.OnnxPredictor`.
`--check-map` then evaluates the checkpoint (PyTorch) and the export (ONNX Runtime) on the config's
val (or given) split and fails (exit code 1) when their COCO mAP differs by more than 0.002.
"""
from __future__ import annotations

import argparse
from typing import List, Optional

from nanodet_ghost.cli import EXIT_FAILED, EXIT_OK, config_path, run_main, tool_parser
from nanodet_ghost.config import load_config
from nanodet_ghost.export.heads import HEADS
from nanodet_ghost.export.onnx import export_checkpoint
from nanodet_ghost.export.parity import compare_onnx_with_pytorch

PROG = "tools/export_onnx.py"


def parse_args(argv: Optional[List[str]] = None, prog: str = PROG) -> argparse.Namespace:
    parser = tool_parser(prog, __doc__.splitlines()[0])
    parser.add_argument("config", help="config yaml used for training")
    parser.add_argument("checkpoint", help="Lightning checkpoint (.ckpt; EMA weights preferred)")
    parser.add_argument("--out", required=True, help="the .onnx file to write")
    parser.add_argument("--input-size", nargs=2, type=int, metavar=("W", "H"),
                        help="network input size (default: data.input_size of the config)")
    parser.add_argument("--dynamic-batch", action="store_true", help="symbolic batch dimension (not with --head nms)")
    parser.add_argument("--head", default="raw", choices=list(HEADS), help="what the graph ends with (default raw)")
    parser.add_argument("--opset", type=int, default=13, help="ONNX opset (>= 13, default 13)")
    parser.add_argument("--no-simplify", action="store_true", help="skip onnxsim even if installed")
    parser.add_argument("--no-fuse", action="store_true", help="keep BatchNorm layers separate")
    parser.add_argument("--check-map", nargs="?", const="val", choices=("val", "test"), metavar="SPLIT",
                        help="compare COCO mAP of PyTorch and ONNX Runtime on SPLIT (default val)")
    parser.add_argument("--override", "-o", nargs="*", default=[], metavar="KEY=VALUE",
                        help="config overrides")
    args = parser.parse_args(argv)
    if args.head == "nms" and args.dynamic_batch:
        parser.error("--head nms has a static batch: drop --dynamic-batch (or use --head raw or boxes)")
    if args.opset < 13:
        parser.error(f"--opset must be >= 13, got {args.opset}")
    return args


def run(args: argparse.Namespace) -> int:
    cfg = load_config(config_path(args.config), args.override)
    path = export_checkpoint(cfg, args.checkpoint, args.out, input_size=args.input_size,
                             dynamic_batch=args.dynamic_batch, opset=args.opset, fuse=not args.no_fuse,
                             simplify=not args.no_simplify, head=args.head)
    print(f"wrote {path}")
    if not args.check_map:
        return EXIT_OK
    result = compare_onnx_with_pytorch(cfg, args.checkpoint, path, split=args.check_map)
    print(result.summary())
    return EXIT_OK if result.ok else EXIT_FAILED


def main(argv: Optional[List[str]] = None, prog: str = PROG) -> int:
    return run_main(prog, parse_args, run, argv)

