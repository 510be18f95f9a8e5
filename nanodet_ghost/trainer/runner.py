"""Build a Lightning Trainer from the config and run training, resume and the final evaluation."""
from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import pytorch_lightning as pl
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.callbacks import Callback, LearningRateMonitor, ModelCheckpoint, TQDMProgressBar
from pytorch_lightning.loggers import CSVLogger, TensorBoardLogger

from nanodet_ghost.config import ConfigError, to_yaml
from nanodet_ghost.evaluation import evaluate_checkpoint
from nanodet_ghost.model import build_model
from nanodet_ghost.model.weights import load_for_finetune, read_checkpoint
from nanodet_ghost.trainer.callbacks import DetectorSummary, ValidateBeforeStop
from nanodet_ghost.trainer.checkpoint import AtomicCheckpointIO
from nanodet_ghost.trainer.datamodule import DetectionDataModule
from nanodet_ghost.trainer.module import DetectorModule
from nanodet_ghost.trainer.notices import hide_unactionable_notices
from nanodet_ghost.trainer.plot_callbacks import finish_run_plots, training_pictures
from nanodet_ghost.trainer.time_budget import TimeBudget, parse_duration

logger = logging.getLogger(__name__)

CHECKPOINT_DIR = "checkpoints"
BEST_NAME = "best"
LAST_NAME = "last"


class ClassCountError(ValueError):
    """The config's class count disagrees with its class names or its dataset."""


@dataclass
class TrainResult:
    save_dir: Path
    best_checkpoint: Optional[Path]
    last_checkpoint: Optional[Path]
    final_eval: Optional[Dict[str, Any]]
    is_global_zero: bool = True


def check_class_count(cfg: DictConfig, datamodule: DetectionDataModule) -> None:
    """Fail before training when the head, the config's class names and the dataset disagree."""
    num_classes = cfg.model.head.num_classes
    names = list(cfg.data.class_names)
    if num_classes != len(names):
        raise ClassCountError(
            f"model.head.num_classes is {num_classes} but data.class_names lists {len(names)} names; "
            "set them to agree (a fine-tuned head is rebuilt for the new count automatically)"
        )
    for split_name, dataset in (("train", datamodule.train_set), ("val", datamodule.val_set)):
        if dataset is None:
            continue
        source_names = list(dataset.source.class_names)
        if len(source_names) != num_classes:
            raise ClassCountError(
                f"data.{split_name} has {len(source_names)} classes {source_names[:10]} but "
                f"model.head.num_classes is {num_classes}"
            )


def resolve_resume(save_dir: Path, resume: Optional[str]) -> Optional[str]:
    """The checkpoint to resume from: `resume` is a path, or "last" for the run's own last.ckpt."""
    if resume is None:
        return None
    path = save_dir / CHECKPOINT_DIR / f"{LAST_NAME}.ckpt" if resume == "last" else Path(resume)
    if not path.is_file():
        raise FileNotFoundError(f"cannot resume: checkpoint {path} does not exist")
    read_checkpoint(path)  # refuse unsafe or broken files before Lightning touches them
    return str(path)


def build_module(cfg: DictConfig) -> DetectorModule:
    """The detector of `cfg.model` (with `train.load_from` weights) in a `DetectorModule`."""
    train = cfg.train
    model = build_model(cfg.model)
    if train.load_from:
        load_for_finetune(model, train.load_from)  # before the module copies it into the EMA
    return DetectorModule(
        model,
        optimizer=OmegaConf.to_container(train.optimizer, resolve=True),
        scheduler=OmegaConf.to_container(train.scheduler, resolve=True),
        ema_decay=train.ema_decay,
        ema_warmup=train.ema_warmup,
        nonfinite_patience=train.nonfinite_patience,
        channels_last=train.channels_last,
    )


def next_log_version(log_root: Path) -> str:
    numbers = [int(p.name[len("version_"):]) for p in log_root.glob("version_*") if p.name[len("version_"):].isdigit()]
    return f"version_{max(numbers, default=-1) + 1}"


def time_budget_callback(train: DictConfig) -> List[Callback]:
    """`[TimeBudget]` when `train.time_budget` is set, else `[]`."""
    if not train.time_budget:
        return []
    try:
        budget_s = parse_duration(train.time_budget)
    except ValueError as exc:
        raise ConfigError(f"train.time_budget: {exc}") from None
    validations = max(1, round(train.max_epochs / max(train.val_interval, 1)))
    logger.info("train.time_budget=%s sizes the run from the measured pace: max_epochs=%d is only the first "
                "guess (train.time_budget=null trains for exactly max_epochs)", train.time_budget, train.max_epochs)
    return [TimeBudget(budget_s, validations=validations)]


