#!/usr/bin/env python
"""BCCD accuracy of Ultralytics YOLOv8n trained from scratch in ultralytics' own time budget, scored on
`test` with OUR COCO evaluator (the ground truth our model is scored against).

    python benchmarks/bench_yolo_bccd.py [--hours 0.5] [--imgsz 320] [--batch 16] [--seed 0] [key=value ...]

1. The config's train / val / test splits (default `config/bccd_ghost_320.yml`: BCCD's VOC lists) are
   read with OUR source reader (`build_source_for`), so zero-size boxes are skipped and out-of-image
   boxes clipped exactly as for our model, and written in YOLO format under `<work-dir>/data`
   (images symlinked, copied where links fail; `difficult` ignore regions have no YOLO equivalent
   and are left out of the labels) with a `data.yaml`.
2. `YOLO("yolov8n.yaml")` (random init) trains with `time=<hours>` (ultralytics stops and sizes its LR
   schedule by wall time; `--epochs` replaces the budget, for tests), best weights chosen on `val`.
   Offline: `YOLO_OFFLINE=1`, a temporary `YOLO_CONFIG_DIR` holding a local `Arial.ttf` (matplotlib's
   DejaVu Sans: `check_det_dataset` would otherwise try to download the font), `amp=False` (no AMP
   check), `plots=False`, and every socket connect / DNS lookup is refused and counted.
   Ultralytics sets torch to `min(8, cpu_count - 1)` threads on CPU; `--threads` (default: torch's count
   before ultralytics is imported, what our trainer uses) is put in its place.
3. `best.pt` predicts the `test` images (pixels from our reader) with `conf=0.001`, NMS `iou=0.7`
   (ultralytics' val default), `max_det=100`, letterboxed to `data.input_size` (imgsz=[H, W]; rect),
   and again at the training imgsz (square imgsz, rect letterbox); `CocoEvaluator` scores both.
   Ultralytics' own `val` on `test` (rect, its defaults) is recorded beside each for reference.

The table goes to docs/benchmarks.md (section `SECTION`, or `--doc`) unless `--no-write`; the figures to
`<work-dir>/bench.json`, which `--reuse` reads instead of training. Skips (exit 0) without the data or
ultralytics (`pip install -e .[bench]`).
"""
from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import logging
import os
import shlex
import shutil
import socket
import sys
import tempfile
import time
from importlib import metadata
from pathlib import Path
from typing import Any, Dict, Iterator, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from nanodet_ghost.config import load_config
from nanodet_ghost.data.base import DetectionSource
from nanodet_ghost.data.image_io import ImageReadError
from nanodet_ghost.data.loader import SPLITS, build_source_for
from nanodet_ghost.evaluation.coco import CocoEvalResult, CocoEvaluator
from nanodet_ghost.paths import CONFIG_DIR, DATA_ENV_VAR

sys.path.insert(0, str(Path(__file__).resolve().parent))
from report import REPO_ROOT, machine_description, today, write_section  # noqa: E402

SECTION = "BCCD accuracy, YOLOv8n from scratch (ultralytics time budget)"
logger = logging.getLogger("bench_yolo_bccd")


# ----------------------------------------------------------------------------- YOLO-format export
def yolo_label_lines(boxes: np.ndarray, labels: np.ndarray, width: int, height: int) -> List[str]:
    """`class cx cy w h` lines, normalised by the image size, of xyxy pixel boxes."""
    lines = []
    for (x1, y1, x2, y2), label in zip(np.asarray(boxes, np.float64).reshape(-1, 4), labels):
        cx, cy = (x1 + x2) / 2 / width, (y1 + y2) / 2 / height
        lines.append(f"{int(label)} {cx:.6f} {cy:.6f} {(x2 - x1) / width:.6f} {(y2 - y1) / height:.6f}")
    return lines


def _link_or_copy(src: str, dst: Path) -> None:
    try:
        os.symlink(os.path.abspath(src), dst)
    except OSError:
        shutil.copy2(src, dst)


