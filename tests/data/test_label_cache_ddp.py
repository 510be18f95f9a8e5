"""Label cache under 2-process gloo: in the DataModule's setup, rank 0 reads the annotations and
rank 1 waits and reads the cache; a source built on rank 0 alone (as the final evaluation does)
does not wait for the others; a dataset error on rank 0 is raised on both ranks without a hang."""
from __future__ import annotations

import json
import time
from datetime import timedelta
from pathlib import Path

import torch.distributed as dist
import torch.multiprocessing as mp
from omegaconf import OmegaConf

from nanodet_ghost.data.base import DatasetError
from nanodet_ghost.data.coco import CocoSource
from nanodet_ghost.data.config import DataConfig
from nanodet_ghost.data.loader import build_dataset
from nanodet_ghost.trainer.datamodule import DetectionDataModule

from label_cache_helpers import CLASSES, age, write_coco

DEADLINE_S = 180  # two cold interpreters on two busy cores


def _data_config(data_root: str) -> OmegaConf:
    cfg = OmegaConf.structured(DataConfig)
    cfg.class_names = CLASSES
    for split in ("train", "val"):
        cfg[split].root = str(Path(data_root) / "images")
        cfg[split].ann_file = str(Path(data_root) / "annotations" / "instances.json")
    return cfg


def _worker(rank: int, init_file: str, data_root: str, out_dir: str) -> None:
    reads = []
    original = CocoSource._read

    def counted(self, *args):
        reads.append(rank)
        if rank == 0:
            time.sleep(1.0)  # rank 1 must wait for this, not race it
        return original(self, *args)

    CocoSource._read = counted
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=2,
                            timeout=timedelta(seconds=60))
    try:
        cfg = _data_config(data_root)
        result = dict(rank=rank)
        try:
            datamodule = DetectionDataModule(cfg, seed=0)
            datamodule.setup("fit")
            source = datamodule.train_set.source
            result.update(images=len(source), boxes=source.num_boxes, cache=source.label_cache,
                          summary=source.summary(), val_cache=datamodule.val_set.source.label_cache)
            if rank == 0:  # alone, while rank 1 waits at the barrier below
                result.update(alone=len(build_dataset(cfg, "val")))
        except DatasetError as exc:
            result.update(error=str(exc))
        dist.barrier()
        result.update(reads=len(reads))
        (Path(out_dir) / f"rank{rank}.json").write_text(json.dumps(result))
    finally:
        dist.destroy_process_group()


def _run(tmp_path: Path, data_root: Path) -> list:
    out = tmp_path / "out"
    out.mkdir()
    ctx = mp.spawn(_worker, args=(str(tmp_path / "store"), str(data_root), str(out)), nprocs=2,
                   join=False)
    deadline = time.monotonic() + DEADLINE_S
    while not ctx.join(timeout=5):
        if time.monotonic() > deadline:
            for p in ctx.processes:
                p.kill()
            raise AssertionError(f"gloo ranks did not finish in {DEADLINE_S} s")
    return [json.loads((out / f"rank{r}.json").read_text()) for r in (0, 1)]


def test_rank_zero_builds_the_others_read(tmp_path: Path) -> None:
    paths = write_coco(tmp_path / "ds", num_images=5)
    age(tmp_path / "ds")
    rank0, rank1 = _run(tmp_path, tmp_path / "ds")
    # rank 0 read the json once (train); its val split and everything on rank 1 came from the cache
    assert rank0["reads"] == 1 and rank1["reads"] == 0
    assert rank0["cache"] and rank1["cache"] == rank0["cache"] == rank1["val_cache"]
    assert Path(rank0["cache"]).parent == paths["ann_file"].parent / ".nanodet_cache"
    for key in ("images", "boxes", "summary"):
        assert rank0[key] == rank1[key]
    assert rank0["images"] == 5 and rank0["alone"] == 5


def test_error_on_rank_zero_reaches_every_rank(tmp_path: Path) -> None:
    paths = write_coco(tmp_path / "ds", num_images=2)
    paths["ann_file"].write_text('{"images": [}')
    age(tmp_path / "ds")
    results = _run(tmp_path, tmp_path / "ds")
    for r in results:
        assert "invalid JSON" in r["error"] and r["reads"] == 1
