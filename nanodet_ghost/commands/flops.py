"""Parameters and multiply-adds of the detector at the configured input size, per part.

    nanodet-ghost flops CONFIG [--input-size W H] [--fused] [--override KEY=VALUE ...]

Counts come from `torch.utils.flop_counter.FlopCounterMode`, which counts convolutions and matrix
products (2 FLOPs per multiply-add); the table reports MACs (multiply-adds) = FLOPs / 2, the unit
detector papers quote as "FLOPs" (NanoDet, YOLO). Element-wise work (BatchNorm, activations, the
SE gate, the PAN's bilinear resizes and additions) is not counted.
"""
from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import List, Optional, Sequence

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from nanodet_ghost.cli import EXIT_OK, config_path, run_main, tool_parser
from nanodet_ghost.config import load_config
from nanodet_ghost.model import build_model, count_parameters
from nanodet_ghost.model.fuse import fuse_model

PROG = "tools/flops.py"


@dataclass
class PartCost:
    """One part of the model: parameters and multiply-adds for one image."""

    name: str
    params: int
    macs: int


def _count_macs(fn, *args) -> int:
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        fn(*args)
    return int(counter.get_total_flops()) // 2


def measure(model: nn.Module, input_size: Sequence[int]) -> List[PartCost]:
    """Per part (backbone, neck, head) and in total, for one `[1, 3, H, W]` image; `input_size`
    is (W, H). The model is put in eval mode."""
    model.eval()
    width, height = int(input_size[0]), int(input_size[1])
    x = torch.zeros(1, 3, height, width)
    with torch.no_grad():
        feats = model.backbone(x)
        neck_out = model.neck(feats)
    parts = [
        PartCost("backbone", sum(p.numel() for p in model.backbone.parameters()), _count_macs(model.backbone, x)),
        PartCost("neck", sum(p.numel() for p in model.neck.parameters()), _count_macs(model.neck, feats)),
        PartCost("head", sum(p.numel() for p in model.head.parameters()), _count_macs(model.head, neck_out)),
    ]
    total_params = count_parameters(model)  # what is deployed: no training-only auxiliary head
    parts.append(PartCost("total", total_params, _count_macs(model, x)))
    return parts


def format_table(parts: Sequence[PartCost], input_size: Sequence[int], fused: bool) -> str:
    lines = [f"input {input_size[0]}x{input_size[1]} (W x H), batch 1{', BN fused' if fused else ''}",
             f"{'part':<10}{'params':>12}{'params (M)':>12}{'GMACs':>10}",
             "-" * 44]
    for p in parts:
        lines.append(f"{p.name:<10}{p.params:>12,}{p.params / 1e6:>12.3f}{p.macs / 1e9:>10.3f}")
    lines.append("MACs = multiply-adds (FLOPs / 2) of convolutions and matmuls; element-wise ops not counted.")
    return "\n".join(lines)


def parse_args(argv: Optional[List[str]] = None, prog: str = PROG) -> argparse.Namespace:
    parser = tool_parser(prog, __doc__.splitlines()[0])
    parser.add_argument("config")
    parser.add_argument("--input-size", nargs=2, type=int, metavar=("W", "H"))
    parser.add_argument("--fused", action="store_true", help="count the BN-fused model (BN biases added)")
    parser.add_argument("--override", "-o", nargs="*", default=[], metavar="KEY=VALUE")
    return parser.parse_args(argv)


def run(args: argparse.Namespace) -> int:
    cfg = load_config(config_path(args.config), args.override)
    model = build_model(cfg.model)
    if args.fused:
        model = fuse_model(model)
    size = args.input_size or list(cfg.data.input_size)
    print(format_table(measure(model, size), size, args.fused))
    return EXIT_OK


def main(argv: Optional[List[str]] = None, prog: str = PROG) -> int:
    return run_main(prog, parse_args, run, argv)

