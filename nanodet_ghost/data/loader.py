"""`DetectionDataset` (source + pipeline), `build_dataset` (from the config), `build_dataloader`.

Randomness: each dataset copy draws augmentations from its own `np.random.Generator`. Once
`reseed(s)` was called (the training sampler does it before every epoch with a seed derived from
(run seed, epoch, rank)), each DataLoader worker started afterwards reseeds its copy from
`derive_seed(s, worker id)` (`worker_init_fn`), so an epoch's augmentations depend only on the run
seed, the epoch, the rank and the worker, and a resumed run replays them exactly. Without a reseed,
workers use torch's per-worker seed (drawn from the loader's generator). Persistent workers are
started once, for the first epoch, so they miss the later reseeds: their streams only continue.
"""
from __future__ import annotations

import dataclasses
import logging
import random
from typing import Any, Dict, Iterator, List, Optional, Sequence, Set

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf
from torch.utils.data import DataLoader, Dataset, Sampler, get_worker_info

from nanodet_ghost.data.base import DetectionSource
from nanodet_ghost.data.collate import collate
from nanodet_ghost.data.image_io import DEFAULT_MAX_MISSING_FRACTION, ImageReadError, max_missing_fraction
from nanodet_ghost.data.pipeline import Pipeline, Record, Sample, TrainPipeline, ValPipeline

logger = logging.getLogger(__name__)

SPLITS = ("train", "val", "test")
# What a dataset does with an image that cannot be read (see `DetectionDataset`).
UNREADABLE_POLICIES = ("substitute", "mark", "raise")


def unreadable_sample(image_id: int, file_name: str, problem: str) -> Sample:
    """The sample that stands for an unreadable image under `unreadable="mark"`: no `img`, only
    `unreadable=problem` and `meta=dict(image_id, file_name)`; `collate` moves it to
    `batch["dropped"]`."""
    return dict(unreadable=problem, meta=dict(image_id=int(image_id), file_name=str(file_name)))


class DetectionDataset(Dataset):
    """Samples of a source through a pipeline (docs/contracts.md "Samples"; arrays are numpy).

    Args:
        source: raw-record source (`load_image(i)`, `get_annotation(i)`, `class_names`, ...).
        pipeline: `TrainPipeline` or `ValPipeline`.
        unreadable: what to do when an image cannot be read (`ImageReadError`):
            "substitute" (training): log a warning once per file, count it and use another random
            image, so that one bad file does not stop a run; "mark" (evaluation): return
            `unreadable_sample(...)` so that the evaluator drops the image and its ground truth;
            "raise": raise the `ImageReadError`.
        max_consecutive_failures: raise after this many unreadable images in a row (e.g. a
            wrong image folder) when substituting, rather than looping forever.
        seed: seed of the augmentation generator (a DataLoader worker reseeds its copy).

    Attributes `num_read_errors` (failed reads) and `bad_files` (their paths) count what this
    process saw; with DataLoader workers each worker counts its own.
    """

    def __init__(self, source: DetectionSource, pipeline: Pipeline,
                 unreadable: str = "substitute", max_consecutive_failures: int = 20,
                 seed: Optional[int] = None) -> None:
        if unreadable not in UNREADABLE_POLICIES:
            raise ValueError(f"unreadable must be one of {UNREADABLE_POLICIES}, got {unreadable!r}")
        self.source = source
        self.pipeline = pipeline
        self.unreadable = unreadable
        self.max_consecutive_failures = max_consecutive_failures
        self.rng = np.random.default_rng(seed)
        self.augment_seed: Optional[int] = None  # the last `reseed`; DataLoader workers derive theirs from it
        self.num_read_errors = 0
        self.bad_files: Set[str] = set()

    @property
    def class_names(self) -> List[str]:
        return list(self.source.class_names)

    def __len__(self) -> int:
        return len(self.source)

    def reseed(self, seed: int) -> None:
        """Restart the augmentation generator from `seed`; DataLoader workers started after this
        derive their generators from `seed` and their id (`worker_init_fn`)."""
        self.rng = np.random.default_rng(seed)
        self.augment_seed = int(seed)

    def __getitem__(self, index: int) -> Sample:
        index = int(index)
        if self.unreadable == "mark":
            try:
                img = self.source.load_image(index)
            except ImageReadError as exc:
                self._count_error(exc)
                ann = self.source.get_annotation(index)
                return unreadable_sample(ann["image_id"], ann["file_name"], exc.problem)
            ann = self.source.get_annotation(index)
        else:
            img, ann = self._load(index)
        extra = [self._load(int(self.rng.integers(len(self))))
                 for _ in range(self.pipeline.num_extra_images(self.rng))]
        return self.pipeline(img, ann, self.rng, extra)

    def _load(self, index: int) -> Record:
        """(image, annotation) of `index`, or of random substitutes while images fail to read."""
        for _ in range(self.max_consecutive_failures):
            try:
                return self.source.load_image(index), self.source.get_annotation(index)
            except ImageReadError as exc:
                if self.unreadable == "raise":
                    raise
                if self._count_error(exc):
                    logger.warning("skipping unreadable image (%s); a random other image is used "
                                   "instead (%d read errors so far)", exc, self.num_read_errors)
                index = int(self.rng.integers(len(self)))
        raise ImageReadError(
            getattr(self.source, "name", "dataset"),
            f"{self.max_consecutive_failures} images in a row could not be read "
            f"(e.g. {sorted(self.bad_files)[:3]}); check the image folder")

    def _count_error(self, exc: ImageReadError) -> bool:
        """Count a failed read; True the first time this file fails in this process."""
        self.num_read_errors += 1
        path = getattr(exc, "path", str(exc))
        first = path not in self.bad_files
        self.bad_files.add(path)
        return first


