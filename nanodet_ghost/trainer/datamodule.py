"""LightningDataModule over `nanodet_ghost.data`: datasets, loaders and the validation evaluator."""
from __future__ import annotations

import logging
from typing import Any, Optional

import pytorch_lightning as pl
from torch.utils.data import DataLoader, DistributedSampler

from nanodet_ghost.data.label_cache import rank_zero_first
from nanodet_ghost.data.loader import DetectionDataset, build_dataloader, build_dataset, derive_seed
from nanodet_ghost.evaluation import CocoEvaluator

logger = logging.getLogger(__name__)


class EpochSeededSampler(DistributedSampler):
    """The training order and augmentations of an epoch, drawn from (seed, epoch, rank) alone.

    The order is `DistributedSampler`'s: a permutation drawn from `seed + epoch`, this rank's share
    of it (`num_replicas=1`: all of it). `set_epoch`, which Lightning calls before every epoch and
    before the epoch's DataLoader workers start, also reseeds the dataset with
    `derive_seed(seed, epoch, rank)`; each worker then derives its own generator from that and its
    id (`data.loader.worker_init_fn`). So a run resumed at an epoch boundary sees exactly the
    batches of an unbroken run, with or without workers, on one device or several. Not with
    `persistent_workers`: those workers start once, and later epochs continue their streams.

    Being a `DistributedSampler`, it is kept as it is under DDP (Lightning replaces other samplers).
    """

    def __init__(self, dataset: DetectionDataset, seed: int, num_replicas: int = 1, rank: int = 0) -> None:
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=True, seed=seed)

    def set_epoch(self, epoch: int) -> None:
        super().set_epoch(epoch)
        if hasattr(self.dataset, "reseed"):
            self.dataset.reseed(derive_seed(self.seed, epoch, self.rank))


class DetectionDataModule(pl.LightningDataModule):
    """Args: the `data:` config section, the run's seed, the split validated each epoch, and
    whether an unreadable validation image is an error (`evaluation.strict`) rather than dropped
    with its ground truth, and the COCOeval implementation (`evaluation.backend`)."""

    def __init__(self, data_cfg: Any, seed: int = 42, val_split: str = "val",
                 strict_images: bool = False, eval_backend: str = "pycocotools") -> None:
        super().__init__()
        self.data_cfg = data_cfg
        self.seed = seed
        self.val_split = val_split
        self.strict_images = strict_images
        self.eval_backend = eval_backend
        self.train_set: Optional[DetectionDataset] = None
        self.val_set: Optional[DetectionDataset] = None

    def setup(self, stage: str = "fit") -> None:
        if stage == "fit" and self.train_set is None:
            self.train_set = self._build("train", seed=self.seed)
        if self.val_set is None:
            self.val_set = self._build(self.val_split)

    def _build(self, split: str, seed: Optional[int] = None) -> DetectionDataset:
        """`build_dataset`; with `data.cache_labels` under an initialised process group (every
        rank runs `setup`), rank 0 first: it writes the label cache that the others then read."""
        if getattr(self.data_cfg, "cache_labels", False):
            return rank_zero_first(lambda: build_dataset(self.data_cfg, split, seed=seed))
        return build_dataset(self.data_cfg, split, seed=seed)

    def build_evaluator(self) -> CocoEvaluator:
        self.setup("validate")
        source = self.val_set.source
        return CocoEvaluator(source.to_coco(), source.category_ids, source.class_names,
                             strict_images=self.strict_images, backend=self.eval_backend)

    def _rank(self) -> int:
        trainer = getattr(self, "trainer", None)
        return trainer.global_rank if trainer is not None else 0

    def _world_size(self) -> int:
        trainer = getattr(self, "trainer", None)
        return trainer.world_size if trainer is not None else 1

    def train_dataloader(self) -> DataLoader:
        cfg = self.data_cfg
        if cfg.persistent_workers and cfg.num_workers > 0:
            logger.warning("data.persistent_workers=true: workers keep their augmentation streams across "
                           "epochs, so a resumed run does not replay the augmentations of an unbroken run")
        sampler = EpochSeededSampler(self.train_set, self.seed, self._world_size(), self._rank())
        return build_dataloader(
            self.train_set, batch_size=cfg.batch_size, num_workers=cfg.num_workers, shuffle=True,
            pin_memory=cfg.pin_memory, persistent_workers=cfg.persistent_workers,
            seed=self.seed,
            drop_last=len(self.train_set) > cfg.batch_size, sampler=sampler,
        )

    def val_dataloader(self) -> DataLoader:
        cfg = self.data_cfg
        return build_dataloader(
            self.val_set, batch_size=cfg.val_batch_size, num_workers=cfg.num_workers, shuffle=False,
            pin_memory=cfg.pin_memory, persistent_workers=cfg.persistent_workers, seed=self.seed,
        )
