"""Detection demo on images, a video file or a webcam.

    nanodet-ghost demo image  --config C --model M --path IMG_OR_FOLDER [--save-result] [--no-show]
    nanodet-ghost demo video  --config C --model M --path VIDEO.mp4     [--save-result] [--no-show]
    nanodet-ghost demo webcam --config C --model M [--camid 0]          [--save-result] [--no-show]

M is a checkpoint (.ckpt, run with PyTorch; needs --config) or an exported model: .onnx (ONNX
Runtime, fp32 or INT8), .xml (OpenVINO) or .param (ncnn), from `nanodet-ghost export`; the config is then
optional, everything is in the model's metadata. Results are drawn
with class names and scores; videos show the FPS. Without a display (no DISPLAY / WAYLAND_DISPLAY
on Linux, or when `cv2.imshow` fails) the demo says so and saves the results instead. Annotated
images keep their file names, videos are written as mp4 (mp4v) in --out-dir. `q` or Esc quits.
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from pathlib import Path
from typing import Any, List, Optional

import cv2

from nanodet_ghost.cli import InputError, config_path, run_main, tool_parser
from nanodet_ghost.data.image_io import IMAGE_EXTENSIONS, ImageReadError, read_image
from nanodet_ghost.inference.factory import is_checkpoint, load_predictor
from nanodet_ghost.inference.visualize import draw_detections, draw_fps, make_palette

logger = logging.getLogger(__name__)
PROG = "demo/demo.py"
WINDOW = "nanodet_ghost"
QUIT_KEYS = (ord("q"), ord("Q"), 27)


class DemoError(InputError):
    """A user-facing problem (missing file, camera not available): one line, exit code 3."""


def parse_args(argv: Optional[List[str]] = None, prog: str = PROG) -> argparse.Namespace:
    parser = tool_parser(prog, __doc__.splitlines()[0])
    parser.add_argument("mode", choices=("image", "video", "webcam"))
    parser.add_argument("--config", help="config yaml (required for a .ckpt model)")
    parser.add_argument("--model", required=True,
                        help=".ckpt checkpoint, or an exported .onnx, OpenVINO .xml or ncnn .param model")
    parser.add_argument("--path", help="image file or folder (image), video file (video)")
    parser.add_argument("--camid", type=int, default=0, help="camera index (webcam)")
    parser.add_argument("--save-result", action="store_true", help="save the annotated results")
    parser.add_argument("--no-show", action="store_true", help="do not open a window")
    parser.add_argument("--score-thr", type=float, default=0.35, help="minimum score drawn (default 0.35)")
    parser.add_argument("--out-dir", default="outputs/demo", help="where results are saved")
    parser.add_argument("--max-frames", type=int, default=0, help="stop after N frames (0: all)")
    parser.add_argument("--device", default="cpu", help="torch device for a .ckpt model")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads for inference")
    parser.add_argument("--override", "-o", nargs="*", default=[], metavar="KEY=VALUE",
                        help="config overrides (e.g. data.input_size=[416,416])")
    args = parser.parse_args(argv)
    if args.mode in ("image", "video") and not args.path:
        parser.error(f"{args.mode} mode needs --path")
    if is_checkpoint(args.model) and not args.config:
        parser.error("a checkpoint model needs --config")
    return args


def build_predictor(args: argparse.Namespace) -> Any:
    """An exported model (.onnx, OpenVINO .xml, ncnn .param) runs with its runtime and needs no
    config; a checkpoint runs with `Predictor.from_checkpoint` (fused for speed)."""
    if not os.path.isfile(args.model):
        raise DemoError(f"model not found: {args.model}")
    config = config_path(args.config) if is_checkpoint(args.model) else None
    return load_predictor(args.model, config, overrides=args.override, device=args.device, num_threads=args.threads)


def display_available() -> bool:
    """False on Linux without DISPLAY / WAYLAND_DISPLAY (imshow would abort the process)."""
    if sys.platform.startswith("linux"):
        return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))
    return True


class Viewer:
    """Shows frames when possible; remembers when showing failed so the demo saves instead."""

    def __init__(self, want_show: bool) -> None:
        self.enabled = want_show and display_available()
        if want_show and not self.enabled:
            logger.warning("no display found (DISPLAY / WAYLAND_DISPLAY unset): results are saved to files "
                           "instead of shown")

    def show(self, img: Any, wait_ms: int) -> bool:
        """Shows `img`; returns False when the user asked to quit (q / Esc)."""
        if not self.enabled:
            return True
        try:
            cv2.imshow(WINDOW, img)
            key = cv2.waitKey(wait_ms) & 0xFF
        except cv2.error as exc:
            logger.warning("cannot show images (%s): results are saved to files instead",
                           str(exc).strip().splitlines()[-1])
            self.enabled = False
            return True
        return key not in QUIT_KEYS

    def close(self) -> None:
        if self.enabled:
            try:
                cv2.destroyAllWindows()
            except cv2.error:
                pass


def list_images(path: str) -> List[str]:
    """The image file itself, or the images of a folder (sorted)."""
    if os.path.isdir(path):
        files = sorted(os.path.join(path, f) for f in os.listdir(path) if f.lower().endswith(IMAGE_EXTENSIONS))
        if not files:
            raise DemoError(f"no images ({', '.join(IMAGE_EXTENSIONS)}) in folder {path}")
        return files
    if not os.path.isfile(path):
        raise DemoError(f"image not found: {path}")
    return [path]


def run_images(args: argparse.Namespace, files: List[str], predictor: Any, viewer: Viewer, palette: list) -> int:
    """Predict, draw, save (with --save-result or without a display) and show each image file."""
    save = args.save_result or not viewer.enabled
    if save:
        os.makedirs(args.out_dir, exist_ok=True)
    for path in files:
        try:
            img = read_image(path)
        except ImageReadError as exc:
            logger.warning("skipped: %s", exc)
            continue
        start = time.perf_counter()
        dets = predictor.predict(img, score_thr=args.score_thr)
        logger.info("%s: %d detections in %.1f ms", os.path.basename(path), len(dets),
                    (time.perf_counter() - start) * 1000)
        drawn = draw_detections(img, dets, palette)
        if save:
            out = os.path.join(args.out_dir, os.path.basename(path))
            if os.path.abspath(out) == os.path.abspath(path):
                raise DemoError(f"--out-dir {args.out_dir} would overwrite the input {path}")
            if not cv2.imwrite(out, drawn):
                raise DemoError(f"cannot write {out}")
            logger.info("saved %s", out)
        if not viewer.show(drawn, 0):
            break
    return 0


def open_capture(args: argparse.Namespace) -> cv2.VideoCapture:
    """The video file or camera; raises `DemoError` when it cannot be opened or read."""
    if args.mode == "video":
        if not os.path.isfile(args.path):
            raise DemoError(f"video not found: {args.path}")
        cap = cv2.VideoCapture(args.path)
        if not cap.isOpened():
            raise DemoError(f"cannot open video {args.path}")
        return cap
    previous = cv2.utils.logging.getLogLevel()
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)  # OpenCV's own multi-line noise
    try:
        cap = cv2.VideoCapture(args.camid)
        opened = cap.isOpened() and cap.read()[0]
    finally:
        cv2.utils.logging.setLogLevel(previous)
    if not opened:
        cap.release()
        raise DemoError(f"cannot open camera {args.camid} (no such device, or it is busy)")
    return cap


def run_stream(args: argparse.Namespace, cap: cv2.VideoCapture, predictor: Any, viewer: Viewer,
               palette: list) -> int:
    """Frame by frame: predict, draw with the FPS, write to mp4 (when saving) and show."""
    save = args.save_result or not viewer.enabled
    writer: Optional[cv2.VideoWriter] = None
    out_path = os.path.join(args.out_dir, (Path(args.path).stem if args.mode == "video" else f"camera{args.camid}")
                            + ".mp4")
    fps_in = cap.get(cv2.CAP_PROP_FPS) or 0.0
    fps_in = fps_in if 1.0 <= fps_in <= 240.0 else 25.0
    frames, smoothed, first = 0, 0.0, True
    try:
        while args.max_frames <= 0 or frames < args.max_frames:
            ok, frame = cap.read()
            if not ok:
                break
            start = time.perf_counter()
            dets = predictor.predict(frame, score_thr=args.score_thr)
            elapsed = time.perf_counter() - start
            smoothed = 1.0 / elapsed if first else 0.9 * smoothed + 0.1 / max(elapsed, 1e-9)
            first = False
            drawn = draw_fps(draw_detections(frame, dets, palette), smoothed)
            if save:
                if writer is None:
                    os.makedirs(args.out_dir, exist_ok=True)
                    h, w = drawn.shape[:2]
                    writer = cv2.VideoWriter(out_path, cv2.VideoWriter_fourcc(*"mp4v"), fps_in, (w, h))
                    if not writer.isOpened():
                        raise DemoError(f"cannot write video {out_path} (mp4v codec unavailable?)")
                writer.write(drawn)
            frames += 1
            if not viewer.show(drawn, 1):
                break
    finally:
        cap.release()
        if writer is not None:
            writer.release()
    logger.info("%d frames, %.1f FPS (inference, smoothed)", frames, smoothed)
    if writer is not None:
        logger.info("saved %s", out_path)
    return 0


def run(args: argparse.Namespace) -> int:
    viewer: Optional[Viewer] = None
    try:
        predictor = build_predictor(args)
        palette = make_palette(max(len(predictor.class_names), 1))
        if args.mode == "image":
            files = list_images(args.path)
            viewer = Viewer(not args.no_show)
            return run_images(args, files, predictor, viewer, palette)
        cap = open_capture(args)  # before the viewer: a missing camera is the only message
        viewer = Viewer(not args.no_show)
        return run_stream(args, cap, predictor, viewer, palette)
    finally:
        if viewer is not None:
            viewer.close()


def main(argv: Optional[List[str]] = None, prog: str = PROG) -> int:
    return run_main(prog, parse_args, run, argv)

