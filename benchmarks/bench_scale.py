"""Data at COCO scale: label cache and flat records on a generated COCO json of 118k images.

    python benchmarks/bench_scale.py [--images 118000] [--workers 2] [--fraction 0.2]
                                     [--work-dir work_dirs/bench_scale] [--no-write]

Generates (once per size, in `--work-dir`) a COCO instances json over `--images` images with
about 7.3 boxes each (COCO train2017: 118k images, 860k boxes), 80 categories with COCO's
non-contiguous ids and 1 % crowd regions; the image files are symlinks to a few hundred small
JPEGs, so every image has its own name and its header and tail are read as for real files.
Then, each step in a fresh Python process:

- `json.load` of the annotation file alone;
- the first `build_dataset` (`data.cache_labels: true`, no cache yet: it reads the json and every
  image's header and tail, then writes the label cache), and the second (reads the cache);
- the parent's RSS growth from building, and the bytes of the records' arrays;
- the USS (psutil `memory_full_info`, private pages) of each of `--workers` forked DataLoader
  workers when it starts and after a pass over `--fraction` of the images in random order;
- the COCO evaluation backends on 5,000 images x 100 detections, through
  `benchmarks/eval_backends.py` (`compare_backends`) when that module is present.

Targets: the second build <= 0.25x the first and faster than `json.load` alone; each worker's USS
growth over the pass <= 10 % of the records' size in the parent. Results replace the "Data at
COCO scale" section of docs/benchmarks.md (`--no-write`: print only).
"""
from __future__ import annotations

import argparse
import datetime
import gc
import json
import logging
import os
import platform
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import cv2
import numpy as np

from nanodet_ghost.paths import REPO_ROOT

sys.path.insert(0, str(Path(__file__).resolve().parent))
from report import machine_description, write_section  # noqa: E402

logger = logging.getLogger("bench_scale")

SECTION_TITLE = "Data at COCO scale"
MAX_CACHE_RATIO = 0.25  # second build / first build
MAX_WORKER_GROWTH = 0.10  # worker USS growth / records' bytes
BOXES_PER_IMAGE = 860_000 / 118_000
POOL_SIZES = ((160, 120), (120, 160), (200, 150), (128, 128))  # (width, height) of pool JPEGs
# COCO's 80 category ids (1..90 without the 10 unused ones)
COCO_IDS = [i for i in range(1, 91) if i not in (12, 26, 29, 30, 45, 66, 68, 69, 71, 83)]
RESULT_PREFIX = "RESULT "


# ------------------------------------------------------------------ data
def generate(folder: Path, num_images: int, pool: int, seed: int = 0) -> Path:
    """`folder/{annotations/instances_bench.json, pool/*.jpg, images/*.jpg -> pool}`, reused
    when its marker says the same size; mtimes set a minute back (an existing dataset, not one
    written this second, which the label cache would not trust yet). Returns the json path."""
    ann_file = folder / "annotations" / "instances_bench.json"
    marker = folder / "generated.json"
    wanted = dict(images=num_images, pool=pool, seed=seed)
    if marker.is_file() and json.loads(marker.read_text()) == wanted:
        return ann_file
    shutil.rmtree(folder, ignore_errors=True)
    rng = np.random.default_rng(seed)
    (folder / "pool").mkdir(parents=True)
    (folder / "images").mkdir()
    ann_file.parent.mkdir()
    sizes = []
    for k in range(pool):
        w, h = POOL_SIZES[k % len(POOL_SIZES)]
        img = cv2.resize(rng.integers(0, 255, (6, 8, 3), dtype=np.uint8), (w, h))
        cv2.imwrite(str(folder / "pool" / f"{k:04d}.jpg"), img)
        sizes.append((w, h))
    images, annotations = [], []
    for i in range(num_images):
        k = i % pool
        w, h = sizes[k]
        name = f"{i + 1:012d}.jpg"
        os.symlink(os.path.join("..", "pool", f"{k:04d}.jpg"), folder / "images" / name)
        images.append(dict(id=i + 1, file_name=name, width=w, height=h))
        n = int(rng.poisson(BOXES_PER_IMAGE))
        bw, bh = rng.uniform(4, w / 2, n), rng.uniform(4, h / 2, n)
        x, y = rng.uniform(0, w - bw), rng.uniform(0, h - bh)
        cats = rng.choice(COCO_IDS, n)
        crowd = rng.random(n) < 0.01
        for j in range(n):
            box = [round(float(x[j]), 2), round(float(y[j]), 2), round(float(bw[j]), 2),
                   round(float(bh[j]), 2)]
            annotations.append(dict(id=len(annotations) + 1, image_id=i + 1,
                                    category_id=int(cats[j]), bbox=box,
                                    area=round(box[2] * box[3], 2), iscrowd=int(crowd[j])))
    categories = [dict(id=c, name=f"class{c}", supercategory="") for c in COCO_IDS]
    with open(ann_file, "w", encoding="utf-8") as f:
        json.dump(dict(images=images, annotations=annotations, categories=categories), f)
    when = time.time() - 60
    for path in [ann_file, ann_file.parent, folder / "images", folder / "pool"]:
        os.utime(path, (when, when))
    marker.write_text(json.dumps(wanted))
    logger.info("generated %s: %d images, %d boxes", ann_file, num_images, len(annotations))
    return ann_file


