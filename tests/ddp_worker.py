"""Two-process gloo runs for the DDP tests: the launcher (`run_two_ranks`) and, run as a script, one
rank of the run.

    python ddp_worker.py loss gfl CASE OUT_DIR    # two GFLLoss steps + backward, then a sentinel all-reduce
    python ddp_worker.py loss plus CASE OUT_DIR   # the same for NanoDetPlusLoss with an auxiliary output
    python ddp_worker.py validate CONFIG OUT_DIR  # Lightning's validation loop over the config's val split

The rank comes from the environment (RANK / LOCAL_RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT), as
under torchrun. Each rank saves what it computed to OUT_DIR/rank<R>.pt for the test to check. A
loss step also records how many all-reduces it issued.
"""
from __future__ import annotations

import os
import socket
import subprocess
import sys
from datetime import timedelta
from pathlib import Path
from typing import List

import torch
import torch.distributed as dist

NUM_CLASSES, REG_MAX, INPUT_HW = 3, 7, (64, 96)
STRIDES = {"gfl": (8, 16, 32), "plus": (8, 16, 32, 64)}
COLLECTIVE_TIMEOUT = timedelta(seconds=60)  # a desynchronised rank fails instead of hanging
RANK_TIMEOUT_S = 240  # generous for 2 busy cores; a desynchronised run hangs far longer


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_two_ranks(*args: str, cwd: Path, check: bool = True) -> List[subprocess.CompletedProcess]:
    """Start ranks 0 and 1 of `ddp_worker.py ARGS` as torchrun would; kill both on timeout.
    `check`: both must succeed."""
    import pytest

    env_common = {**os.environ, "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(free_port()),
                  "WORLD_SIZE": "2", "NODE_RANK": "0", "OMP_NUM_THREADS": "1"}
    procs = [subprocess.Popen([sys.executable, __file__, *args], cwd=cwd, text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              env={**env_common, "RANK": str(r), "LOCAL_RANK": str(r)})
             for r in range(2)]
    results = []
    try:
        for proc in procs:
            out, err = proc.communicate(timeout=RANK_TIMEOUT_S)
            results.append(subprocess.CompletedProcess(proc.args, proc.returncode, out, err))
    except subprocess.TimeoutExpired:
        pytest.fail(f"rank {len(results)} did not finish within {RANK_TIMEOUT_S} s (collectives out of step?)")
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
    for r, res in enumerate(results):
        assert res.returncode == 0 or not check, f"rank {r} failed:\n{res.stderr[-3000:]}"
    return results


def boxes_target(seed: int) -> dict:
    g = torch.Generator().manual_seed(seed)
    xy = torch.rand(3, 2, generator=g) * 40
    boxes = torch.cat((xy, xy + 12 + torch.rand(3, 2, generator=g) * 20), dim=1)
    return {"boxes": boxes, "labels": torch.randint(0, NUM_CLASSES, (3,), generator=g)}


def empty_target() -> dict:
    return {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.long)}


def loss_inputs(loss: str, case: str, rank: int, step: int):
    """(raw, aux_raw, targets) of one rank at one step; `aux_raw` is None for "gfl". `one_empty`:
    one rank has no boxes (rank 1 at step 0, rank 0 at step 1); `both_empty`: no rank has any."""
    from nanodet_ghost.model.head.decode import featmap_sizes

    num_points = sum(h * w for h, w in featmap_sizes(INPUT_HW, STRIDES[loss]))
    g = torch.Generator().manual_seed(1000 * step + rank)
    raw, aux_raw = torch.randn(2, 2, num_points, NUM_CLASSES + 4 * (REG_MAX + 1), generator=g)
    has_boxes = case == "one_empty" and rank == step
    targets = [boxes_target(10 * step + rank), boxes_target(10 * step + rank + 5)] if has_boxes \
        else [empty_target(), empty_target()]
    return raw, (aux_raw if loss == "plus" else None), targets


def build_loss(loss: str):
    from nanodet_ghost.model.loss.gfl_loss import GFLLoss
    from nanodet_ghost.model.loss.plus_loss import NanoDetPlusLoss

    if loss == "plus":
        return NanoDetPlusLoss(NUM_CLASSES, STRIDES["plus"], REG_MAX)
    return GFLLoss(NUM_CLASSES, reg_max=REG_MAX)


def run_loss(loss: str, case: str, out_dir: Path, rank: int) -> None:
    calls = {"all_reduce": 0}
    all_reduce = dist.all_reduce

    def counting(*args, **kwargs):
        calls["all_reduce"] += 1
        return all_reduce(*args, **kwargs)

    dist.all_reduce = counting
    loss_fn = build_loss(loss)
    steps = []
    for step in range(2):
        raw, aux_raw, targets = loss_inputs(loss, case, rank, step)
        raw.requires_grad_(True)
        extra = {}
        if aux_raw is not None:
            extra["aux_raw"] = aux_raw.requires_grad_(True)
        calls["all_reduce"] = 0
        losses = loss_fn(raw, targets, INPUT_HW, **extra)
        losses["loss"].backward()
        steps.append({"losses": {k: v.detach() for k, v in losses.items()}, "grad": raw.grad,
                      "aux_grad": None if aux_raw is None else aux_raw.grad,
                      "all_reduces": calls["all_reduce"]})
    dist.all_reduce = all_reduce
    # If the ranks had issued different numbers of all-reduces, this one would pair with a loss
    # normaliser of the other rank (or time out) instead of summing 1 + 2.
    sentinel = torch.tensor([float(rank + 1)])
    dist.all_reduce(sentinel)
    torch.save({"steps": steps, "sentinel": sentinel.item()}, out_dir / f"rank{rank}.pt")


def run_validate(config: str, out_dir: Path) -> None:
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
    if argv[1] == "validate":
        run_validate(argv[2], Path(argv[3]))
        return 0
    loss, case, out_dir = argv[2], argv[3], Path(argv[4])
    dist.init_process_group("gloo", timeout=COLLECTIVE_TIMEOUT)
    try:
        run_loss(loss, case, out_dir, int(os.environ["RANK"]))
    finally:
        dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
