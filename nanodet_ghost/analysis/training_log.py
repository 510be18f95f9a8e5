"""A run's CSV logs (Lightning's `CSVLogger`, `save_dir/logs/version_N/metrics.csv`) as per-epoch
series, for `results.png`.

A resumed run logs into a new `version_N`; the versions are read in order and a later one
replaces the epochs it logged again. Train losses are logged per step and averaged per epoch;
validation metrics are logged once per validated epoch; the learning rate (LearningRateMonitor,
rows without an epoch) is the last value logged up to the epoch's last training step.
"""
from __future__ import annotations

import csv
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

logger = logging.getLogger(__name__)

PathLike = Union[str, Path]


@dataclass
class EpochSeries:
    """`series[name] = (epochs [E] int, values [E] float)`, sorted by epoch; names as logged
    (`train/loss`, `val/mAP`, `lr-AdamW/pg1`, ...)."""

    series: Dict[str, Tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)

    def get(self, name: str) -> Optional[Tuple[np.ndarray, np.ndarray]]:
        return self.series.get(name)

    def names(self, prefix: str = "") -> List[str]:
        return sorted(n for n in self.series if n.startswith(prefix))


def metrics_files(save_dir: PathLike) -> List[Path]:
    """`save_dir/logs/version_N/metrics.csv`, by increasing N."""
    def version(p: Path) -> int:
        tail = p.parent.name[len("version_"):]
        return int(tail) if tail.isdigit() else -1

    return sorted(Path(save_dir).glob("logs/version_*/metrics.csv"), key=version)


def _float(text: Optional[str]) -> Optional[float]:
    if text is None or text == "":
        return None
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def _read_rows(path: Path) -> List[Dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def _one_version(rows: Sequence[Dict[str, str]]) -> Dict[str, Dict[int, float]]:
    """name -> {epoch: value} for one metrics.csv."""
    sums: Dict[str, Dict[int, List[float]]] = {}
    last_step: Dict[int, float] = {}
    lr_rows: List[Tuple[float, str, float]] = []
    for row in rows:
        epoch, step = _float(row.get("epoch")), _float(row.get("step"))
        for name, text in row.items():
            value = _float(text)
            if name in ("epoch", "step") or value is None:
                continue
            if epoch is None:  # LearningRateMonitor rows carry a step only
                if step is not None:
                    lr_rows.append((step, name, value))
                continue
            sums.setdefault(name, {}).setdefault(int(epoch), []).append(value)
        if epoch is not None and step is not None and any(
                k.startswith("train/") and _float(v) is not None for k, v in row.items()):
            last_step[int(epoch)] = max(last_step.get(int(epoch), -1.0), step)
    out = {name: {e: float(np.mean(v)) for e, v in by_epoch.items()} for name, by_epoch in sums.items()}
    lr_rows.sort(key=lambda r: r[0])
    for name in sorted({n for _, n, _ in lr_rows}):
        steps = np.array([s for s, n, _ in lr_rows if n == name])
        values = [v for _, n, v in lr_rows if n == name]
        for epoch, end in last_step.items():
            i = int(np.searchsorted(steps, end, side="right")) - 1
            if i >= 0:
                out.setdefault(name, {})[epoch] = values[i]
    return out


def read_training_log(save_dir: PathLike) -> EpochSeries:
    """Per-epoch series of every version's metrics.csv under `save_dir/logs` (empty when there
    is none; an unreadable file is skipped with a warning naming it)."""
    merged: Dict[str, Dict[int, float]] = {}
    for path in metrics_files(save_dir):
        try:
            version = _one_version(_read_rows(path))
        except (OSError, UnicodeDecodeError, csv.Error) as exc:
            logger.warning("skipping training log %s: %s", path, exc)
            continue
        for name, by_epoch in version.items():
            merged.setdefault(name, {}).update(by_epoch)
    result = EpochSeries()
    for name, by_epoch in merged.items():
        epochs = np.array(sorted(by_epoch), np.int64)
        result.series[name] = (epochs, np.array([by_epoch[e] for e in epochs], np.float64))
    return result
