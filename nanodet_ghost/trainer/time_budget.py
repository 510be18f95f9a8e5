"""Size a training run from the clock: as many epochs as fit in `train.time_budget`.

A fixed `max_epochs` with a `max_time` cap stops a slow machine before its learning rate has
annealed and before its last epochs were validated. `TimeBudget` measures the pace instead and
plans the run so that training plus validation end within the budget:

- after the first epoch, and whenever the measured pace drifts by more than `drift` from the
  pace of the last plan, it sets the number of epochs that still fit (growing the plan only with a
  small reserve to spare, shrinking it only when it no longer fits: `revise_plan`);
- the LR schedule (`LRSchedule`) is resized to end exactly on the last planned step, from the
  step it is at (warmup and the steps already taken are unchanged);
- validations are spaced so that about `validations` of them happen whatever the pace, counted
  back from the last epoch, which is always validated, and never bunched by a new plan
  (`validation_due`);
- the seconds already spent are checkpointed, so a resumed run finishes within the same budget.
"""
from __future__ import annotations

import logging
import math
import time
from typing import Any, Dict, List, Optional

import pytorch_lightning as pl
from pytorch_lightning.callbacks import Callback

logger = logging.getLogger(__name__)

_PACE_WINDOW = 3  # epochs averaged for the pace
# A plan grows only with this much of the budget to spare (see `revise_plan`): half an epoch or 1 %
_RESERVE_EPOCHS = 0.5
_RESERVE_SHARE = 0.01


def parse_duration(text: str) -> float:
    """Seconds of "DD:HH:MM:SS" (Lightning's `max_time` format), "HH:MM:SS" or "MM:SS"."""
    parts = str(text).strip().split(":")
    try:
        values = [float(p) for p in parts]
    except ValueError:
        values = []
    if not 2 <= len(values) <= 4 or any(v < 0 for v in values):
        raise ValueError(f"time budget '{text}' is not of the form DD:HH:MM:SS, HH:MM:SS or MM:SS")
    seconds = 0.0
    for value, unit in zip(reversed(values), (1, 60, 3600, 86400)):
        seconds += value * unit
    if seconds <= 0:
        raise ValueError(f"time budget '{text}' must be positive")
    return seconds


def plan_epochs(remaining_s: float, epoch_s: float, val_s: float, epochs_done: int,
                validations: int) -> int:
    """How many more epochs fit in `remaining_s`, validations included.

    Validations are spaced `interval(total, validations)` epochs apart, counted back from the last
    epoch, so `x` more epochs cost `x * epoch_s + ceil(x / interval) * val_s`.
    """
    extra = max(int(remaining_s / max(epoch_s, 1e-6)), 0)
    while extra > 0:
        step = val_interval(epochs_done + extra, validations)
        if extra * epoch_s + math.ceil(extra / step) * val_s <= remaining_s:
            break
        extra -= 1
    return extra


def revise_plan(planned: Optional[int], epochs_done: int, remaining_s: float, epoch_s: float, val_s: float,
                validations: int, reserve_s: float) -> int:
    """The total number of epochs after a new measurement of the pace, with hysteresis.

    A plan grows only when the extra epochs fit with `reserve_s` to spare, and shrinks only when it
    no longer fits the budget at all. Without the gap, a pace that wobbles near the end of a run
    adds an epoch and then takes it back after the LR schedule has been stretched for it, so the
    last step would not reach the LR floor.
    """
    fits = epochs_done + plan_epochs(remaining_s, epoch_s, val_s, epochs_done, validations)
    fits_spared = epochs_done + plan_epochs(remaining_s - reserve_s, epoch_s, val_s, epochs_done, validations)
    if planned is None or planned < fits_spared:
        return fits_spared
    if planned > fits:
        return fits
    return planned


def val_interval(total_epochs: int, validations: int) -> int:
    """Epochs between validations so that about `validations` happen in `total_epochs`."""
    return max(1, round(total_epochs / max(validations, 1)))


