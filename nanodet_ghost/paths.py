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


CACHE_ENV_VAR = "NANODET_GHOST_CACHE"


def default_cache_dir() -> Path:
    """Where generated files are kept: `$NANODET_GHOST_CACHE`, else
    `$XDG_CACHE_HOME/nanodet_ghost`, else `~/.cache/nanodet_ghost`."""
    env = os.environ.get(CACHE_ENV_VAR)
    if env:
        return Path(env)
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "nanodet_ghost"
