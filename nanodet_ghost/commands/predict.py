"""Detect objects in images, folders, globs, videos or a camera, and save what was found.

    nanodet-ghost predict SOURCE --model MODEL [--config CONFIG] [--out DIR] [--score-thr 0.3]
        [--ann GT.json] [--max-frames N] [--device cpu] [-o KEY=VALUE ...]

SOURCE is an image file, a folder of images, a quoted glob ("shots/*.jpg"), a video file or a
camera index (0). MODEL is a checkpoint (.ckpt, needs --config) or an exported model (.onnx,
OpenVINO .xml, ncnn .param; needs nothing else). DIR (default outputs/predict) receives:

- the annotated images (same relative names) or an annotated mp4 per video / camera;
- predictions.json: COCO bbox results (`image_id`, `category_id`, `bbox` xywh, `score`);
- images.json: the `images` of a COCO json (`id`, `file_name`, `height`, `width`) for those ids;
- predictions.csv: one row per detection: file, class, score, x1, y1, x2, y2 (original pixels).

Image ids are 1, 2, ... in the order of the sorted file names (a video frame: its number + 1; it is
named `clip.mp4:FRAME`), and category ids are label + 1, unless --ann names a COCO json: then each image
gets the id of the json image with the same file_name (relative name, else base name; images it
does not list are left out of predictions.json) and each class the id of the json category with
its name, so `nanodet-ghost test --ann GT.json --results DIR/predictions.json` scores the run.
Only detections scoring at least --score-thr are drawn and saved; use a low one (0.05) to score.
"""
from __future__ import annotations

import argparse
import csv
import glob
import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple

import cv2
import numpy as np
from tqdm import tqdm

from nanodet_ghost.cli import (
    EXIT_OK,
    InputError,
    UsageError,
    run_main,
    tool_parser,
)
from nanodet_ghost.data.image_io import IMAGE_EXTENSIONS, ImageReadError, read_image
from nanodet_ghost.inference.visualize import draw_detections, make_palette

logger = logging.getLogger(__name__)
PROG = "tools/predict.py"
VIDEO_EXTENSIONS = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv")
SOURCE_KINDS = "an image, a folder, a glob, a video file or a camera id"


class PredictError(InputError):
    """An input that cannot be used (missing source or model, unreadable video): one line on
    stderr and the data exit code of `nanodet_ghost.cli`."""


def load_predictor(model: str, config: Optional[str] = None, overrides: Sequence[str] = (),
                   device: str = "cpu") -> Any:
    """A predictor for any model format the project exports (`.predict(img, score_thr)`,
    `.class_names`), chosen by `nanodet_ghost.inference.factory`: an exported model (.onnx, OpenVINO
    .xml, ncnn .param) needs nothing else, a checkpoint (.ckpt) the model of `config`."""
    if not os.path.isfile(model):
        raise PredictError(f"model not found: {model}")
    from nanodet_ghost.inference.factory import is_checkpoint
    from nanodet_ghost.inference.factory import load_predictor as load_model_file

    if is_checkpoint(model) and not config:
        raise UsageError(f"{model} is a checkpoint: give its config with --config")
    return load_model_file(model, config, overrides=list(overrides), device=device)


@dataclass
class Source:
    """What to read: `kind` is "images" (`files`, `names` relative for the outputs), "video"
    (`path`) or "camera" (`camera`)."""

    kind: str
    files: List[str] = field(default_factory=list)
    names: List[str] = field(default_factory=list)
    path: str = ""
    camera: int = 0


def _images_of(files: Sequence[str], base: str) -> Source:
    files = sorted(f for f in files if os.path.isfile(f) and f.lower().endswith(IMAGE_EXTENSIONS))
    return Source("images", files, [os.path.relpath(f, base) for f in files])


def resolve_source(source: str) -> Source:
    """Classify SOURCE (see the module doc); raises PredictError when it names nothing usable."""
    if source.isdigit():
        return Source("camera", camera=int(source))
    if glob.has_magic(source):
        matches = glob.glob(source, recursive=True)
        found = _images_of(matches, os.path.commonpath([os.path.dirname(os.path.abspath(m)) for m in matches])
                           if matches else ".")
        found.files = [os.path.abspath(f) for f in found.files]
        if not found.files:
            raise PredictError(f"no images ({', '.join(IMAGE_EXTENSIONS)}) match {source}")
        return found
    if os.path.isdir(source):
        found = _images_of([os.path.join(source, f) for f in os.listdir(source)], source)
        if not found.files:
            raise PredictError(f"no images ({', '.join(IMAGE_EXTENSIONS)}) in folder {source}")
        return found
    if os.path.isfile(source):
        if source.lower().endswith(VIDEO_EXTENSIONS):
            return Source("video", path=source)
        return Source("images", [source], [os.path.basename(source)])
    raise PredictError(f"source not found: {source} (expected {SOURCE_KINDS})")


