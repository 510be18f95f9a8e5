#!/usr/bin/env python
"""Training throughput (images/s) of the full train step on coco128 at 320x320.

    python benchmarks/bench_train_throughput.py [--batch-size N] [--steps K] [--no-write]

Each variant (precision x memory layout) runs the real Lightning training step of
`config/nanodet_ghost_320.yml` (80 classes): forward, GFL loss with ATSS assignment, backward,
gradient clipping, AdamW and the EMA update. The timer spans `on_train_batch_start` to
`on_train_batch_end`, so data loading is not counted (bench_dataloader.py measures that). On CPU
the variants are fp32 NCHW, fp32 channels_last and bf16-mixed channels_last at batch 16; on CUDA,
"32" and "16-mixed" (both channels_last) and fp32 NCHW at batch 64. Results go to
docs/benchmarks.md.
"""
from __future__ import annotations

import argparse
import logging
import statistics
import sys
import time
from pathlib import Path
from typing import List, Tuple

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import Callback

from nanodet_ghost.config import load_config
from nanodet_ghost.paths import CONFIG_DIR, DATA_ENV_VAR, shared_data_root
from nanodet_ghost.trainer.datamodule import DetectionDataModule
from nanodet_ghost.trainer.runner import build_module

sys.path.insert(0, str(Path(__file__).resolve().parent))
from report import machine_description, today, write_section  # noqa: E402

logger = logging.getLogger("bench_train_throughput")
CPU_VARIANTS = (("32", False), ("32", True), ("bf16-mixed", True))
CUDA_VARIANTS = (("32", True), ("16-mixed", True), ("32", False))


class StepTimer(Callback):
    """Wall time of each training step, data loading excluded."""

    def __init__(self) -> None:
        self.times: List[float] = []
        self._start = 0.0

    def _sync(self, pl_module: pl.LightningModule) -> None:
        if pl_module.device.type == "cuda":
            torch.cuda.synchronize(pl_module.device)

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self._sync(pl_module)
        self._start = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self._sync(pl_module)
        self.times.append(time.perf_counter() - self._start)


def measure(root: Path, precision: str, channels_last: bool, batch_size: int, steps: int, warmup: int,
            accelerator: str) -> Tuple[float, float]:
    """Median and best images/s over `steps` timed steps after `warmup` untimed ones."""
    coco = [f"data.{split}.{key}={value}" for split in ("train", "val") for key, value in (
        ("format", "coco"), ("root", root / "train2017"), ("ann_file", root / "annotations" / "instances_train2017.json"))]
    cfg = load_config(CONFIG_DIR / "nanodet_ghost_320.yml", coco + [
        f"data.batch_size={batch_size}", "data.num_workers=0",  # no worker competes with the timed step
        f"train.precision={precision}", f"train.channels_last={channels_last}",
    ])
    pl.seed_everything(0, verbose=False)
    datamodule = DetectionDataModule(cfg.data, seed=0)
    datamodule.setup("fit")
    module = build_module(cfg)
    timer = StepTimer()
    trainer = pl.Trainer(accelerator=accelerator, devices=1, precision=precision, max_steps=warmup + steps,
                         limit_val_batches=0, logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, callbacks=[timer],
                         gradient_clip_val=cfg.train.grad_clip, num_sanity_val_steps=0)
    trainer.fit(module, datamodule=datamodule)
    rates = [batch_size / t for t in timer.times[warmup:]]
    return statistics.median(rates), max(rates)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch-size", type=int, default=None, help="default: 64 on CUDA, 16 on CPU")
    parser.add_argument("--steps", type=int, default=20, help="timed steps per variant")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps first")
    parser.add_argument("--no-write", action="store_true", help="do not update docs/benchmarks.md")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    root = shared_data_root() / "coco128"
    if not root.exists():
        logger.warning("coco128 not found at %s (set %s): benchmark skipped", root, DATA_ENV_VAR)
        return 0
    cuda = torch.cuda.is_available()
    accelerator, variants = ("gpu", CUDA_VARIANTS) if cuda else ("cpu", CPU_VARIANTS)
    batch_size = args.batch_size or (64 if cuda else 16)
    device = torch.cuda.get_device_name(0) if cuda else "CPU"
    rows, baseline = [], None
    for precision, channels_last in variants:
        median, best = measure(root, precision, channels_last, batch_size, args.steps, args.warmup, accelerator)
        baseline = baseline or median
        layout = "channels_last" if channels_last else "NCHW"
        rows.append(f"| {precision} | {layout} | {median:.1f} | {best:.1f} | {median / baseline:.2f} |")
        logger.info("%s %s: %.1f img/s (best %.1f)", precision, layout, median, best)
    body = (
        f"Measured {today()} on {device}, {machine_description()} by `benchmarks/bench_train_throughput.py`: "
        f"the full training step (forward, GFL loss and ATSS, backward, clipping, AdamW, EMA) of the "
        f"80-class model at 320x320 on coco128 images, batch {batch_size}, median of {args.steps} steps after "
        f"{args.warmup} warm-up steps; data loading not counted. Ratios are to the first row, same run.\n\n"
        "| precision | layout | img/s (median) | img/s (best) | vs first row |\n|---|---|---|---|---|\n"
        + "\n".join(rows) + "\n"
    )
    if not cuda:
        body += ("\nNo GPU on this machine. Where CUDA is present the script measures \"32\" against "
                 "\"16-mixed\" (and NCHW) at batch 64 and writes them to a \"Training throughput (CUDA)\" section.\n")
    print("\n".join(rows))
    if not args.no_write:
        write_section(f"Training throughput ({'CUDA' if cuda else 'CPU'})", body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