def write_yolo_dataset(sources: Mapping[str, DetectionSource], out_dir: Path) -> Path:
    """`out_dir/{images,labels}/<split>/` and `out_dir/data.yaml` from our sources; returns the yaml.

    Every kept image gets a label file (empty for an image without boxes). Earlier `images/`,
    `labels/` and `data.yaml` of `out_dir` are replaced; nothing else there is touched.
    """
    import yaml

    out_dir = Path(out_dir).resolve()
    for sub in ("images", "labels"):
        shutil.rmtree(out_dir / sub, ignore_errors=True)
    class_names: List[str] = []
    for split, source in sources.items():
        class_names = class_names or list(source.class_names)
        img_dir, lbl_dir = out_dir / "images" / split, out_dir / "labels" / split
        img_dir.mkdir(parents=True)
        lbl_dir.mkdir(parents=True)
        dropped = 0
        for i in range(len(source)):
            ann = source.get_annotation(i)
            name = str(ann["file_name"]).replace("\\", "/").replace("/", "__")
            _link_or_copy(source.image_path(i), img_dir / name)
            lines = yolo_label_lines(ann["boxes"], ann["labels"], ann["width"], ann["height"])
            (lbl_dir / (os.path.splitext(name)[0] + ".txt")).write_text("".join(x + "\n" for x in lines))
            dropped += len(ann["ignore"])
        logger.info("%s: %d images, %d boxes written to %s%s", split, len(source), source.num_boxes, img_dir,
                    f" ({dropped} ignore regions left out)" if dropped else "")
    data = {"path": str(out_dir), **{s: f"images/{s}" for s in sources},
            "names": {i: n for i, n in enumerate(class_names)}}
    yaml_path = out_dir / "data.yaml"
    yaml_path.write_text(yaml.safe_dump(data, sort_keys=False))
    return yaml_path


def load_sources(cfg: Any) -> Dict[str, DetectionSource]:
    """OUR source of each of the config's train / val / test splits."""
    names = list(cfg.data.class_names)
    return {s: build_source_for(cfg.data[s], names, s) for s in SPLITS}


# ----------------------------------------------------------------------------- ultralytics, offline
@contextlib.contextmanager
def no_network(attempts: List[str]) -> Iterator[None]:
    """Refuse (and record in `attempts`) every DNS lookup and non-local socket connect."""
    real_connect, real_getaddrinfo = socket.socket.connect, socket.getaddrinfo

    def connect(sock: socket.socket, address: Any) -> Any:
        if sock.family == getattr(socket, "AF_UNIX", None):
            return real_connect(sock, address)
        attempts.append(f"connect {address}")
        logger.warning("network access refused: connect %s", address)
        raise OSError(f"bench_yolo_bccd: network disabled (connect {address})")

    def getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        attempts.append(f"getaddrinfo {host}")
        logger.warning("network access refused: DNS lookup of %s", host)
        raise socket.gaierror(f"bench_yolo_bccd: network disabled (lookup of {host})")

    socket.socket.connect, socket.getaddrinfo = connect, getaddrinfo  # type: ignore[method-assign]
    try:
        yield
    finally:
        socket.socket.connect, socket.getaddrinfo = real_connect, real_getaddrinfo  # type: ignore[method-assign]


def import_ultralytics(config_dir: Path, threads: int) -> Any:
    """ultralytics, imported offline with its settings and fonts in `config_dir`, integrations off."""
    import matplotlib

    os.environ["YOLO_CONFIG_DIR"] = str(config_dir)
    os.environ["YOLO_OFFLINE"] = "1"
    os.environ.setdefault("YOLO_VERBOSE", "False")
    os.environ.setdefault("OMP_NUM_THREADS", str(threads))  # ultralytics would set 1
    font_dir = config_dir / "Ultralytics"
    font_dir.mkdir(parents=True, exist_ok=True)
    dejavu = Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans.ttf"
    for name in ("Arial.ttf", "Arial.Unicode.ttf"):
        if not (font_dir / name).exists():
            _link_or_copy(str(dejavu), font_dir / name)
    import ultralytics
    from ultralytics.utils import SETTINGS
    from ultralytics.utils import torch_utils

    SETTINGS.update({k: False for k in ("sync", "clearml", "comet", "dvc", "mlflow", "raytune", "tensorboard",
                                        "wandb") if k in SETTINGS})
    torch_utils.NUM_THREADS = threads  # select_device() sets torch to this many threads on CPU
    return ultralytics


