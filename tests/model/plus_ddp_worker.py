"""One rank of a 2-process gloo run of NanoDetPlusLoss, started by test_plus_loss_ddp.py.

    python plus_ddp_worker.py CASE OUT_DIR

Two steps of the loss with an auxiliary output + backward, counting the all-reduces each step
issues, then a sentinel all-reduce. The rank comes from the environment (RANK, WORLD_SIZE,
MASTER_ADDR, MASTER_PORT), as under torchrun; OUT_DIR/rank<R>.pt holds what it computed.
"""
from __future__ import annotations

import os
import sys
from datetime import timedelta
from pathlib import Path

import torch
import torch.distributed as dist

NUM_CLASSES, REG_MAX, INPUT_HW, STRIDES = 3, 7, (64, 96), (8, 16, 32, 64)
COLLECTIVE_TIMEOUT = timedelta(seconds=60)  # a desynchronised rank fails instead of hanging


def boxes_target(seed: int) -> dict:
    g = torch.Generator().manual_seed(seed)
    xy = torch.rand(3, 2, generator=g) * 40
    boxes = torch.cat((xy, xy + 12 + torch.rand(3, 2, generator=g) * 20), dim=1)
    return {"boxes": boxes, "labels": torch.randint(0, NUM_CLASSES, (3,), generator=g)}


def empty_target() -> dict:
    return {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.long)}


def loss_inputs(case: str, rank: int, step: int):
    """(raw, aux_raw, targets) of one rank at one step. `one_empty`: one rank has no boxes (rank 1
    at step 0, rank 0 at step 1); `both_empty`: no rank has any."""
    from nanodet_ghost.model.head.decode import grid_points

    num_points = grid_points(INPUT_HW, STRIDES)[0].shape[0]
    g = torch.Generator().manual_seed(1000 * step + rank)
    raw, aux_raw = torch.randn(2, 2, num_points, NUM_CLASSES + 4 * (REG_MAX + 1), generator=g)
    has_boxes = case == "one_empty" and rank == step
    targets = [boxes_target(10 * step + rank), boxes_target(10 * step + rank + 5)] if has_boxes \
        else [empty_target(), empty_target()]
    return raw, aux_raw, targets


def run(case: str, out_dir: Path, rank: int) -> None:
    from nanodet_ghost.model.loss.plus_loss import NanoDetPlusLoss

    calls = {"all_reduce": 0}
    all_reduce = dist.all_reduce

    def counting(*args, **kwargs):
        calls["all_reduce"] += 1
        return all_reduce(*args, **kwargs)
    dist.all_reduce = counting
    loss_fn = NanoDetPlusLoss(NUM_CLASSES, STRIDES, REG_MAX)
    steps = []
    for step in range(2):
        raw, aux_raw, targets = loss_inputs(case, rank, step)
        raw.requires_grad_(True)
        aux_raw.requires_grad_(True)
        calls["all_reduce"] = 0
        losses = loss_fn(raw, targets, INPUT_HW, aux_raw=aux_raw)
        losses["loss"].backward()
        steps.append({"losses": {k: v.detach() for k, v in losses.items()}, "grad": raw.grad,
                      "aux_grad": aux_raw.grad, "all_reduces": calls["all_reduce"]})
    dist.all_reduce = all_reduce
    # Had the ranks issued different numbers of all-reduces, this one would pair with a loss
    # normaliser of the other rank (or time out) instead of summing 1 + 2.
    sentinel = torch.tensor([float(rank + 1)])
    dist.all_reduce(sentinel)
    torch.save({"steps": steps, "sentinel": sentinel.item()}, out_dir / f"rank{rank}.pt")


def main(argv) -> int:
    rank = int(os.environ["RANK"])
    dist.init_process_group("gloo", timeout=COLLECTIVE_TIMEOUT)
    try:
        run(argv[1], Path(argv[2]), rank)
    finally:
        dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
