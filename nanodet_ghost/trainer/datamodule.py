"""LightningDataModule over `nanodet_ghost.data`: datasets, loaders and the validation evaluator."""
from __future__ import annotations

import logging
from typing import Any, Iterator, Optional

import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, Sampler

from nanodet_ghost.data.loader import DetectionDataset, build_dataloader, build_dataset
from nanodet_ghost.evaluation import CocoEvaluator

logger = logging.getLogger(__name__)


class EpochSeededSampler(Sampler[int]):
    """Random order drawn from `seed + epoch`, and the dataset's augmentation stream reseeded the
    same way, so a run resumed at an epoch boundary sees exactly the batches of an unbroken run.
    Lightning calls `set_epoch` before every epoch.
    """

    def __init__(self, dataset: DetectionDataset, seed: int) -> None:
        self.dataset = dataset
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        if hasattr(self.dataset, "reseed"):
            self.dataset.reseed(self.seed * 1000 + epoch)

    def __iter__(self) -> Iterator[int]:
        generator = torch.Generator().manual_seed(self.seed * 1000 + self.epoch)
        return iter(torch.randperm(len(self.dataset), generator=generator).tolist())

    def __len__(self) -> int:
        return len(self.dataset)


class DetectionDataModule(pl.LightningDataModule):
    """Args: the `data:` config section, the run's seed, and the split validated each epoch."""

    def __init__(self, data_cfg: Any, seed: int = 42, val_split: str = "val") -> None:
        super().__init__()
        self.data_cfg = data_cfg
        self.seed = seed
        self.val_split = val_split
        self.train_set: Optional[DetectionDataset] = None
        self.val_set: Optional[DetectionDataset] = None

    def setup(self, stage: str = "fit") -> None:
        if stage == "fit" and self.train_set is None:
            self.train_set = build_dataset(self.data_cfg, "train", seed=self.seed)
        if self.val_set is None:
            self.val_set = build_dataset(self.data_cfg, self.val_split)

    def build_evaluator(self) -> CocoEvaluator:
        self.setup("validate")
        source = self.val_set.source
        return CocoEvaluator(source.to_coco(), source.category_ids, source.class_names)

    def _distributed(self) -> bool:
        trainer = getattr(self, "trainer", None)
        return trainer is not None and trainer.world_size > 1

    def _rank(self) -> int:
        trainer = getattr(self, "trainer", None)
        return trainer.global_rank if trainer is not None else 0

    def train_dataloader(self) -> DataLoader:
        cfg = self.data_cfg
        # Under DDP, Lightning swaps in a DistributedSampler (seeded, epoch-aware) itself.
        sampler = None if self._distributed() else EpochSeededSampler(self.train_set, self.seed)
        return build_dataloader(
            self.train_set, batch_size=cfg.batch_size, num_workers=cfg.num_workers, shuffle=True,
            pin_memory=cfg.pin_memory, persistent_workers=cfg.persistent_workers,
            seed=self.seed + self._rank(),  # each DDP rank draws its own augmentations
            drop_last=len(self.train_set) > cfg.batch_size, sampler=sampler,
        )

    def val_dataloader(self) -> DataLoader:
        cfg = self.data_cfg
        return build_dataloader(
            self.val_set, batch_size=cfg.val_batch_size, num_workers=cfg.num_workers, shuffle=False,
            pin_memory=cfg.pin_memory, persistent_workers=cfg.persistent_workers, seed=self.seed,
        )