def train_yolo(data_yaml: Path, work_dir: Path, args: argparse.Namespace) -> Tuple[Dict[str, Any], Path]:
    """Train YOLOv8n from scratch; (figures, best weights)."""
    import torch
    from ultralytics import YOLO

    train_args: Dict[str, Any] = dict(
        data=str(data_yaml), imgsz=args.imgsz, batch=args.batch, device="cpu", workers=0, seed=args.seed,
        deterministic=True, pretrained=False, amp=False, plots=False, val=True, rect=False,
        project=str(work_dir), name="train", exist_ok=True, verbose=False)
    if args.epochs:
        train_args.update(epochs=args.epochs, time=None)
    else:
        train_args.update(time=args.hours)
    model = YOLO("yolov8n.yaml")
    seen: Dict[str, Any] = {}

    def on_train_start(trainer: Any) -> None:
        seen["threads"] = torch.get_num_threads()
        logger.info("training YOLOv8n: %d train images, %d batches per epoch, %d torch threads",
                    len(trainer.train_loader.dataset), len(trainer.train_loader), seen["threads"])

    def on_train_epoch_end(trainer: Any) -> None:
        seen["epoch"] = trainer.epoch

    def on_fit_epoch_end(trainer: Any) -> None:  # also called after the final validation of best.pt
        what = (f"epoch {trainer.epoch + 1} (of about {trainer.epochs})" if trainer.epoch == seen.get("epoch")
                else "final validation of best.pt")
        logger.info("%s: val mAP50-95 %.4f, %.1f min", what,
                    float(trainer.metrics.get("metrics/mAP50-95(B)", float("nan"))), (time.time() - start) / 60)

    model.add_callback("on_train_start", on_train_start)
    model.add_callback("on_train_epoch_end", on_train_epoch_end)
    model.add_callback("on_fit_epoch_end", on_fit_epoch_end)
    logger.info("ultralytics train args: %s", train_args)
    start = time.time()
    model.train(**train_args)
    wall = time.time() - start
    trainer = model.trainer
    best = Path(trainer.best) if Path(trainer.best).is_file() else Path(trainer.last)
    figures = {"epochs": int(trainer.epoch) + 1, "wall_min": wall / 60, "train_threads": seen.get("threads"),
               "train_args": train_args, "best": str(best)}
    return figures, best


def predict_split(weights: Path, source: DetectionSource, imgsz: Any, conf: float, iou: float, max_det: int,
                  batch: int = 8) -> Tuple[Dict[int, Dict[str, np.ndarray]], Dict[int, str]]:
    """Ultralytics predictions on our source's images (BGR pixels from our reader), keyed by our image
    ids, in original pixels; and the images that could not be read."""
    from ultralytics import YOLO

    model = YOLO(str(weights))
    predictions: Dict[int, Dict[str, np.ndarray]] = {}
    unreadable: Dict[int, str] = {}
    for first in range(0, len(source), batch):
        ids, images = [], []
        for i in range(first, min(first + batch, len(source))):
            ann = source.get_annotation(i)
            try:
                images.append(source.load_image(i))
                ids.append(int(ann["image_id"]))
            except ImageReadError as exc:
                unreadable[int(ann["image_id"])] = f"{ann['file_name']}: {exc.problem}"
        if not images:
            continue
        results = model.predict(images, imgsz=imgsz, conf=conf, iou=iou, max_det=max_det, device="cpu",
                                rect=True, batch=len(images), verbose=False, save=False)
        for image_id, r in zip(ids, results):
            boxes = r.boxes
            predictions[image_id] = dict(boxes=boxes.xyxy.cpu().numpy(), scores=boxes.conf.cpu().numpy(),
                                         labels=boxes.cls.cpu().numpy().astype(np.int64))
    return predictions, unreadable