def build_trainer(cfg: DictConfig, save_dir: Path, extra_callbacks: Sequence[Callback] = ()) -> pl.Trainer:
    train = cfg.train
    checkpoint_dir = save_dir / CHECKPOINT_DIR
    callbacks = [
        ModelCheckpoint(dirpath=checkpoint_dir, filename=BEST_NAME, monitor=cfg.evaluation.metric, mode="max",
                        save_top_k=1, auto_insert_metric_name=False, enable_version_counter=False),
        ModelCheckpoint(dirpath=checkpoint_dir, filename=LAST_NAME, save_top_k=1, every_n_epochs=1,
                        save_on_train_epoch_end=True, enable_version_counter=False),
        *time_budget_callback(train),  # before ValidateBeforeStop: it may end the run at this epoch
        ValidateBeforeStop(),  # the weights a run stops with can become best.ckpt
        LearningRateMonitor(logging_interval="step"),
        TQDMProgressBar(refresh_rate=max(1, train.log_every_n_steps)),
        DetectorSummary(cfg.data.input_size),
        *extra_callbacks,
    ]
    # Each run (and each resume) logs into its own logs/version_N, so a resume never overwrites;
    # both loggers share that folder. The CSV logger comes first: it opens the folder when it is
    # still empty (Lightning opens the loggers in this order). Behind the TensorBoard logger it would
    # find the new event file there and warn that a previous run's logs "will be deleted".
    version = next_log_version(save_dir / "logs")
    loggers = [CSVLogger(save_dir=str(save_dir), name="logs", version=version),
               TensorBoardLogger(save_dir=str(save_dir), name="logs", version=version)]
    devices: Any = train.devices
    if isinstance(devices, str) and devices.isdigit():
        devices = int(devices)
    hide_unactionable_notices()
    return pl.Trainer(
        default_root_dir=str(save_dir),
        max_epochs=train.max_epochs,
        max_steps=train.max_steps,
        max_time=train.max_time,
        accelerator=train.accelerator,
        devices=devices,
        strategy=train.strategy,
        num_nodes=train.num_nodes,
        precision=train.precision,
        sync_batchnorm=train.sync_batchnorm,
        deterministic=train.deterministic,
        gradient_clip_val=train.grad_clip,
        gradient_clip_algorithm="norm",
        check_val_every_n_epoch=train.val_interval,
        log_every_n_steps=train.log_every_n_steps,
        callbacks=callbacks,
        logger=loggers,
        plugins=[AtomicCheckpointIO()],
        enable_model_summary=False,  # DetectorSummary logs our own
        num_sanity_val_steps=1,
    )


def _finite(value: float) -> Optional[float]:
    return value if math.isfinite(value) else None


def final_evaluation(cfg: DictConfig, checkpoint: Path, save_dir: Path) -> Dict[str, Any]:
    """Evaluate the best checkpoint on val (and test when configured); write final_eval.json."""
    report: Dict[str, Any] = {"checkpoint": str(checkpoint)}
    splits = ["val"] + (["test"] if cfg.data.test is not None else [])
    for split in splits:
        result = evaluate_checkpoint(cfg, checkpoint, split, out=save_dir / f"results_{split}.json")
        report[split] = {
            "mAP": result.map,
            "stats": list(result.stats),
            "per_class_ap": {k: _finite(v) for k, v in result.per_class_ap.items()},
            "num_images": result.num_images,
            "num_detections": result.num_detections,
        }
        logger.info("final %s evaluation of %s:\n%s\n%s", split, checkpoint.name, result.summary, result.table)
    (save_dir / "final_eval.json").write_text(json.dumps(report, indent=2))
    return report


def train(cfg: DictConfig, resume: Optional[str] = None, extra_callbacks: Sequence[Callback] = (),
          evaluate_at_end: bool = True) -> TrainResult:
    """Train as the config says; `resume` is a checkpoint path or "last"."""
    start = time.perf_counter()
    save_dir = Path(cfg.train.save_dir)
    save_dir.mkdir(parents=True, exist_ok=True)
    ckpt_path = resolve_resume(save_dir, resume)
    pl.seed_everything(cfg.train.seed, workers=True, verbose=False)

    datamodule = DetectionDataModule(cfg.data, seed=cfg.train.seed,
                                     strict_images=cfg.evaluation.strict,
                                     eval_backend=cfg.evaluation.backend)
    datamodule.setup("fit")
    check_class_count(cfg, datamodule)
    (save_dir / "config.yaml").write_text(to_yaml(cfg))

    module = build_module(cfg)
    pictures = training_pictures(cfg, save_dir) if cfg.train.plots else None
    trainer = build_trainer(cfg, save_dir, [*extra_callbacks, *([pictures] if pictures else [])])
    trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt_path)

    checkpoint_dir = save_dir / CHECKPOINT_DIR
    best = checkpoint_dir / f"{BEST_NAME}.ckpt"
    last = checkpoint_dir / f"{LAST_NAME}.ckpt"
    best = best if best.is_file() else (last if last.is_file() else None)
    report = None
    if evaluate_at_end and trainer.is_global_zero and best is not None:
        report = final_evaluation(cfg, best, save_dir)
    if pictures is not None and trainer.is_global_zero:
        finish_run_plots(cfg, save_dir, pictures, time.perf_counter() - start)
    return TrainResult(save_dir, best, last if last.is_file() else None, report, trainer.is_global_zero)
