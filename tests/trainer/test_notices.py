"""Hidden third-party notices are hidden one by one: the same words from elsewhere still show.
And the one-line model summary that replaces Lightning's."""
from __future__ import annotations

import logging
import types
import warnings

import pytest
import torch

from nanodet_ghost.model import count_parameters
from nanodet_ghost.trainer.callbacks import DetectorSummary
from nanodet_ghost.trainer.notices import (
    LIGHTNING_RANK_ZERO_LOGGER,
    LightningAdvertFilter,
    hide_unactionable_notices,
)
from nanodet_ghost.trainer.runner import build_module

from trainer_helpers import tiny_config

ADVERT = "💡 Tip: For seamless cloud logging and experiment tracking, try installing [litlogger](...)"
LEAFSPEC = "`isinstance(treespec, LeafSpec)` is deprecated, use `isinstance(treespec, TreeSpec)` instead."


def _record(message: str, pathname: str) -> logging.LogRecord:
    return logging.LogRecord(LIGHTNING_RANK_ZERO_LOGGER, logging.INFO, pathname, 1, message, None, None)


def test_lightning_advert_dropped_by_message_and_module():
    advert_filter = LightningAdvertFilter()
    assert not advert_filter.filter(_record(ADVERT, "/x/logger_connector/logger_connector.py"))
    assert not advert_filter.filter(_record(ADVERT.replace("logging", "uploads"), "/x/callback_connector.py"))
    assert advert_filter.filter(_record("GPU available: False, used: False", "/x/logger_connector.py"))
    assert advert_filter.filter(_record(ADVERT, "/x/some_other_module.py"))


def test_filter_installed_once():
    lightning_log = logging.getLogger(LIGHTNING_RANK_ZERO_LOGGER)
    hide_unactionable_notices()
    hide_unactionable_notices()
    assert sum(isinstance(f, LightningAdvertFilter) for f in lightning_log.filters) == 1


def _shown(message: str, category: type, module: str) -> bool:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        hide_unactionable_notices()
        warnings.warn_explicit(message, category, f"{module.replace('.', '/')}.py", 1, module=module)
    return bool(caught)


def test_warnings_hidden_only_from_their_module_and_category():
    assert not _shown(LEAFSPEC, FutureWarning, "pytorch_lightning.utilities._pytree")
    assert _shown(LEAFSPEC, FutureWarning, "nanodet_ghost.trainer.module")  # our own use would show
    assert _shown(LEAFSPEC, FutureWarning, "pytorch_lightning.utilities._pytree_v2")
    assert _shown("`foo` is deprecated", FutureWarning, "pytorch_lightning.utilities._pytree")
    eval_mode = "Found 448 module(s) in eval mode at the start of training. This may lead to ..."
    assert not _shown(eval_mode, UserWarning, "pytorch_lightning.loops.fit_loop")
    assert _shown(eval_mode, UserWarning, "pytorch_lightning.loops.evaluation_loop")


@pytest.mark.parametrize("ema_decay", [None, 0.99])
def test_summary_counts_the_deployed_model_and_changes_nothing(ema_decay, tiny_coco, tmp_path, caplog):
    cfg = tiny_config(tiny_coco, tmp_path / "run", [f"train.ema_decay={ema_decay or 'null'}"])
    module = build_module(cfg)
    module.train()
    before = {k: v.clone() for k, v in module.state_dict().items()}
    with caplog.at_level(logging.INFO, logger="nanodet_ghost.trainer.callbacks"):
        DetectorSummary((64, 96)).on_fit_start(types.SimpleNamespace(is_global_zero=True), module)
        DetectorSummary((64, 96)).on_fit_start(types.SimpleNamespace(is_global_zero=False), module)
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 1
    assert lines[0].startswith(f"model: {count_parameters(module.model) / 1e6:.3f} M parameters, ")
    assert lines[0].endswith("per 64x96 image")
    assert float(lines[0].split(" GMACs")[0].rsplit(" ", 1)[1]) > 0
    assert module.model.training  # the live model is left in train mode
    after = module.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # no BatchNorm statistic moved
