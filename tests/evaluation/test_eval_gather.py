"""gather_predictions / gather_unreadable: no-ops alone, deduplicating merges under 2-process
gloo (CPU), called in the validation loop's order."""
from __future__ import annotations

import pickle
import time
from datetime import timedelta
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from nanodet_ghost.evaluation import gather_predictions, gather_unreadable

# rank 0 holds images 1, 2, 5; rank 1 holds 3, 4, 5 (5 = DistributedSampler padding repeat)
RANK_IDS = {0: [1, 2, 5], 1: [3, 4, 5]}
# unreadable images seen per rank: image 7 on both (padding), rank 0's description is kept
RANK_UNREADABLE = {0: {7: "g.jpg: cannot decode"}, 1: {3: "c.jpg: empty file", 7: "g.jpg: x"}}


def _pred(image_id: int, rank: int) -> dict:
    return dict(boxes=torch.full((2, 4), float(image_id)), scores=torch.tensor([0.9, 0.1 * rank]),
                labels=torch.tensor([image_id % 3, rank]))


def _worker(rank: int, init_file: str, out_dir: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=2,
                            timeout=timedelta(seconds=60))
    try:
        local = {torch.tensor(i) if i == 5 else i: _pred(i, rank) for i in RANK_IDS[rank]}
        merged = gather_predictions(local)
        unreadable = gather_unreadable(RANK_UNREADABLE[rank])
        with open(Path(out_dir) / f"rank{rank}.pkl", "wb") as f:
            pickle.dump((merged, unreadable), f)
    finally:
        dist.destroy_process_group()


def test_noop_without_process_group() -> None:
    local = {1: _pred(1, 0)}
    merged = gather_predictions(local)
    assert merged == local and merged[1] is local[1]
    unreadable = {5: "e.jpg: empty file"}
    assert gather_unreadable(unreadable) == unreadable


def test_two_process_gloo_dedups(tmp_path: Path) -> None:
    ctx = mp.spawn(_worker, args=(str(tmp_path / "store"), str(tmp_path)), nprocs=2, join=False)
    deadline = time.monotonic() + 120
    while not ctx.join(timeout=5):
        if time.monotonic() > deadline:
            for p in ctx.processes:
                p.kill()
            raise AssertionError("gloo workers did not finish in 120 s")
    gathered = [pickle.loads((tmp_path / f"rank{r}.pkl").read_bytes()) for r in (0, 1)]
    merged = [m for m, _ in gathered]
    for _, unreadable in gathered:  # every rank gets all of them, sorted by image id
        assert list(unreadable.items()) == [(3, "c.jpg: empty file"), (7, "g.jpg: cannot decode")]
    for m in merged:
        assert list(m) == [1, 2, 3, 4, 5]  # sorted, image 5 once
        assert all(type(k) is int for k in m)
        assert isinstance(m[3]["boxes"], np.ndarray)
        np.testing.assert_array_equal(m[3]["boxes"], np.full((2, 4), 3.0, np.float32))
        np.testing.assert_array_equal(m[5]["labels"], [2, 0])  # kept from rank 0
    np.testing.assert_array_equal(merged[0][4]["scores"], merged[1][4]["scores"])
