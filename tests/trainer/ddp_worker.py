"""One rank of a 2-process gloo run, started by test_ddp_collectives.py (one process per rank).

    python ddp_worker.py loss CASE OUT_DIR      # two GFLLoss steps + backward, then a sentinel all-reduce
    python ddp_worker.py validate CONFIG OUT_DIR # Lightning's validation loop over the config's val split

The rank comes from the environment (RANK / LOCAL_RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT), as
under torchrun. Each rank saves what it computed to OUT_DIR/rank<R>.pt for the test to check.
"""
from __future__ import annotations

import os
import sys
from datetime import timedelta
from pathlib import Path

import torch
import torch.distributed as dist

NUM_CLASSES, REG_MAX, INPUT_HW = 3, 7, (64, 96)
COLLECTIVE_TIMEOUT = timedelta(seconds=60)  # a desynchronised rank fails instead of hanging


def boxes_target(seed: int) -> dict:
    g = torch.Generator().manual_seed(seed)
    xy = torch.rand(3, 2, generator=g) * 40
    boxes = torch.cat((xy, xy + 12 + torch.rand(3, 2, generator=g) * 20), dim=1)
    return {"boxes": boxes, "labels": torch.randint(0, NUM_CLASSES, (3,), generator=g)}


def empty_target() -> dict:
    return {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.long)}


def loss_inputs(case: str, rank: int, step: int):
    """(raw, targets) of one rank at one step. `one_empty`: one rank has no boxes (rank 1 at step
    0, rank 0 at step 1); `both_empty`: no rank has any."""
    from nanodet_ghost.model.head.decode import featmap_sizes

    num_points = sum(h * w for h, w in featmap_sizes(INPUT_HW, (8, 16, 32)))
    g = torch.Generator().manual_seed(1000 * step + rank)
    raw = torch.randn(2, num_points, NUM_CLASSES + 4 * (REG_MAX + 1), generator=g)
    has_boxes = case == "one_empty" and rank == step
    targets = [boxes_target(10 * step + rank), boxes_target(10 * step + rank + 5)] if has_boxes \
        else [empty_target(), empty_target()]
    return raw, targets


def run_loss(case: str, out_dir: Path, rank: int) -> None:
    from nanodet_ghost.model.loss.gfl_loss import GFLLoss

    loss_fn = GFLLoss(NUM_CLASSES, reg_max=REG_MAX)
    steps = []
    for step in range(2):
        raw, targets = loss_inputs(case, rank, step)
        raw.requires_grad_(True)
        losses = loss_fn(raw, targets, INPUT_HW)
        losses["loss"].backward()
        steps.append({"losses": {k: v.detach() for k, v in losses.items()}, "grad": raw.grad})
    # If the ranks had issued different numbers of all-reduces, this one would pair with a loss
    # normaliser of the other rank (or time out) instead of summing 1 + 2.
    sentinel = torch.tensor([float(rank + 1)])
    dist.all_reduce(sentinel)
    torch.save({"steps": steps, "sentinel": sentinel.item()}, out_dir / f"rank{rank}.pt")


def run_validate(config: str, out_dir: Path, rank: int) -> None:
    import pytorch_lightning as pl
    from pytorch_lightning.strategies import DDPStrategy

    from nanodet_ghost.config import load_config
    from nanodet_ghost.trainer.datamodule import DetectionDataModule
    from nanodet_ghost.trainer.runner import build_module

    cfg = load_config(config)
    module = build_module(cfg)
    records = []

    def record(_module, args, output):
        raw, targets, input_hw = args
        records.append({"raw": raw.detach().clone(), "input_hw": tuple(input_hw),
                        "targets": [{k: v.clone() for k, v in t.items()} for t in targets],
                        "losses": {k: v.detach().clone() for k, v in output.items()}})

    module.eval_model.loss_fn.register_forward_hook(record)
    trainer = pl.Trainer(
        accelerator="cpu", devices=2, num_nodes=1, logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False,
        strategy=DDPStrategy(process_group_backend="gloo", timeout=COLLECTIVE_TIMEOUT),
    )
    trainer.validate(module, datamodule=DetectionDataModule(cfg.data, seed=cfg.train.seed,
                                                            strict_images=cfg.evaluation.strict))
    metrics = {k: float(v) for k, v in trainer.callback_metrics.items()}
    torch.save({"records": records, "metrics": metrics}, out_dir / f"rank{trainer.global_rank}.pt")


def main(argv) -> int:
    mode, arg, out_dir = argv[1], argv[2], Path(argv[3])
    rank = int(os.environ["RANK"])
    if mode == "loss":
        dist.init_process_group("gloo", timeout=COLLECTIVE_TIMEOUT)
        try:
            run_loss(arg, out_dir, rank)
        finally:
            dist.destroy_process_group()
    else:
        run_validate(arg, out_dir, rank)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