def validation_due(epoch: int, total_epochs: int, last_validated: Optional[int], validations: int) -> bool:
    """Whether 0-based `epoch` is validated under a plan of `total_epochs`.

    The grid counts back from the last epoch, which is always validated, in steps of
    `val_interval`. A new plan shifts the grid, so an epoch on it is validated only if at least half
    a step has passed since the last validation (a replan cannot put two in a row), and an epoch
    off it once a whole step has passed (a plan that keeps moving cannot postpone them forever).
    Nothing is validated within half a step before the last epoch. `last_validated` None counts
    as epoch -1.
    """
    last = total_epochs - 1
    if epoch >= last:
        return True
    step = val_interval(total_epochs, validations)
    min_gap = max(1, (step + 1) // 2)
    if last - epoch < min_gap:
        return False
    since = epoch - (last_validated if last_validated is not None else -1)
    if since < min_gap:
        return False
    return (last - epoch) % step == 0 or since >= step


class TimeBudget(Callback):
    """Plan the number of epochs, the LR schedule and the validations from the measured pace.

    Args:
        budget_s: seconds for training and validation (the final evaluation comes after).
        validations: about how many validations the run should have.
        drift: relative change of the epoch or validation time that triggers a new plan.
    """

    def __init__(self, budget_s: float, validations: int = 10, drift: float = 0.10) -> None:
        self.budget_s = float(budget_s)
        self.validations = int(validations)
        self.drift = float(drift)
        self.spent_before_s = 0.0  # spent by earlier runs of a resumed training
        self.planned_epochs: Optional[int] = None
        self.planned_epoch_s: Optional[float] = None
        self.planned_val_s: Optional[float] = None
        self._fit_start: Optional[float] = None
        self._epoch_start: Optional[float] = None
        self._val_start = 0.0
        self._val_in_epoch = 0.0
        self._epoch_times: List[float] = []  # start to start, validation excluded: saving included
        self._last_val_s: Optional[float] = None
        self._sanity_s: Optional[float] = None
        self.last_validated: Optional[int] = None  # epoch of the last validation

    # ------------------------------------------------------------------ clock
    def spent_s(self) -> float:
        """Seconds of the budget used so far, earlier runs of a resumed training included."""
        running = time.monotonic() - self._fit_start if self._fit_start is not None else 0.0
        return self.spent_before_s + running

    def state_dict(self) -> Dict[str, Any]:
        return {"spent_s": self.spent_s(), "planned_epochs": self.planned_epochs,
                "planned_epoch_s": self.planned_epoch_s, "planned_val_s": self.planned_val_s,
                "last_validated": self.last_validated}

    def load_state_dict(self, state_dict: Dict[str, Any]) -> None:
        self.spent_before_s = float(state_dict.get("spent_s", 0.0))
        self.planned_epochs = state_dict.get("planned_epochs")
        self.planned_epoch_s = state_dict.get("planned_epoch_s")
        self.planned_val_s = state_dict.get("planned_val_s")
        self.last_validated = state_dict.get("last_validated")

    # ------------------------------------------------------------------ hooks
    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._fit_start = time.monotonic()
        if self.planned_epochs is not None:
            # Resumed: the restored plan, not the config's first guess, decides whether the fit
            # loop has anything left to do (it checks before on_train_start).
            trainer.fit_loop.max_epochs = self.planned_epochs

    def on_sanity_check_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._val_start = time.monotonic()

    def on_sanity_check_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._sanity_s = time.monotonic() - self._val_start

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.planned_epochs is not None:  # resumed: keep the plan until the pace is measured again
            self._apply(trainer, self.planned_epochs)

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        now = time.monotonic()
        if self._epoch_start is not None:  # the previous epoch with its checkpoint saving
            self._epoch_times.append(now - self._epoch_start - self._val_in_epoch)
        self._epoch_start = now
        self._val_in_epoch = 0.0
        self._schedule_validation(trainer)

    def on_validation_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not trainer.sanity_checking:
            self._val_start = time.monotonic()

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not trainer.sanity_checking:
            self._last_val_s = time.monotonic() - self._val_start
            self._val_in_epoch += self._last_val_s
            self.last_validated = trainer.current_epoch

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any,
                           batch: Any, batch_idx: int) -> None:
        # Rank 0's clock decides for all ranks (as Lightning's Timer does), so no rank stops alone.
        used_up = trainer.strategy.broadcast(self.spent_s() > self.budget_s, src=0)
        if used_up and not trainer.should_stop:
            logger.warning("time budget of %.0f s used up in epoch %d: stopping now",
                           self.budget_s, trainer.current_epoch)
            trainer.should_stop = True

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        recent = self._epoch_times[-_PACE_WINDOW:]
        if recent:
            epoch_s = sum(recent) / len(recent)
        else:  # the first epoch: its checkpoints are not written yet
            epoch_s = (time.monotonic() - (self._epoch_start or time.monotonic()) - self._val_in_epoch) * 1.05
        val_s = self._last_val_s if self._last_val_s is not None else self._estimated_val_s(trainer)
        total = self._replan(trainer, epoch_s, val_s) if self._drifted(epoch_s, val_s) else None
        total = trainer.strategy.broadcast(total, src=0)  # every rank, every epoch: one plan for all
        if total is not None:
            self._apply(trainer, total)

    # ------------------------------------------------------------------ planning
    def _estimated_val_s(self, trainer: pl.Trainer) -> float:
        """Before the first validation: the sanity-check batch times the number of val batches."""
        if self._sanity_s is None:
            return 0.0
        batches = trainer.num_val_batches
        total = sum(batches) if isinstance(batches, list) else batches
        return self._sanity_s * max(float(total), 1.0)

    def _drifted(self, epoch_s: float, val_s: float) -> bool:
        if self.planned_epoch_s is None or self.planned_val_s is None:
            return True
        changed = abs(epoch_s - self.planned_epoch_s) > self.drift * self.planned_epoch_s
        if self.planned_val_s > 0:
            changed |= abs(val_s - self.planned_val_s) > self.drift * self.planned_val_s
        return changed

    def _replan(self, trainer: pl.Trainer, epoch_s: float, val_s: float) -> int:
        """The total number of epochs that fits the budget at the measured pace."""
        done = trainer.current_epoch + 1
        remaining = self.budget_s - self.spent_s()
        reserve = max(_RESERVE_EPOCHS * epoch_s, _RESERVE_SHARE * self.budget_s)
        total = revise_plan(self.planned_epochs, done, remaining, epoch_s, val_s, self.validations, reserve)
        self.planned_epoch_s, self.planned_val_s = epoch_s, val_s
        if trainer.is_global_zero:
            logger.info("time budget: %.0f of %.0f s left after epoch %d at %.1f s/epoch and %.1f s per "
                        "validation: training for %d epochs, validating every %d", remaining, self.budget_s,
                        done, epoch_s, val_s, total, val_interval(total, self.validations))
            if total == done and self.planned_epochs is not None and self.planned_epochs > done:
                logger.warning("time budget: the pace slowed near the end and no time is left for the %d epochs "
                               "still planned: the run ends now, its LR schedule that many epochs short of the "
                               "floor", self.planned_epochs - done)
        return total

    def _apply(self, trainer: pl.Trainer, total_epochs: int) -> None:
        """Set the run's length and stretch or shrink the LR schedule to end on its last step."""
        self.planned_epochs = int(total_epochs)
        trainer.fit_loop.max_epochs = self.planned_epochs
        steps_per_epoch = int(trainer.num_training_batches) // max(trainer.accumulate_grad_batches, 1)
        for config in trainer.lr_scheduler_configs:
            schedule = getattr(config.scheduler, "schedule", None)
            if schedule is not None and hasattr(schedule, "total_steps"):
                schedule.total_steps = max(self.planned_epochs * max(steps_per_epoch, 1), 1)

    def _schedule_validation(self, trainer: pl.Trainer) -> None:
        """Validate this epoch if `validation_due` says so under the current plan.

        Lightning validates epoch e when `(e + 1) % check_val_every_n_epoch == 0`: 1 validates
        this epoch, `e + 2` skips it.
        """
        if self.planned_epochs is None:
            return  # first epoch: Lightning's own interval until the pace is known
        epoch = trainer.current_epoch
        due = validation_due(epoch, self.planned_epochs, self.last_validated, self.validations)
        trainer.check_val_every_n_epoch = 1 if due else epoch + 2