def score(source: DetectionSource, predictions: Mapping[int, Any], unreadable: Mapping[int, str]) -> CocoEvalResult:
    """OUR COCO evaluation (pycocotools via `CocoEvaluator`) of predictions on `source`."""
    evaluator = CocoEvaluator(source.to_coco(), source.category_ids, source.class_names)
    return evaluator.evaluate(predictions, unreadable=dict(unreadable))


def ultralytics_val(weights: Path, data_yaml: Path, work_dir: Path, imgsz: int, iou: float) -> Dict[str, float]:
    """Ultralytics' own `val` on the `test` split (rect batches, conf 0.001, its max_det 300)."""
    from ultralytics import YOLO

    metrics = YOLO(str(weights)).val(
        data=str(data_yaml), split="test", imgsz=imgsz, batch=16, conf=0.001, iou=iou, device="cpu", workers=0,
        rect=True, plots=False, verbose=False, project=str(work_dir), name=f"val_test_{imgsz}", exist_ok=True)
    return {"map": float(metrics.box.map), "map50": float(metrics.box.map50)}


def evaluate(best: Path, data_yaml: Path, work_dir: Path, test: DetectionSource, eval_wh: Sequence[int],
             args: argparse.Namespace) -> List[Dict[str, Any]]:
    """One row per evaluation size: data.input_size (W x H), then the training imgsz."""
    rows = []
    for label, imgsz, val_imgsz in ((f"{eval_wh[0]}x{eval_wh[1]}", [int(eval_wh[1]), int(eval_wh[0])],
                                     int(max(eval_wh))),
                                    (f"{args.imgsz} (train imgsz)", int(args.imgsz), int(args.imgsz))):
        predictions, unreadable = predict_split(best, test, imgsz, args.conf, args.iou, args.max_det)
        result = score(test, predictions, unreadable)
        ours = ultralytics_val(best, data_yaml, work_dir, val_imgsz, args.iou)
        logger.info("eval %s: our test mAP %.4f, ultralytics val mAP50-95 %.4f", label, result.map, ours["map"])
        rows.append({"eval_size": label, "predict_imgsz": imgsz, "test_stats": list(result.stats),
                     "test_ap": dict(result.per_class_ap), "detections": result.num_detections,
                     "ultra_val_imgsz": val_imgsz, "ultra_map": ours["map"], "ultra_map50": ours["map50"]})
    return rows


# ----------------------------------------------------------------------------- report
def _f(x: Optional[float]) -> str:
    return "-" if x is None or x != x else f"{x:.3f}"


def table(figures: Mapping[str, Any]) -> str:
    """Markdown table: one row per evaluation size."""
    classes = list(figures["class_names"])
    head = ("| eval size (W x H) | epochs | wall (min) | test mAP@[.5:.95] (ours) | AP50 | "
            + " | ".join(classes) + " | ultralytics val mAP50-95 (imgsz) |\n|" + "---|" * (6 + len(classes)) + "\n")
    rows = [f"| {r['eval_size']} | {figures['epochs']} | {figures['wall_min']:.1f} | **{_f(r['test_stats'][0])}** | "
            f"{_f(r['test_stats'][1])} | " + " | ".join(_f(r["test_ap"].get(c)) for c in classes)
            + f" | {_f(r['ultra_map'])} ({r['ultra_val_imgsz']}) |\n" for r in figures["rows"]]
    return head + "".join(rows)


def doc_body(figures: Mapping[str, Any]) -> str:
    v = figures["versions"]
    budget = (f"`time={figures['train_args']['time']}` h" if figures["train_args"].get("time")
              else f"`epochs={figures['train_args']['epochs']}`")
    return (
        f"Measured {figures['date']} on {figures['machine']} by `{figures['command']}` (ultralytics "
        f"{v['ultralytics']}, torch {v['torch']}, pycocotools {v['pycocotools']}). YOLOv8n from scratch "
        f"(`YOLO('yolov8n.yaml')`, no pretrained weights, nothing downloaded) on BCCD `train` in ultralytics' own "
        f"loop with {budget}, {figures['train_threads']} torch threads (ultralytics alone would take cpu_count - 1); "
        "ultralytics picks `best.pt` on `val`. "
        "Its labels were written from our VOC reader (same boxes as our model: zero-size skipped, out-of-image "
        "clipped). `best.pt` then predicted `test` (conf 0.001, NMS IoU "
        f"{figures['iou']}, max_det {figures['max_det']}, rect letterbox; `imgsz=[H, W]` of our eval size, then the "
        "square training imgsz), scored by our `CocoEvaluator` on the ground truth our model is scored against. "
        "The last column is ultralytics' own `val` on `test` (its matching and 101-point interpolation, rect "
        "batches padded by half a stride, max_det 300) for reference. Wall time includes ultralytics' per-epoch "
        "validation and its final validation of `best.pt`.\n\n"
        + table(figures)
        + f"\nultralytics train args: `{json.dumps(figures['train_args']).replace(str(REPO_ROOT) + os.sep, '')}`\n"
    )


