#!/usr/bin/env python
"""BCCD accuracy benchmark: train from scratch on `train`, validate on `val`, report COCO mAP on `test`.

    python benchmarks/bench_bccd.py [--config config/bccd_ghost_320.yml] [key=value ...] [--seeds 0 1 2]

(`--seeds` last: it takes every number after it.)

Each seed is a full run (the config's `train.time_budget`, or `max_epochs` / `max_time` when no budget is
set) in `<train.save_dir>/seed<N>`. The table lists every seed, then the mean and the sample standard
deviation; it goes to docs/benchmarks.md under a section named after the budget (`--section` to name
it), with the machine, date and config. `--reuse` takes a seed's figures from an earlier run of the same
folder (its `bench.json`) instead of training again.
"""
from __future__ import annotations

import argparse
import json
import logging
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Dict, List

from omegaconf import OmegaConf

from nanodet_ghost.config import load_config
from nanodet_ghost.paths import CONFIG_DIR, DATA_ENV_VAR, shared_data_root
from nanodet_ghost.trainer.runner import train

sys.path.insert(0, str(Path(__file__).resolve().parent))
from report import machine_description, today, write_section  # noqa: E402

REFERENCES = (
    "References in the same 30-minute loop at 320x256 / 320, one seed each (docs/benchmarks.md, 2026-11-25): "
    "NanoDet's reference loop on the same architecture 0.564 (82 epochs; 0.576 with its ATSS recipe after "
    "149 epochs in the NanoDet-Plus comparison of issue 13), Ultralytics YOLOv8n from scratch 0.547.\n"
)
CLASSES = ("RBC", "WBC", "Platelets")


def _epochs_and_steps(save_dir: Path) -> tuple[int, int]:
    """Epochs and optimizer steps completed, from the last checkpoint."""
    import torch

    ckpt = torch.load(save_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    return int(ckpt["epoch"]) + 1, int(ckpt["global_step"])


def run_seed(config: str, overrides: List[str], seed: int, reuse: bool) -> Dict[str, Any]:
    """Train and evaluate one seed; the figures are also written to `<save_dir>/bench.json`."""
    base = load_config(config, overrides)
    save_dir = Path(base.train.save_dir) / f"seed{seed}"
    record = save_dir / "bench.json"
    if reuse and record.is_file():
        logging.info("seed %d: figures from %s", seed, record)
        return json.loads(record.read_text())
    cfg = load_config(config, list(overrides) + [f"train.seed={seed}", f"train.save_dir={save_dir}"])
    start = time.perf_counter()
    result = train(cfg)
    wall = time.perf_counter() - start
    epochs, steps = _epochs_and_steps(save_dir)
    test, val = result.final_eval["test"], result.final_eval["val"]
    figures = {"seed": seed, "epochs": epochs, "steps": steps, "wall_min": wall / 60, "val_map": val["mAP"],
               "test_stats": test["stats"], "test_ap": test["per_class_ap"]}
    record.write_text(json.dumps(figures, indent=2))
    return figures


def _cell(values: List[float], digits: int = 3) -> str:
    if len(values) < 2:
        return f"{values[0]:.{digits}f}"
    return f"{statistics.mean(values):.{digits}f} ± {statistics.stdev(values):.{max(digits, 1)}f}"


def table(runs: List[Dict[str, Any]]) -> str:
    """Markdown table: one row per seed, then mean ± sample std over the seeds."""
    head = ("| seed | epochs | steps | wall (min) | val mAP | test mAP@[.5:.95] | AP50 | "
            + " | ".join(CLASSES) + " |\n|" + "---|" * (7 + len(CLASSES)) + "\n")
    rows = [f"| {r['seed']} | {r['epochs']} | {r['steps']} | {r['wall_min']:.1f} | {r['val_map']:.3f} | "
            f"{r['test_stats'][0]:.3f} | {r['test_stats'][1]:.3f} | "
            + " | ".join(f"{r['test_ap'][c]:.3f}" for c in CLASSES) + " |\n" for r in runs]
    col = lambda f: [f(r) for r in runs]  # noqa: E731
    mean = (f"| **mean ± std** | {_cell(col(lambda r: r['epochs']), 0)} | {_cell(col(lambda r: r['steps']), 0)} | "
            f"{_cell(col(lambda r: r['wall_min']), 1)} | {_cell(col(lambda r: r['val_map']))} | "
            f"**{_cell(col(lambda r: r['test_stats'][0]))}** | {_cell(col(lambda r: r['test_stats'][1]))} | "
            + " | ".join(_cell(col(lambda r, c=c: r['test_ap'][c])) for c in CLASSES) + " |\n")
    return head + "".join(rows) + (mean if len(runs) > 1 else "")


def section_title(cfg: Any) -> str:
    if cfg.train.time_budget:
        return f"BCCD accuracy, time budget {cfg.train.time_budget} (train from scratch, 2 CPU cores)"
    return (f"BCCD accuracy, max_epochs {cfg.train.max_epochs} and max_time {cfg.train.max_time} "
            "(train from scratch, 2 CPU cores)")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default=str(CONFIG_DIR / "bccd_ghost_320.yml"))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--section", default=None, help="docs/benchmarks.md section title")
    parser.add_argument("--reuse", action="store_true", help="reuse a seed's bench.json from an earlier run")
    parser.add_argument("--no-write", action="store_true", help="do not update docs/benchmarks.md")
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    bccd = shared_data_root() / "bccd" / "BCCD"
    if not bccd.exists():
        print(f"skipped: BCCD not found at {bccd} (set {DATA_ENV_VAR} to the shared data folder)")
        return 0

    cfg = load_config(args.config, args.overrides)
    runs = [run_seed(args.config, args.overrides, seed, args.reuse) for seed in args.seeds]
    data = cfg.data
    train_size = list(data.train_input_size or data.input_size)
    body = (
        f"Measured {today()} on {machine_description()} by `python benchmarks/bench_bccd.py --config "
        f"config/{Path(args.config).name}{' ' + ' '.join(args.overrides) if args.overrides else ''} "
        f"--seeds {' '.join(map(str, args.seeds))}`: from scratch (no pretrained weights), "
        f"trained on BCCD `train` (205 images) at {train_size[0]}x{train_size[1]}, best checkpoint chosen on "
        f"`val` (87 images), reported on `test` (72 images), both evaluated at "
        f"{data.input_size[0]}x{data.input_size[1]}. Wall time includes validation and the final evaluation; "
        "std is the sample standard deviation over the seeds.\n\n"
        + table(runs) + "\n" + REFERENCES
        + f"\nConfig (`{Path(args.config).name}` with overrides {args.overrides or 'none'}):\n\n```yaml\n"
        # unresolved: the doc shows `${shared_data:}`, not this machine's data folder
        + OmegaConf.to_yaml(OmegaConf.masked_copy(cfg, ["data", "train"]), resolve=False) + "```\n"
    )
    print(table(runs))
    if not args.no_write:
        write_section(args.section or section_title(cfg), body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