def remove_caches(folder: Path) -> None:
    """Delete the label caches of the generated dataset (beside the json and in the user cache)."""
    from nanodet_ghost.data.label_cache import CACHE_SUBDIR
    from nanodet_ghost.paths import default_cache_dir

    shutil.rmtree(folder / "annotations" / CACHE_SUBDIR, ignore_errors=True)
    for path in (default_cache_dir() / "labels").glob("instances_bench.*.npz"):
        path.unlink()


def data_config(folder: Path) -> Any:
    from omegaconf import OmegaConf

    from nanodet_ghost.data.config import DataConfig

    cfg = OmegaConf.structured(DataConfig)
    cfg.input_size = [96, 96]
    cfg.train.root = str(folder / "images")
    cfg.train.ann_file = str(folder / "annotations" / "instances_bench.json")
    cfg.cache_labels = True
    return cfg


# ------------------------------------------------------------------ phases (fresh processes)
BATCH = 32


def _write_uss(stage: str) -> None:
    import psutil

    uss = psutil.Process().memory_full_info().uss
    Path(os.environ["BENCH_SCALE_USS_DIR"], f"{os.getpid()}.{stage}").write_text(str(uss))


def _record_start_uss(worker_id: int) -> None:
    """DataLoader worker_init_fn: this worker's USS before it reads any sample."""
    _write_uss("start")


class UssProbe:
    """The dataset, plus each worker's USS written once it has read its first batch (by then
    the decoder, pipeline and collate buffers exist; what grows later is the pass itself)."""

    def __init__(self, dataset: Any) -> None:
        self.dataset = dataset
        self.reads = 0

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> Any:
        sample = self.dataset[index]
        self.reads += 1
        if self.reads == BATCH + 1:
            _write_uss("warm")
        return sample


def worker_pass(dataset: Any, workers: int, fraction: float, folder: Path) -> Dict[str, Any]:
    """USS growth of each forked worker over a pass over `fraction` of the images in random
    order: from its start, and from the end of its first batch."""
    import psutil
    import torch
    from torch.utils.data import DataLoader

    from nanodet_ghost.data.collate import collate

    uss_dir = folder / "uss"
    shutil.rmtree(uss_dir, ignore_errors=True)
    uss_dir.mkdir(parents=True)
    os.environ["BENCH_SCALE_USS_DIR"] = str(uss_dir)
    rng = np.random.default_rng(0)
    indices = rng.choice(len(dataset), max(1, int(len(dataset) * fraction)), replace=False)
    loader = DataLoader(UssProbe(dataset), batch_size=BATCH, sampler=indices.tolist(),
                        num_workers=workers, collate_fn=collate,
                        worker_init_fn=_record_start_uss, persistent_workers=True,
                        multiprocessing_context="fork")
    torch.set_num_threads(1)
    start = time.perf_counter()
    seen = sum(len(batch["metas"]) + len(batch["dropped"]) for batch in loader)
    seconds = time.perf_counter() - start
    from_start, from_warm = [], []
    for child in psutil.Process().children():
        files = {stage: uss_dir / f"{child.pid}.{stage}" for stage in ("start", "warm")}
        if not files["start"].is_file():
            continue
        end = child.memory_full_info().uss
        from_start.append(end - int(files["start"].read_text()))
        if files["warm"].is_file():
            from_warm.append(end - int(files["warm"].read_text()))
    del loader
    return dict(pass_images=seen, pass_seconds=seconds, worker_uss_growth=from_warm,
                worker_uss_growth_from_start=from_start)


