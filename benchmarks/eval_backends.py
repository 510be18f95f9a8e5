"""Time the COCO evaluation backends (pycocotools, faster_coco_eval) on generated COCO-like data.

    python benchmarks/eval_backends.py [--images 5000] [--dets 100] [--seed 0]
                                       [--checkpoint CONFIG CKPT SPLIT ...] [--write]

Generates a ground truth of `--images` 640x480 images over 80 categories (0-15 boxes each, sizes
from small to large, a few crowd regions, some images without boxes) and `--dets` detections per
image (jittered copies of the boxes, wrong classes, false positives; some images without any),
scores them with each installed backend through `CocoEvaluator.evaluate_results` and logs the
largest difference of the 12 stats and of the per-class APs from pycocotools' and the seconds
each took. `compare_backends` is the function a scale benchmark calls. `--checkpoint` also scores
a trained checkpoint's real predictions on SPLIT with each backend (`compare_on_checkpoint`);
`--write` puts the results in the "Evaluation backends" section of docs/benchmarks.md.
"""
from __future__ import annotations

import argparse
import importlib.util
import logging
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Sequence, Tuple

import numpy as np

from nanodet_ghost.evaluation.backends import EVAL_BACKENDS
from nanodet_ghost.evaluation.coco import CocoEvalResult, CocoEvaluator

logger = logging.getLogger("eval_backends")

WIDTH, HEIGHT = 640, 480


def coco_like(num_images: int, dets_per_image: int = 100, num_classes: int = 80, seed: int = 0,
              empty_gt_every: int = 10, no_dets_every: int = 15, crowd_every: int = 7,
              ) -> Tuple[Dict[str, Any], List[Dict[str, Any]]]:
    """(COCO instances dict, COCO bbox results) of a plausible detector on COCO-like images.

    Image i (ids 1..num_images) has no ground truth when i % empty_gt_every == 0, no detections
    when i % no_dets_every == 0, and a crowd region when i % crowd_every == 0 (0 turns a case
    off). Other images get exactly `dets_per_image` detections: about 80 % of their boxes found
    with jitter (better boxes score higher), some with the wrong class, the rest false positives.
    """
    rng = np.random.default_rng(seed)
    images: List[Dict[str, Any]] = []
    anns: List[Dict[str, Any]] = []
    results: List[Dict[str, Any]] = []

    def random_box() -> List[float]:
        w, h = (float(v) for v in np.exp(rng.uniform(np.log(6), np.log(400), 2)))
        w, h = min(w, WIDTH - 1.0), min(h, HEIGHT - 1.0)
        return [float(rng.uniform(0, WIDTH - w)), float(rng.uniform(0, HEIGHT - h)), w, h]

    def every(i: int, n: int) -> bool:
        return n > 0 and i % n == 0

    for i in range(1, num_images + 1):
        images.append(dict(id=i, file_name=f"{i:06d}.jpg", width=WIDTH, height=HEIGHT))
        boxes = [] if every(i, empty_gt_every) else [random_box() for _ in range(int(rng.integers(1, 16)))]
        image_anns = [dict(image_id=i, category_id=int(rng.integers(1, num_classes + 1)), bbox=b,
                           area=b[2] * b[3], iscrowd=0) for b in boxes]
        if every(i, crowd_every):
            b = random_box()
            image_anns.append(dict(image_id=i, category_id=int(rng.integers(1, num_classes + 1)),
                                   bbox=b, area=b[2] * b[3], iscrowd=1))
        for ann in image_anns:
            anns.append(dict(ann, id=len(anns) + 1))
        if every(i, no_dets_every):
            continue
        dets = []
        for ann in image_anns[:dets_per_image]:
            if rng.random() < 0.2:
                continue
            x, y, w, h = ann["bbox"]
            jitter = rng.normal(0, 0.1, 4)
            box = [x + jitter[0] * w, y + jitter[1] * h, w * math.exp(jitter[2]), h * math.exp(jitter[3])]
            cat = ann["category_id"] if rng.random() > 0.1 else int(rng.integers(1, num_classes + 1))
            dets.append((box, cat, float(np.clip(0.95 - 2.0 * np.abs(jitter).mean(), 0.05, 1.0))))
        while len(dets) < dets_per_image:
            dets.append((random_box(), int(rng.integers(1, num_classes + 1)),
                         float(rng.uniform(0.01, 0.6))))
        results.extend(dict(image_id=i, category_id=c, bbox=b, score=s) for b, c, s in dets)
    categories = [dict(id=k, name=f"class{k}") for k in range(1, num_classes + 1)]
    return dict(images=images, annotations=anns, categories=categories), results


@dataclass(frozen=True)
class BackendRun:
    """One backend's score of the same data: the result and the seconds `evaluate_results` took
    (the ground truth index built beforehand, outside the time)."""

    backend: str
    seconds: float
    result: CocoEvalResult


def installed_backends() -> List[str]:
    """The backends of `EVAL_BACKENDS` whose package can be imported."""
    return [name for name in EVAL_BACKENDS if importlib.util.find_spec(name) is not None]


def run_backends(gt: Dict[str, Any], results: Sequence[Dict[str, Any]],
                 backends: Sequence[str]) -> List[BackendRun]:
    """Score `results` against `gt` with each backend; one `BackendRun` per backend."""
    runs = []
    for name in backends:
        evaluator = CocoEvaluator(gt, backend=name)
        start = time.perf_counter()
        result = evaluator.evaluate_results(results, source=f"generated results ({name})")
        runs.append(BackendRun(name, time.perf_counter() - start, result))
    return runs


