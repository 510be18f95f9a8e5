"""Training order and augmentation seeds come from (seed, epoch, rank, worker) and nothing else."""
from typing import Any, Dict, List, Optional

import numpy as np
import torch
from torch.utils.data import Dataset

from nanodet_ghost.data.loader import EpochSeededDataLoader, build_dataloader
from nanodet_ghost.trainer.datamodule import DetectionDataModule, EpochSeededSampler

from trainer_helpers import tiny_config


class Draws(Dataset):
    """Each sample reports the worker that made it and one draw of the dataset's generator."""

    def __init__(self, n: int = 8) -> None:
        self.n = n
        self.rng = np.random.default_rng(0)
        self.augment_seed: Optional[int] = None

    def reseed(self, seed: int) -> None:
        self.rng = np.random.default_rng(seed)
        self.augment_seed = seed

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> Dict[str, Any]:
        info = torch.utils.data.get_worker_info()
        return dict(img=np.zeros((3, 8, 8), np.float32), gt_boxes=np.zeros((0, 4)), gt_labels=np.zeros(0),
                    gt_ignore=np.zeros((0, 4)),
                    meta=dict(index=i, worker=info.id if info else -1, draw=float(self.rng.random())))


def _sampled(seed: int, epoch: int, rank: int, num_replicas: int = 2, n: int = 10):
    dataset = Draws(n)
    sampler = EpochSeededSampler(dataset, seed, num_replicas=num_replicas, rank=rank)
    sampler.set_epoch(epoch)
    return list(sampler), dataset.augment_seed


def test_order_and_dataset_seed_follow_seed_epoch_and_rank():
    order0, seed0 = _sampled(3, epoch=4, rank=0)
    order1, seed1 = _sampled(3, epoch=4, rank=1)
    assert sorted(order0 + order1) == list(range(10))  # the ranks share the epoch out
    assert seed0 != seed1
    assert _sampled(3, epoch=4, rank=0) == (order0, seed0)  # nothing else enters
    assert _sampled(3, epoch=5, rank=0) != (order0, seed0)
    assert _sampled(4, epoch=4, rank=0) != (order0, seed0)


def _epoch_draws(loader_seed: int, epoch: int) -> List[tuple]:
    dataset = Draws()
    sampler = EpochSeededSampler(dataset, seed=7)
    loader = build_dataloader(dataset, batch_size=1, num_workers=2, shuffle=True, seed=loader_seed, sampler=sampler)
    assert isinstance(loader, EpochSeededDataLoader)
    iterator = iter(loader)  # as Lightning does before `set_epoch` on a fit's first epoch
    sampler.set_epoch(epoch)
    return [(b["metas"][0]["index"], b["metas"][0]["worker"], b["metas"][0]["draw"]) for b in iterator]


def test_worker_seeds_come_from_the_epoch_not_the_loader():
    draws = _epoch_draws(loader_seed=1, epoch=2)
    assert {worker for _, worker, _ in draws} == {0, 1}
    first = {w: next(d for _, ww, d in draws if ww == w) for w in (0, 1)}
    assert first[0] != first[1]  # workers draw different augmentations
    assert _epoch_draws(loader_seed=99, epoch=2) == draws  # torch's loader seed plays no part
    assert _epoch_draws(loader_seed=1, epoch=3) != draws


def test_persistent_workers_are_warned_about(tiny_coco, tmp_path, caplog):
    for persistent in (False, True):
        cfg = tiny_config(tiny_coco, tmp_path / f"p{persistent}",
                          ["data.num_workers=1", f"data.persistent_workers={str(persistent).lower()}"])
        datamodule = DetectionDataModule(cfg.data, seed=0)
        datamodule.setup("fit")
        caplog.clear()
        datamodule.train_dataloader()
        assert ("does not replay the augmentations" in caplog.text) == persistent
