"""Where the real third-party data lives (never copied into the repository)."""
from __future__ import annotations

import os
from pathlib import Path

DATA_ENV_VAR = "NANODET_GHOST_DATA"
REPO_ROOT = Path(__file__).resolve().parent.parent


def shared_data_root() -> Path:
    """`$NANODET_GHOST_DATA`, else `../shared/data` beside the repository root."""
    env = os.environ.get(DATA_ENV_VAR)
    return Path(env) if env else REPO_ROOT.parent / "shared" / "data"
