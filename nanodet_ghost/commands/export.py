"""Export a trained checkpoint for deployment (EMA weights, BatchNorm fused, metadata in every format).

    nanodet-ghost export CONFIG CKPT --format {onnx,onnx-int8,openvino,openvino-int8,ncnn,mnn,mnn-int8,safetensors}
                           --out PATH [--head {raw,boxes,nms}] [--input-size W H]
                           [--calib-split train --calib-images 200]
                           [--dynamic-batch] [--check-map [SPLIT]] [-o KEY=VALUE ...]

| format | --out | runtime (pip extra) |
|---|---|---|
| onnx | model.onnx | ONNX Runtime (export) |
| onnx-int8 | model.onnx | ONNX Runtime, INT8 QDQ (export) |
| openvino | model.xml (+ .bin) | OpenVINO (openvino) |
| openvino-int8 | model.xml (+ .bin) | OpenVINO, INT8 by NNCF (openvino) |
| ncnn | model.param (+ .bin, .json sidecar) | ncnn, converted by pnnx (ncnn) |
| mnn | model.mnn (+ .mnn.json sidecar) | MNN, converted by MNN's converter (mnn) |
| mnn-int8 | model.mnn (+ .mnn.json sidecar) | MNN, INT8 by MNN's offline quantizer (mnn) |
| safetensors | model.safetensors (weights + config, no pickle) | PyTorch: `load_safetensors_detector(PATH)` |

--head chooses what the graph ends with: raw (default; scores + distribution logits), boxes
(decoded xyxy boxes in input pixels + scores) or nms (detections [B, max_det, 6] = x1, y1, x2,
y2, score, class, and num_detections [B]; thresholds from model.postprocess, fixed in the graph,
static batch). ncnn has no NMS layer: it takes raw or boxes.

Every format carries the class names, input size, BGR mean/std, letterbox mode, strides, reg_max
centre offset and head, so `ExportedPredictor(PATH)`, `nanodet-ghost test CONFIG PATH` and `nanodet-ghost demo`
run it with no guessing. INT8 formats calibrate on --calib-images images of the --calib-split
split through the validation preprocessing. fp32 formats are checked against PyTorch on a random
input after export; `--check-map` also compares COCO mAP with the checkpoint on SPLIT (default val)
and fails (exit code 1) beyond 0.002 (fp32) or 0.010 (INT8).
"""
from __future__ import annotations

import argparse
import logging
from typing import List, Optional

from nanodet_ghost.cli import EXIT_FAILED, EXIT_OK, UsageError, config_path, run_main, tool_parser
from nanodet_ghost.export.formats import FORMATS, INT8_FORMATS, MAP_TOLERANCE
from nanodet_ghost.export.heads import HEADS

PROG = "tools/export.py"
RAW_TOLERANCE = 1e-4  # relative to the largest output: random inputs drive logits into the hundreds
logger = logging.getLogger(__name__)


def parse_args(argv: Optional[List[str]] = None, prog: str = PROG) -> argparse.Namespace:
    parser = tool_parser(prog, __doc__.splitlines()[0])
    parser.add_argument("config", help="config yaml used for training")
    parser.add_argument("checkpoint", help="Lightning checkpoint (.ckpt; EMA weights preferred)")
    parser.add_argument("--format", required=True, choices=list(FORMATS), help="deployment format")
    parser.add_argument("--out", required=True, help="the file to write (.onnx, .xml, .param or .mnn, see the table)")
    parser.add_argument("--head", default="raw", choices=list(HEADS),
                        help="what the graph ends with: raw (default), boxes or nms (see above)")
    parser.add_argument("--input-size", nargs=2, type=int, metavar=("W", "H"),
                        help="network input size (default: data.input_size of the config)")
    parser.add_argument("--calib-split", default="train", choices=("train", "val", "test"),
                        help="INT8 calibration split (default train)")
    parser.add_argument("--calib-images", type=int, default=200, help="INT8 calibration images (default 200)")
    parser.add_argument("--dynamic-batch", action="store_true", help="symbolic batch dimension (onnx only)")
    parser.add_argument("--check-map", nargs="?", const="val", choices=("val", "test"), metavar="SPLIT",
                        help="compare COCO mAP of the export and the checkpoint on SPLIT (default val)")
    parser.add_argument("--override", "-o", nargs="*", default=[], metavar="KEY=VALUE", help="config overrides")
    args = parser.parse_args(argv)
    if args.calib_images <= 0:
        parser.error(f"--calib-images must be positive, got {args.calib_images}")
    if args.input_size and min(args.input_size) <= 0:
        parser.error(f"--input-size must be positive, got {args.input_size}")
    return args


def check_outputs(model, cfg, path: str, size: List[int], head: str) -> None:
    """Log the largest difference to PyTorch on one random input; a `ValueError` (exit code 1)
    beyond the tolerance. Not for the nms head: random inputs give near-tied scores whose NMS
    order flips with the last bit (--check-map compares it on photos)."""
    import numpy as np

    from nanodet_ghost.export.parity import output_difference

    if head == "nms":
        logger.info("%s: the nms head is not compared on a random input (use --check-map)", path)
        return
    batch = np.random.default_rng(0).standard_normal((1, 3, size[1], size[0])).astype(np.float32)
    diff, scale = output_difference(model, path, batch, cfg)
    if diff > RAW_TOLERANCE * max(1.0, scale):
        raise ValueError(f"{path}: raw output differs from PyTorch by {diff:.3g} (outputs up to {scale:.3g})")
    logger.info("%s vs PyTorch on a random input: max abs diff %.3g (outputs up to %.3g)", path, diff, scale)


def run(args: argparse.Namespace) -> int:
    from nanodet_ghost.config import load_config
    from nanodet_ghost.export.formats import check_format, check_head, export_model
    from nanodet_ghost.model import load_detector

    try:
        check_format(args.format, args.out)
        check_head(args.format, args.head)
        if args.head == "nms" and args.dynamic_batch:
            raise ValueError("--head nms has a static batch: drop --dynamic-batch (or use --head raw or boxes)")
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    if args.format == "safetensors" and args.check_map:
        raise UsageError("--check-map compares another runtime with PyTorch; a safetensors export holds the "
                         "checkpoint's weights unchanged (export_safetensors reads them back and checks them)")
    cfg = load_config(config_path(args.config), args.override)
    model = load_detector(cfg, args.checkpoint, prefer_ema=True)
    size = [int(v) for v in (args.input_size or cfg.data.input_size)]
    path = export_model(model, cfg, args.format, args.out, input_size=size, calib_split=args.calib_split,
                        calib_images=args.calib_images, dynamic_batch=args.dynamic_batch, head=args.head)
    if args.format not in INT8_FORMATS and args.format not in ("onnx", "safetensors"):  # these check themselves
        check_outputs(model, cfg, path, size, args.head)
    print(f"wrote {path}")
    if args.check_map:
        from nanodet_ghost.export.parity import compare_onnx_with_pytorch

        if size != [int(v) for v in cfg.data.input_size]:
            cfg = load_config(args.config, list(args.override) + [f"data.input_size=[{size[0]},{size[1]}]"])
        result = compare_onnx_with_pytorch(cfg, args.checkpoint, path, split=args.check_map,
                                           tolerance=MAP_TOLERANCE[args.format])
        print(result.summary())
        return EXIT_OK if result.ok else EXIT_FAILED
    return EXIT_OK


def main(argv: Optional[List[str]] = None, prog: str = PROG) -> int:
    return run_main(prog, parse_args, run, argv)

