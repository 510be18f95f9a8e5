"""Helpers of the inference / export tests: a random but well-conditioned detector, a
Lightning-format checkpoint, and a tolerant comparison of two detection lists."""
from __future__ import annotations

from pathlib import Path
from typing import List, Sequence

import cv2
import numpy as np
import torch

from nanodet_ghost.config import load_config
from nanodet_ghost.inference.common import Detections, preprocess_batch
from nanodet_ghost.model import build_model
from nanodet_ghost.paths import CONFIG_DIR

CONFIG = CONFIG_DIR / "nanodet_ghost_320.yml"


def make_cfg(*overrides: str):
    return load_config(CONFIG, list(overrides))


@torch.no_grad()
def calibrated_model(cfg, images: Sequence[np.ndarray], seed: int = 0, class_bias: float = -3.0,
                     predictor_std: float = 0.05) -> torch.nn.Module:
    """A randomly initialised detector whose BatchNorm layers have non-trivial statistics.

    BN affine parameters are randomised, then the running statistics are computed from one
    train-mode pass over `images` (so activations stay well scaled through the network and the
    fusion has real work to do); the head's class outputs get weights of `predictor_std` and a
    bias of `class_bias` so that some scores pass moderate thresholds. Returned in eval mode.
    """
    torch.manual_seed(seed)
    model = build_model(cfg.model)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.weight.uniform_(0.5, 1.5)
            m.bias.normal_(0.0, 0.2)
            m.reset_running_stats()
            m.momentum = None  # cumulative average over the calibration pass
    batch, _ = preprocess_batch(images, list(cfg.data.input_size), bool(cfg.data.keep_ratio),
                                list(cfg.data.mean), list(cfg.data.std))
    model.train()
    model(torch.from_numpy(batch))
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.momentum = 0.1
    num_classes = model.num_classes
    for predictor in model.head.predictors:
        predictor.weight.normal_(0.0, predictor_std)
        predictor.bias[:num_classes] = class_bias
    return model.eval()


def read_images(paths: Sequence[Path]) -> List[np.ndarray]:
    return [cv2.imread(str(p)) for p in paths]


def save_lightning_checkpoint(model: torch.nn.Module, path: Path, ema_model: torch.nn.Module = None) -> Path:
    """What tools/train.py writes: `{"state_dict": {"model.<k>": v, "ema.module.<k>": v}}`.

    `ema_model` (default: `model`) provides the EMA weights."""
    ema_model = ema_model if ema_model is not None else model
    state = {f"model.{k}": v.clone() for k, v in model.state_dict().items()}
    state.update({f"ema.module.{k}": v.clone() for k, v in ema_model.state_dict().items()})
    torch.save({"state_dict": state, "epoch": 1, "global_step": 10}, path)
    return path


def assert_same_detections(a: Detections, b: Detections, box_atol: float = 1e-2,
                           score_atol: float = 1e-4) -> None:
    """Same detections up to float noise: equal counts, and every detection of `a` has its own
    partner in `b` with the same label, a box within `box_atol` px and a score within `score_atol`
    (order may differ only between detections whose scores are within `score_atol`)."""
    assert len(a) == len(b), f"{len(a)} vs {len(b)} detections"
    used = np.zeros(len(b), bool)
    for k in range(len(a)):
        close = (~used & (b.labels == a.labels[k]) & (np.abs(b.scores - a.scores[k]) <= score_atol)
                 & (np.abs(b.boxes - a.boxes[k]).max(axis=1) <= box_atol))
        assert close.any(), (f"detection {k} (label {a.labels[k]}, score {a.scores[k]:.6f}, box {a.boxes[k]}) "
                             "has no partner")
        used[np.argmax(close)] = True
    assert np.all(np.diff(a.scores) <= 0) and np.all(np.diff(b.scores) <= 0), "not sorted by score"
