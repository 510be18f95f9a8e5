#!/usr/bin/env python
"""BCCD accuracy benchmark: train from scratch on `train`, validate on `val`, report COCO mAP on `test`.

    python benchmarks/bench_bccd.py [--config config/bccd_ghost_320.yml] [key=value ...]

Training is bounded by the config's `train.max_time` (30 minutes) as well as its epoch count. The
result, with per-class AP, epochs, wall time and the config, goes to docs/benchmarks.md.
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

from omegaconf import OmegaConf

from nanodet_ghost.config import load_config
from nanodet_ghost.paths import DATA_ENV_VAR, shared_data_root
from nanodet_ghost.trainer.runner import train

sys.path.insert(0, str(Path(__file__).resolve().parent))
from report import REPO_ROOT, machine_description, today, write_section  # noqa: E402

REFERENCES = (
    "| NanoDet reference, same architecture, plain PyTorch loop, 82 epochs, 20.5 min | 0.564 | 0.874 | 0.514 | 0.721 | 0.456 |\n"
    "| Ultralytics YOLOv8n from scratch, 97 epochs, 30 min at 320 | 0.547 | 0.876 | | | |\n"
)


def _read_metrics(save_dir: Path) -> tuple[int, int]:
    """Epochs and optimizer steps completed, from the last checkpoint."""
    import torch

    ckpt = torch.load(save_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    return int(ckpt["epoch"]) + 1, int(ckpt["global_step"])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default=str(REPO_ROOT / "config" / "bccd_ghost_320.yml"))
    parser.add_argument("--no-write", action="store_true", help="do not update docs/benchmarks.md")
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    bccd = shared_data_root() / "bccd" / "BCCD"
    if not bccd.exists():
        print(f"skipped: BCCD not found at {bccd} (set {DATA_ENV_VAR} to the shared data folder)")
        return 0

    cfg = load_config(args.config, args.overrides)
    save_dir = Path(cfg.train.save_dir)
    start = time.perf_counter()
    result = train(cfg)
    wall = time.perf_counter() - start
    epochs, steps = _read_metrics(save_dir)
    test = result.final_eval["test"]
    val = result.final_eval["val"]
    ap = test["per_class_ap"]
    stats = test["stats"]
    line = (f"| **nanodet-ghost** (this repo), {epochs} epochs, {steps} steps, {wall / 60:.1f} min incl. "
            f"validation and final evaluation | **{stats[0]:.3f}** | {stats[1]:.3f} | {ap['RBC']:.3f} | "
            f"{ap['WBC']:.3f} | {ap['Platelets']:.3f} |\n")
    body = (
        f"Measured {today()} on {machine_description()} by `benchmarks/bench_bccd.py`: from scratch (no "
        f"pretrained weights), trained on BCCD `train` (205 images), best checkpoint chosen on `val` "
        f"(mAP {val['mAP']:.3f}), reported on `test` (72 images). Target: test mAP@[.5:.95] >= 0.60.\n\n"
        "| model | test mAP@[.5:.95] | AP50 | RBC | WBC | Platelets |\n|---|---|---|---|---|---|\n"
        + line + REFERENCES
        + f"\nAll 12 COCO stats on test: `{json.dumps([round(s, 4) for s in stats])}`\n\n"
        f"Config (`{Path(args.config).name}` with overrides {args.overrides or 'none'}):\n\n```yaml\n"
        # unresolved: the doc shows `${shared_data:}`, not this machine's data folder
        + OmegaConf.to_yaml(OmegaConf.masked_copy(cfg, ["data", "train"]), resolve=False) + "```\n"
    )
    print(line.strip())
    if not args.no_write:
        write_section("BCCD accuracy (train from scratch, 2 CPU cores)", body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