class Ids:
    """Image and category ids of the COCO outputs (see the module doc)."""

    def __init__(self, class_names: Sequence[str], ann_file: Optional[str] = None) -> None:
        self.by_name: Optional[Dict[str, int]] = None
        self.category_ids = [k + 1 for k in range(len(class_names))]
        if ann_file is None:
            return
        from nanodet_ghost.evaluation.jsonio import load_coco_gt_file

        gt = load_coco_gt_file(ann_file)
        categories = {str(c.get("name")): int(c["id"]) for c in gt["categories"]}
        missing = [n for n in class_names if n not in categories]
        if missing:
            raise UsageError(f"{ann_file}: no category named {missing} (its categories: "
                               f"{sorted(categories)}); the model's classes are {list(class_names)}")
        self.category_ids = [categories[n] for n in class_names]
        self.by_name = {}
        for img in gt["images"]:
            self.by_name[str(img["file_name"])] = int(img["id"])
            self.by_name.setdefault(os.path.basename(str(img["file_name"])), int(img["id"]))

    def image_id(self, name: str, index: int) -> Optional[int]:
        """The id of the `index`-th image (0-based) or frame, named `name` (None: not in the
        --ann json)."""
        if self.by_name is None:
            return index + 1
        return self.by_name.get(name.replace(os.sep, "/"), self.by_name.get(os.path.basename(name)))


class Outputs:
    """Collects detections and writes predictions.json, images.json and predictions.csv."""

    def __init__(self, out_dir: Path, class_names: Sequence[str], ids: Ids) -> None:
        self.out_dir, self.class_names, self.ids = out_dir, list(class_names), ids
        self.results: List[Dict[str, Any]] = []
        self.images: List[Dict[str, Any]] = []
        self.rows: List[List[Any]] = []
        self.unlisted: List[str] = []

    def add(self, name: str, index: int, hw: Tuple[int, int], dets: Any) -> None:
        """Record the detections of image / frame number `index` (0-based), named `name`."""
        for box, score, label in zip(dets.boxes.tolist(), dets.scores.tolist(), dets.labels.tolist()):
            self.rows.append([name, self.class_names[label], f"{score:.5f}", *(f"{v:.2f}" for v in box)])
        image_id = self.ids.image_id(name, index)
        if image_id is None:
            self.unlisted.append(name)
            return
        self.images.append(dict(id=image_id, file_name=name, height=int(hw[0]), width=int(hw[1])))
        for (x1, y1, x2, y2), score, label in zip(dets.boxes.tolist(), dets.scores.tolist(), dets.labels.tolist()):
            self.results.append(dict(image_id=image_id, category_id=self.ids.category_ids[label],
                                     bbox=[x1, y1, x2 - x1, y2 - y1], score=float(score)))

    def write(self) -> None:
        self.out_dir.mkdir(parents=True, exist_ok=True)
        (self.out_dir / "predictions.json").write_text(json.dumps(self.results))
        (self.out_dir / "images.json").write_text(json.dumps(self.images, indent=1))
        with (self.out_dir / "predictions.csv").open("w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f)
            writer.writerow(["file", "class", "score", "x1", "y1", "x2", "y2"])
            writer.writerows(self.rows)
        if self.unlisted:
            logger.warning("%d images are not in the --ann json and are left out of predictions.json: %s",
                           len(self.unlisted), ", ".join(self.unlisted[:5]) + (" ..." if len(self.unlisted) > 5 else ""))


def run_images(source: Source, predictor: Any, args: argparse.Namespace, outputs: Outputs) -> int:
    """Predict, draw and save each image; unreadable files are skipped and counted."""
    palette = make_palette(len(predictor.class_names))
    skipped: List[str] = []
    for index, (path, name) in enumerate(tqdm(list(zip(source.files, source.names)), desc="predict",
                                              unit="img", disable=len(source.files) < 2)):
        out = args.out / name
        if out.resolve() == Path(path).resolve():
            raise PredictError(f"--out {args.out} would overwrite the input {path}")
        try:
            img = read_image(path)
        except ImageReadError as exc:
            logger.warning("skipped: %s", exc)
            skipped.append(name)
            continue
        dets = predictor.predict(img, score_thr=args.score_thr)
        outputs.add(name.replace(os.sep, "/"), index, img.shape[:2], dets)
        out.parent.mkdir(parents=True, exist_ok=True)
        if not cv2.imwrite(str(out), draw_detections(img, dets, palette)):
            raise PredictError(f"cannot write {out}")
    if skipped:
        logger.warning("%d unreadable images skipped: %s", len(skipped), ", ".join(skipped[:5]))
    return len(source.files) - len(skipped)


def _open_capture(source: Source) -> cv2.VideoCapture:
    cap = cv2.VideoCapture(source.path if source.kind == "video" else source.camera)
    if not cap.isOpened():
        cap.release()
        what = f"video {source.path}" if source.kind == "video" else f"camera {source.camera}"
        raise PredictError(f"cannot open {what}")
    return cap


def _frames(cap: cv2.VideoCapture, max_frames: int) -> Iterator[np.ndarray]:
    count = 0
    while max_frames <= 0 or count < max_frames:
        ok, frame = cap.read()
        if not ok:
            return
        count += 1
        yield frame


def run_stream(source: Source, predictor: Any, args: argparse.Namespace, outputs: Outputs) -> int:
    """Predict every frame of a video or camera into one annotated mp4; Ctrl-C ends a camera."""
    cap = _open_capture(source)
    stem = Path(source.path).name if source.kind == "video" else f"camera{source.camera}"
    out_path = args.out / (Path(stem).stem + ".mp4")
    if source.kind == "video" and out_path.resolve() == Path(source.path).resolve():
        raise PredictError(f"--out {args.out} would overwrite the input {source.path}")
    fps = cap.get(cv2.CAP_PROP_FPS) or 0.0
    total = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0) if source.kind == "video" else 0
    if args.max_frames > 0:
        total = min(total, args.max_frames) if total else args.max_frames
    palette = make_palette(len(predictor.class_names))
    writer: Optional[cv2.VideoWriter] = None
    frames = 0
    try:
        for frame in tqdm(_frames(cap, args.max_frames), desc="predict", unit="frame", total=total or None):
            dets = predictor.predict(frame, score_thr=args.score_thr)
            outputs.add(f"{stem}:{frames}", frames, frame.shape[:2], dets)
            drawn = draw_detections(frame, dets, palette)
            if writer is None:
                args.out.mkdir(parents=True, exist_ok=True)
                writer = cv2.VideoWriter(str(out_path), cv2.VideoWriter_fourcc(*"mp4v"),
                                         fps if 1.0 <= fps <= 240.0 else 25.0, drawn.shape[1::-1])
                if not writer.isOpened():
                    raise PredictError(f"cannot write video {out_path} (mp4v codec unavailable?)")
            writer.write(drawn)
            frames += 1
    except KeyboardInterrupt:
        logger.info("stopped after %d frames", frames)
    finally:
        cap.release()
        if writer is not None:
            writer.release()
    if frames == 0:
        raise PredictError(f"no frame could be read from {stem}")
    return frames