def _versions() -> Dict[str, str]:
    out = {}
    for pkg in ("ultralytics", "torch", "pycocotools"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            out[pkg] = "absent"
    return out


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default=str(CONFIG_DIR / "bccd_ghost_320.yml"),
                        help="splits, class names and data.input_size (the eval size) come from it")
    parser.add_argument("--hours", type=float, default=0.5, help="ultralytics' time budget (train arg time=)")
    parser.add_argument("--epochs", type=int, default=0, help="train this many epochs instead of a time budget")
    parser.add_argument("--imgsz", type=int, default=320)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (default: torch's own count)")
    parser.add_argument("--conf", type=float, default=0.001)
    parser.add_argument("--iou", type=float, default=0.7, help="NMS IoU of the predictions we score")
    parser.add_argument("--max-det", type=int, default=100)
    parser.add_argument("--work-dir", default=str(REPO_ROOT / "work_dirs" / "yolo_bccd"))
    parser.add_argument("--doc", default=None, help="markdown file to update (default docs/benchmarks.md)")
    parser.add_argument("--reuse", action="store_true", help="report <work-dir>/bench.json instead of training")
    parser.add_argument("--no-write", action="store_true", help="do not update the docs")
    parser.add_argument("overrides", nargs="*", help="config overrides, key=value")
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    work_dir = Path(args.work_dir).resolve()
    record = work_dir / "bench.json"

    if args.reuse and record.is_file():
        logger.info("figures from %s", record)
        figures = json.loads(record.read_text())
    else:
        cfg = load_config(args.config, args.overrides)
        missing = [f"data.{s}" if cfg.data.get(s) is None else str(cfg.data[s].root) for s in SPLITS
                   if cfg.data.get(s) is None or not Path(cfg.data[s].root).exists()]
        if missing:
            print(f"skipped: dataset not found at {missing} (set {DATA_ENV_VAR} to the shared data folder)")
            return 0
        if importlib.util.find_spec("ultralytics") is None:
            print("skipped: ultralytics is not installed (pip install -e .[bench])")
            return 0
        import torch

        threads = args.threads or torch.get_num_threads()
        sources = load_sources(cfg)
        data_yaml = write_yolo_dataset(sources, work_dir / "data")
        attempts: List[str] = []
        with tempfile.TemporaryDirectory(prefix="ultralytics_cfg_") as config_dir, no_network(attempts):
            ultralytics = import_ultralytics(Path(config_dir), threads)
            figures, best = train_yolo(data_yaml, work_dir, args)
            rows = evaluate(best, data_yaml, work_dir, sources["test"], list(cfg.data.input_size), args)
        torch.set_num_threads(threads)
        figures.update(
            rows=rows, class_names=list(sources["test"].class_names), iou=args.iou, conf=args.conf,
            max_det=args.max_det, network_attempts=attempts, date=today(), machine=machine_description(),
            versions={**_versions(), "ultralytics": ultralytics.__version__},
            command="python benchmarks/bench_yolo_bccd.py" + (" " + shlex.join(argv) if argv else ""))
        work_dir.mkdir(parents=True, exist_ok=True)
        record.write_text(json.dumps(figures, indent=2))
        logger.info("figures written to %s", record)
    print(table(figures))
    if not args.no_write:
        kwargs = {"path": Path(args.doc)} if args.doc else {}
        write_section(SECTION, doc_body(figures), **kwargs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
