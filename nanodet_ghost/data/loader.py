"""`DetectionDataset` (source + pipeline), `build_dataset` (from the config), `build_dataloader`.

Randomness: each dataset copy draws augmentations from its own `np.random.Generator`. In a
DataLoader worker it is reseeded from torch's per-worker seed (`worker_init_fn`), which torch
derives from the loader's generator, so runs are reproducible from `seed` and workers differ.
"""
from __future__ import annotations

import dataclasses
import logging
import random
from typing import Any, Dict, List, Optional, Sequence, Set

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf
from torch.utils.data import DataLoader, Dataset, Sampler, get_worker_info

from nanodet_ghost.data.base import DetectionSource
from nanodet_ghost.data.collate import collate
from nanodet_ghost.data.image_io import ImageReadError
from nanodet_ghost.data.pipeline import Pipeline, Record, Sample, TrainPipeline, ValPipeline

logger = logging.getLogger(__name__)

SPLITS = ("train", "val", "test")


class DetectionDataset(Dataset):
    """Samples of a source through a pipeline (docs/contracts.md "Samples"; arrays are numpy).

    Args:
        source: raw-record source (`load_image(i)`, `get_annotation(i)`, `class_names`, ...).
        pipeline: `TrainPipeline` or `ValPipeline`.
        substitute_bad_images: when an image cannot be read (`ImageReadError`), log a warning
            once per file, count it and use another random image instead of raising, so that one
            bad file does not stop a training run. Evaluation datasets should raise instead.
        max_consecutive_failures: raise after this many unreadable images in a row (e.g. a
            wrong image folder), rather than looping forever.
        seed: seed of the augmentation generator (a DataLoader worker reseeds its copy).

    Attributes `num_read_errors` (failed reads) and `bad_files` (their paths) count what this
    process saw; with DataLoader workers each worker counts its own.
    """

    def __init__(self, source: DetectionSource, pipeline: Pipeline,
                 substitute_bad_images: bool = True, max_consecutive_failures: int = 20,
                 seed: Optional[int] = None) -> None:
        self.source = source
        self.pipeline = pipeline
        self.substitute_bad_images = substitute_bad_images
        self.max_consecutive_failures = max_consecutive_failures
        self.rng = np.random.default_rng(seed)
        self.num_read_errors = 0
        self.bad_files: Set[str] = set()

    @property
    def class_names(self) -> List[str]:
        return list(self.source.class_names)

    def __len__(self) -> int:
        return len(self.source)

    def reseed(self, seed: int) -> None:
        """Restart the augmentation generator from `seed`."""
        self.rng = np.random.default_rng(seed)

    def __getitem__(self, index: int) -> Sample:
        img, ann = self._load(int(index))
        extra = [self._load(int(self.rng.integers(len(self))))
                 for _ in range(self.pipeline.num_extra_images(self.rng))]
        return self.pipeline(img, ann, self.rng, extra)

    def _load(self, index: int) -> Record:
        """(image, annotation) of `index`, or of random substitutes while images fail to read."""
        for _ in range(self.max_consecutive_failures):
            try:
                return self.source.load_image(index), self.source.get_annotation(index)
            except ImageReadError as exc:
                if not self.substitute_bad_images:
                    raise
                self.num_read_errors += 1
                path = getattr(exc, "path", str(exc))
                if path not in self.bad_files:
                    self.bad_files.add(path)
                    logger.warning("skipping unreadable image (%s); a random other image is used "
                                   "instead (%d read errors so far)", exc, self.num_read_errors)
                index = int(self.rng.integers(len(self)))
        raise ImageReadError(
            getattr(self.source, "name", "dataset"),
            f"{self.max_consecutive_failures} images in a row could not be read "
            f"(e.g. {sorted(self.bad_files)[:3]}); check the image folder")


def _as_dict(node: Any) -> Dict[str, Any]:
    if isinstance(node, DictConfig):
        return OmegaConf.to_container(node, resolve=True)  # type: ignore[return-value]
    if dataclasses.is_dataclass(node):
        return dataclasses.asdict(node)
    return dict(node)


def build_pipeline(data_cfg: Any, train: bool) -> Pipeline:
    """`TrainPipeline` (with `data.augment`) or `ValPipeline` from the `data:` config node."""
    common = dict(input_size=list(data_cfg.input_size), keep_ratio=bool(data_cfg.keep_ratio),
                  mean=list(data_cfg.mean), std=list(data_cfg.std))
    if train:
        return TrainPipeline(**common, **_as_dict(data_cfg.augment))
    return ValPipeline(**common)


def build_source_for(dataset_cfg: Any, class_names: Sequence[str],
                     split: str = "train") -> DetectionSource:
    """The source of the `data.<split>` node; format `synthetic` is handled here (its own split
    defaults to `split`), the others by `nanodet_ghost.data.sources.build_source`."""
    if dataset_cfg.format == "synthetic":
        from nanodet_ghost.data.synthetic import SyntheticSource

        return SyntheticSource.from_config(dataset_cfg, class_names, default_split=split)
    from nanodet_ghost.data.sources import build_source

    return build_source(dataset_cfg, class_names)


def build_dataset(data_cfg: Any, split: str, seed: Optional[int] = None) -> DetectionDataset:
    """Dataset of `data.<split>` (`split` in train / val / test) from the `data:` config node.

    The train split gets the augmenting `TrainPipeline` and substitutes unreadable images; val
    and test get `ValPipeline` and raise on unreadable images (evaluation must see every image).
    """
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got '{split}'")
    dataset_cfg = getattr(data_cfg, split, None)
    if dataset_cfg is None:
        raise ValueError(f"the config has no data.{split} section")
    source = build_source_for(dataset_cfg, list(data_cfg.class_names), split)
    train = split == "train"
    return DetectionDataset(source, build_pipeline(data_cfg, train),
                            substitute_bad_images=train, seed=seed)


def worker_init_fn(worker_id: int) -> None:
    """Seed numpy, `random` and the worker's dataset copy from torch's per-worker seed."""
    info = get_worker_info()
    seed = info.seed if info is not None else torch.initial_seed()
    np.random.seed(seed % 2**32)
    random.seed(seed)
    # No cv2.setNumThreads() here: in a forked worker it can deadlock on the thread pool that was
    # copied from the parent (seen with OpenCV 5, pthreads backend).
    dataset = info.dataset if info is not None else None
    if hasattr(dataset, "reseed"):
        dataset.reseed(seed)


def build_dataloader(
    dataset: Dataset,
    batch_size: int,
    num_workers: int,
    shuffle: bool,
    pin_memory: bool = False,
    persistent_workers: bool = False,
    seed: int = 0,
    drop_last: bool = False,
    sampler: Optional[Sampler] = None,
) -> DataLoader:
    """DataLoader with `collate` and per-worker seeding.

    `seed` seeds the shuffle order and, through torch's worker seeds, the augmentations; with
    `num_workers=0` it reseeds the dataset's own generator. A given `sampler` replaces `shuffle`.
    """
    generator = torch.Generator()
    generator.manual_seed(int(seed))
    if num_workers == 0 and hasattr(dataset, "reseed"):
        dataset.reseed(int(seed))
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=shuffle if sampler is None else False,
        sampler=sampler,
        num_workers=num_workers,
        collate_fn=collate,
        pin_memory=pin_memory,
        drop_last=drop_last,
        worker_init_fn=worker_init_fn,
        generator=generator,
        persistent_workers=persistent_workers and num_workers > 0,
    )