def parse_args(argv: Optional[List[str]] = None, prog: str = PROG) -> argparse.Namespace:
    parser = tool_parser(prog, __doc__.splitlines()[0], epilog="\n".join(__doc__.splitlines()[2:]))
    parser.add_argument("source", help=SOURCE_KINDS)
    parser.add_argument("--model", required=True,
                        help=".ckpt checkpoint (with --config), or an exported .onnx, .xml or .param")
    parser.add_argument("--config", help="config yaml (required for a .ckpt model)")
    parser.add_argument("--out", type=Path, default=Path("outputs") / "predict", help="output folder")
    parser.add_argument("--score-thr", type=float, default=0.3, help="minimum score kept (default 0.3)")
    parser.add_argument("--ann", help="COCO json whose image and category ids the outputs use")
    parser.add_argument("--max-frames", type=int, default=0, help="stop a video / camera after N frames")
    parser.add_argument("--device", default="cpu", help="torch device for a .ckpt model")
    parser.add_argument("-o", "--override", action="append", default=[], metavar="KEY=VALUE",
                        help="config override for a .ckpt model (repeatable)")
    return parser.parse_args(argv)


def run(args: argparse.Namespace) -> int:
    """Everything `main` does, raising on bad input."""
    source = resolve_source(args.source)  # before loading the model: a typo fails fast
    predictor = load_predictor(args.model, args.config, args.override, args.device)
    outputs = Outputs(args.out, predictor.class_names, Ids(predictor.class_names, args.ann))
    if source.kind == "images":
        count = run_images(source, predictor, args, outputs)
    else:
        count = run_stream(source, predictor, args, outputs)
    outputs.write()
    logger.info("%d %s, %d detections >= %.2f: annotated %s, predictions.json, images.json and "
                "predictions.csv in %s", count, "images" if source.kind == "images" else "frames",
                len(outputs.rows), args.score_thr, "images" if source.kind == "images" else "video", args.out)
    return EXIT_OK


def main(argv: Optional[List[str]] = None, prog: str = PROG) -> int:
    return run_main(prog, parse_args, run, argv)