def phase(name: str, folder: Path, workers: int, fraction: float) -> Dict[str, Any]:
    """One measurement, run in a fresh process: `json` or `build`."""
    import psutil
    import torch.distributed  # noqa: F401 (imported by the build under the cache; not its memory)

    from nanodet_ghost.data.loader import build_dataset, build_pipeline

    cfg = data_config(folder)
    if name == "json":
        start = time.perf_counter()
        with open(cfg.train.ann_file, "r", encoding="utf-8") as f:
            json.load(f)
        return dict(seconds=time.perf_counter() - start)
    messages: List[str] = []
    handler = logging.Handler()
    handler.emit = lambda record: messages.append(record.getMessage())  # type: ignore[method-assign]
    logging.getLogger("nanodet_ghost.data.label_cache").addHandler(handler)
    proc = psutil.Process()
    gc.collect()
    rss0 = proc.memory_info().rss
    start = time.perf_counter()
    dataset = build_dataset(cfg, "train")
    seconds = time.perf_counter() - start
    gc.collect()
    rss1 = proc.memory_info().rss
    source = dataset.source
    result = dict(seconds=seconds, rss_growth=rss1 - rss0, images=len(source),
                  boxes=source.num_boxes,
                  records_bytes=sum(a.nbytes for a in source.records.arrays().values()),
                  cache=source.label_cache,
                  cache_read=any(m.startswith("labels read from the cache") for m in messages))
    if workers:
        dataset.pipeline = build_pipeline(cfg, train=False)
        result.update(worker_pass(dataset, workers, fraction, folder))
    return result


def run_phase(name: str, folder: Path, workers: int = 0, fraction: float = 0.0) -> Dict[str, Any]:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [str(REPO_ROOT)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]))
    cmd = [sys.executable, str(Path(__file__).resolve()), "--phase", name, "--data-dir",
           str(folder), "--workers", str(workers), "--fraction", str(fraction)]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"phase {name} failed:\n{out.stderr[-3000:]}")
    line = next(l for l in out.stdout.splitlines() if l.startswith(RESULT_PREFIX))
    return json.loads(line[len(RESULT_PREFIX):])


# ------------------------------------------------------------------ evaluation hook
def eval_timing(num_images: int, dets: int) -> Optional[Dict[str, Any]]:
    """`eval_backends.compare_backends(num_images, dets)`, or None when that module is absent."""
    try:
        from eval_backends import compare_backends
    except ImportError:
        return None
    for name in ("nanodet_ghost.evaluation.coco",):  # its tables would drown the figures
        logging.getLogger(name).setLevel(logging.WARNING)
    return compare_backends(num_images, dets)


# ------------------------------------------------------------------ report
def verdicts(r: Dict[str, Any]) -> List[str]:
    """One line per target: the measured figure, the target and met / missed."""
    first, second, load = r["first"]["seconds"], r["second"]["seconds"], r["json"]["seconds"]
    ratio = second / first
    records = r["second"]["records_bytes"]
    growth = max(r["second"]["worker_uss_growth"] or [float("nan")])  # after the first batch
    share = growth / records if records else float("nan")
    lines = [
        f"second build (cache {'read' if r['second']['cache_read'] else 'NOT read'}) / first "
        f"build: {second:.2f} s / {first:.2f} s = {ratio:.3f}x (target <= {MAX_CACHE_RATIO}x: "
        f"{'met' if r['second']['cache_read'] and ratio <= MAX_CACHE_RATIO else 'missed'})",
        f"second build vs json.load alone: {second:.2f} s vs {load:.2f} s (target: faster: "
        f"{'met' if second < load else 'missed'})",
        f"largest worker USS growth over the {r['fraction']:.0%} pass (after each worker's first "
        f"batch): {growth / 2**20:.2f} MiB = "
        f"{share:.1%} of the records' {records / 2**20:.1f} MiB (target <= "
        f"{MAX_WORKER_GROWTH:.0%}: {'met' if share <= MAX_WORKER_GROWTH else 'missed'})",
    ]
    return lines