def _as_dict(node: Any) -> Dict[str, Any]:
    if isinstance(node, DictConfig):
        return OmegaConf.to_container(node, resolve=True)  # type: ignore[return-value]
    if dataclasses.is_dataclass(node):
        return dataclasses.asdict(node)
    return dict(node)


def build_pipeline(data_cfg: Any, train: bool) -> Pipeline:
    """`TrainPipeline` (with `data.augment`, at `data.train_input_size` when set) or `ValPipeline`
    (at `data.input_size`) from the `data:` config node."""
    size = data_cfg.input_size
    if train and getattr(data_cfg, "train_input_size", None):
        size = data_cfg.train_input_size
    common = dict(input_size=list(size), keep_ratio=bool(data_cfg.keep_ratio),
                  mean=list(data_cfg.mean), std=list(data_cfg.std))
    if train:
        return TrainPipeline(**common, **_as_dict(data_cfg.augment))
    return ValPipeline(**common)


def build_source_for(dataset_cfg: Any, class_names: Sequence[str],
                     split: str = "train", cache_labels: bool = False) -> DetectionSource:
    """The source of the `data.<split>` node; format `synthetic` is handled here (its own split
    defaults to `split`; generated, so never label-cached), the others by
    `nanodet_ghost.data.sources.build_source`."""
    if dataset_cfg.format == "synthetic":
        from nanodet_ghost.data.synthetic import SyntheticSource

        return SyntheticSource.from_config(dataset_cfg, class_names, default_split=split)
    from nanodet_ghost.data.sources import build_source

    return build_source(dataset_cfg, class_names, cache_labels=cache_labels)


