"""Third-party console notices that a user of this project cannot act on, hidden one by one.

Each is matched by its message and by the module that emits it, so every other warning of the same
category, and every other message of the same logger, still reaches the console.

- Lightning's advertisements ("💡 Tip: For seamless cloud ... try installing litlogger / litmodels"),
  logged by its trainer connectors when no LitLogger is configured.
- torch's FutureWarning about `LeafSpec`, triggered inside `pytorch_lightning.utilities._pytree`
  (Lightning's code, not ours).
- Lightning's "Found N module(s) in eval mode at the start of training": the EMA copy of the
  detector is kept in eval mode on purpose.
"""
from __future__ import annotations

import logging
import warnings
from typing import Tuple

# The logger that Lightning's rank_zero_info writes to, and the modules whose notices are dropped.
LIGHTNING_RANK_ZERO_LOGGER = "pytorch_lightning.utilities.rank_zero"
_ADVERT_MODULES = ("logger_connector", "callback_connector")
_ADVERT_PREFIX = "💡 Tip: For seamless cloud"

# (message regex, category, emitting module regex) of each hidden warning.
HIDDEN_WARNINGS: Tuple[Tuple[str, type, str], ...] = (
    (r"`isinstance\(treespec, LeafSpec\)` is deprecated", FutureWarning,
     r"pytorch_lightning\.utilities\._pytree\Z"),
    (r"Found \d+ module\(s\) in eval mode at the start of training", UserWarning,
     r"pytorch_lightning\.loops\.fit_loop\Z"),
)


class LightningAdvertFilter(logging.Filter):
    """Drops Lightning's "💡 Tip: For seamless cloud ..." records, and only those."""

    def filter(self, record: logging.LogRecord) -> bool:
        is_advert = record.module in _ADVERT_MODULES and record.getMessage().startswith(_ADVERT_PREFIX)
        return not is_advert


def hide_unactionable_notices() -> None:
    """Install the filters of this module (idempotent). Call before building a `pl.Trainer`."""
    for message, category, module in HIDDEN_WARNINGS:
        warnings.filterwarnings("ignore", message=message, category=category, module=module)
    lightning_log = logging.getLogger(LIGHTNING_RANK_ZERO_LOGGER)
    if not any(isinstance(f, LightningAdvertFilter) for f in lightning_log.filters):
        lightning_log.addFilter(LightningAdvertFilter())