def eval_line(timing: Optional[Dict[str, Any]], images: int, dets: int) -> str:
    if images <= 0:
        return "evaluation timing: skipped (--eval-images 0)"
    if timing is None:
        return ("TODO evaluation timing: benchmarks/eval_backends.py is not there, so pycocotools "
                f"vs faster_coco_eval on {images:,} images x {dets} detections was not measured")
    parts = [f"{name} {s:.2f} s" for name, s in timing["seconds"].items()]
    return (f"evaluation of {timing['images']:,} images, {timing['detections']:,} detections: "
            + ", ".join(parts))


def section(r: Dict[str, Any]) -> str:
    first, second = r["first"], r["second"]
    mib = 2**20
    growth = ", ".join(f"{g / mib:.2f}" for g in second["worker_uss_growth"])
    from_start = ", ".join(f"{g / mib:.2f}" for g in second["worker_uss_growth_from_start"])
    rows = [("`json.load` of the annotation file alone", r["json"]["seconds"], "", ""),
            ("first build (json, every image header and tail; writes the cache)",
             first["seconds"], f"{first['rss_growth'] / mib:.0f}", ""),
            ("second build (reads the label cache)", second["seconds"],
             f"{second['rss_growth'] / mib:.0f}", f"{second['records_bytes'] / mib:.1f}")]
    table = "| step | seconds | parent RSS growth (MiB) | records' arrays (MiB) |\n" \
            "|---|---:|---:|---:|\n" + "\n".join(
                f"| {name} | {s:.2f} | {rss} | {arrays} |" for name, s, rss, arrays in rows)
    intro = (f"`python benchmarks/bench_scale.py --images {r['images']}` on a generated COCO json "
             f"of {second['images']:,} images and {second['boxes']:,} boxes (files: symlinks to "
             f"{r['pool']} small JPEGs), each step in a fresh process. Measured "
             f"{datetime.date.today().isoformat()} on {machine_description()}, Python "
             f"{platform.python_version()}.")
    workers = (f"{r['workers']} forked DataLoader workers, pass over {r['fraction']:.0%} of the "
               f"images ({second['pass_images']:,}, random order, {second['pass_seconds']:.1f} s): "
               f"USS growth per worker {from_start} MiB from its start, {growth} MiB after its "
               f"first batch of {BATCH} (decoder, pipeline and collate buffers then exist; the "
               "target is on this figure).")
    lines = [textwrap.fill(intro, 100), table, textwrap.fill(workers, 100),
             "\n".join(f"- {line}" for line in verdicts(r)),
             "- " + eval_line(r.get("eval"), r["eval_images"], r["eval_dets"])]
    return "\n\n".join(lines)


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=118_000)
    parser.add_argument("--pool", type=int, default=300, help="distinct JPEG files")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--fraction", type=float, default=0.2, help="share of images the workers read")
    parser.add_argument("--eval-images", type=int, default=5000, help="0: skip the evaluation timing")
    parser.add_argument("--eval-dets", type=int, default=100, help="detections per image")
    parser.add_argument("--work-dir", type=Path, default=REPO_ROOT / "work_dirs" / "bench_scale")
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "docs" / "benchmarks.md")
    parser.add_argument("--no-write", action="store_true", help="only print the results")
    parser.add_argument("--phase", choices=("json", "build"), help=argparse.SUPPRESS)
    parser.add_argument("--data-dir", type=Path, help=argparse.SUPPRESS)  # of a phase
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.phase:
        result = phase(args.phase, args.data_dir, args.workers, args.fraction)
        print(RESULT_PREFIX + json.dumps(result))
        return 0
    folder = args.work_dir / f"coco_{args.images}"

    generate(folder, args.images, args.pool)
    remove_caches(folder)
    results: Dict[str, Any] = dict(images=args.images, pool=args.pool, workers=args.workers,
                                   fraction=args.fraction, eval_images=args.eval_images,
                                   eval_dets=args.eval_dets)
    results["json"] = run_phase("json", folder)
    results["first"] = run_phase("build", folder)
    results["second"] = run_phase("build", folder, args.workers, args.fraction)
    if args.eval_images > 0:
        results["eval"] = eval_timing(args.eval_images, args.eval_dets)
    for line in verdicts(results) + [eval_line(results.get("eval"), args.eval_images,
                                               args.eval_dets)]:
        print(line)
    body = section(results)
    if args.no_write:
        print(body)
    else:
        write_section(SECTION_TITLE, body, args.out)
        logger.info("wrote %s", args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