def build_dataset(data_cfg: Any, split: str, seed: Optional[int] = None) -> DetectionDataset:
    """Dataset of `data.<split>` (`split` in train / val / test) from the `data:` config node.

    The train split gets the augmenting `TrainPipeline` and substitutes unreadable images; val
    and test get `ValPipeline` and mark them (`unreadable_sample`), so that evaluation drops them
    with their ground truth, or fails under `evaluation.strict`. A val / test split without any
    box logs a warning: its mAP can only be 0. With `data.cache_labels`, what the source verified
    is cached and reused (`nanodet_ghost.data.label_cache`).
    """
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got '{split}'")
    dataset_cfg = getattr(data_cfg, split, None)
    if dataset_cfg is None:
        raise ValueError(f"the config has no data.{split} section")
    limit = getattr(data_cfg, "max_missing_fraction", DEFAULT_MAX_MISSING_FRACTION)
    with max_missing_fraction(limit):  # the source keeps it: its reads in workers use it too
        source = build_source_for(dataset_cfg, list(data_cfg.class_names), split,
                                  cache_labels=bool(getattr(data_cfg, "cache_labels", False)))
    train = split == "train"
    if not train and getattr(source, "num_boxes", 1) == 0:
        logger.warning("%s: the %s split has %d images but no ground-truth boxes, so its mAP "
                       "will be 0; check data.%s (class_names, label files, keep_background)",
                       getattr(source, "name", split), split, len(source), split)
    return DetectionDataset(source, build_pipeline(data_cfg, train),
                            unreadable="substitute" if train else "mark", seed=seed)


def derive_seed(*parts: int) -> int:
    """A 64-bit seed mixed from integers, e.g. (seed, epoch, rank) or (seed, worker id): nearby
    inputs give unrelated seeds (numpy `SeedSequence`; negative parts are taken modulo 2**64)."""
    return int(np.random.SeedSequence([int(p) % 2**64 for p in parts]).generate_state(1, np.uint64)[0])


def worker_init_fn(worker_id: int) -> None:
    """Seed numpy, `random` and the worker's dataset copy: from (the dataset's `augment_seed`,
    worker id) after a `reseed`, else from torch's per-worker seed."""
    info = get_worker_info()
    dataset = info.dataset if info is not None else None
    base = getattr(dataset, "augment_seed", None)
    if base is not None:
        seed = derive_seed(base, worker_id)
    else:
        seed = info.seed if info is not None else torch.initial_seed()
    np.random.seed(seed % 2**32)
    random.seed(seed)
    # No cv2.setNumThreads() here: in a forked worker it can deadlock on the thread pool that was
    # copied from the parent (seen with OpenCV 5, pthreads backend).
    if hasattr(dataset, "reseed"):
        dataset.reseed(seed)


class _IteratorStartedAtFirstBatch:
    """The DataLoader's iterator, created (workers started, first indices drawn) at the first
    `next()` rather than at `iter()`."""

    def __init__(self, loader: DataLoader) -> None:
        self.loader = loader
        self.iterator: Optional[Iterator] = None

    def __iter__(self) -> "_IteratorStartedAtFirstBatch":
        return self

    def __next__(self) -> Any:
        if self.iterator is None:
            self.iterator = DataLoader.__iter__(self.loader)
        return next(self.iterator)


class EpochSeededDataLoader(DataLoader):
    """A DataLoader whose workers start at the first batch of an epoch, not when it is iterated.

    Lightning (2.x) creates the iterator of the first epoch of every `fit` during setup, before
    it calls `sampler.set_epoch`: the workers would then copy the dataset, and the sampler would
    draw its order, with the seeds of epoch 0, also when a resumed run starts at epoch 5. Started
    at the first batch, they see the epoch's seeds.
    """

    def __iter__(self) -> Iterator:  # type: ignore[override]
        return _IteratorStartedAtFirstBatch(self)


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
    """DataLoader with `collate` and per-worker seeding (`worker_init_fn`).

    `seed` seeds the loader's generator (the shuffle order, torch's worker seeds); with
    `num_workers=0` it reseeds the dataset's own generator. A given `sampler` replaces `shuffle`;
    one that reseeds the dataset each epoch (`trainer.datamodule.EpochSeededSampler`) makes the
    augmentations of every epoch reproducible with workers too, unless they are persistent; the
    loader is then an `EpochSeededDataLoader`.
    """
    generator = torch.Generator()
    generator.manual_seed(int(seed))
    if num_workers == 0 and hasattr(dataset, "reseed"):
        dataset.reseed(int(seed))
    loader_class = EpochSeededDataLoader if hasattr(sampler, "set_epoch") and num_workers > 0 else DataLoader
    return loader_class(
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