def max_differences(reference: CocoEvalResult, other: CocoEvalResult) -> Tuple[float, float]:
    """(largest |stat difference|, largest |per-class AP difference|) of two results; NaN APs
    must be NaN in both (else the difference is inf)."""
    stats = max(abs(a - b) for a, b in zip(reference.stats, other.stats))
    per_class = 0.0
    for name, ap in reference.per_class_ap.items():
        theirs = other.per_class_ap[name]
        if math.isnan(ap) or math.isnan(theirs):
            per_class = per_class if math.isnan(ap) and math.isnan(theirs) else math.inf
        else:
            per_class = max(per_class, abs(ap - theirs))
    return stats, per_class


def compare_backends(num_images: int, dets_per_image: int = 100, seed: int = 0,
                     backends: Sequence[str] = ()) -> Dict[str, Any]:
    """Generate `coco_like(num_images, dets_per_image, seed=seed)` and score it with `backends`
    (default: every installed one; the first is the reference).

    Returns:
        dict(images, detections, seconds={backend: s}, max_stat_diff={backend: d},
        max_class_ap_diff={backend: d}, stats={backend: 12 floats}).
    """
    backends = list(backends) or installed_backends()
    gt, results = coco_like(num_images, dets_per_image, seed=seed)
    runs = run_backends(gt, results, backends)
    reference = runs[0].result
    diffs = {run.backend: max_differences(reference, run.result) for run in runs}
    return dict(images=num_images, detections=len(results),
                seconds={run.backend: run.seconds for run in runs},
                max_stat_diff={name: d[0] for name, d in diffs.items()},
                max_class_ap_diff={name: d[1] for name, d in diffs.items()},
                stats={run.backend: list(run.result.stats) for run in runs})


def compare_on_checkpoint(config: str, ckpt: str, split: str, overrides: Sequence[str] = (),
                          backends: Sequence[str] = ()) -> Dict[str, Any]:
    """Evaluate a trained checkpoint's real predictions on `split` with each backend (the first is
    the reference), through `evaluate_checkpoint` (what tools/test.py runs).

    Returns:
        dict(images, detections, map={backend: mAP}, max_stat_diff={backend: d},
        max_class_ap_diff={backend: d}).
    """
    from nanodet_ghost.config import load_config
    from nanodet_ghost.evaluation.runner import evaluate_checkpoint

    backends = list(backends) or installed_backends()
    results = {name: evaluate_checkpoint(load_config(config, list(overrides) + [f"evaluation.backend={name}"]),
                                         ckpt, split, device="cpu") for name in backends}
    reference = results[backends[0]]
    diffs = {name: max_differences(reference, result) for name, result in results.items()}
    return dict(images=reference.num_images, detections=reference.num_detections,
                map={name: result.map for name, result in results.items()},
                max_stat_diff={name: d[0] for name, d in diffs.items()},
                max_class_ap_diff={name: d[1] for name, d in diffs.items()})


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=5000)
    parser.add_argument("--dets", type=int, default=100, help="detections per image")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--checkpoint", nargs=3, action="append", default=[], metavar=("CONFIG", "CKPT", "SPLIT"),
                        help="also compare the backends on a trained checkpoint's predictions (repeatable)")
    parser.add_argument("--override", "-o", nargs="*", default=[], metavar="KEY=VALUE",
                        help="config overrides of the --checkpoint runs")
    parser.add_argument("--write", action="store_true", help="write the docs/benchmarks.md section")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    for name in ("nanodet_ghost.evaluation.coco",):  # its summary tables would drown the figures
        logging.getLogger(name).setLevel(logging.WARNING)
    report = compare_backends(args.images, args.dets, args.seed)
    lines = [f"Generated COCO-like data, {report['images']} images, {report['detections']} detections:", "",
             "| backend | seconds | speed-up | max abs stat diff | max abs per-class AP diff |",
             "|---|---:|---:|---:|---:|"]
    reference = next(iter(report["seconds"]))
    for name, seconds in report["seconds"].items():
        lines.append(f"| {name} | {seconds:.2f} | {report['seconds'][reference] / seconds:.2f}x | "
                     f"{report['max_stat_diff'][name]:.3g} | {report['max_class_ap_diff'][name]:.3g} |")
    for config, ckpt, split in args.checkpoint:
        real = compare_on_checkpoint(config, ckpt, split, args.override)
        lines += ["", f"Real predictions: `{Path(ckpt).name}` of `{config}` on its {split} split ({real['images']} "
                      f"images, {real['detections']} detections):", "",
                  "| backend | mAP | max abs stat diff | max abs per-class AP diff |", "|---|---:|---:|---:|"]
        for name in real["map"]:
            lines.append(f"| {name} | {real['map'][name]:.6f} | {real['max_stat_diff'][name]:.3g} | "
                         f"{real['max_class_ap_diff'][name]:.3g} |")
    print("\n".join(lines))
    if args.write:
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        from report import machine_description, today, write_section

        command = "python benchmarks/eval_backends.py " + " ".join(argv if argv is not None else sys.argv[1:])
        write_section("Evaluation backends", "\n".join(
            [f"Measured {today()} by `{command.replace(' --write', '')} --write` on {machine_description()}.", ""]
            + lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
