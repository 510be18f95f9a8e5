"""Where things live: the bundled configs, the project folder, the real third-party data.

The package runs from a checkout (`pip install -e .`, or `PYTHONPATH`) or installed from a wheel.
Installed, there is no repository around it, so what a checkout keeps beside its root (the data in
`../shared/data`) is looked for beside the current folder instead, and nothing is written inside
the package (site-packages).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import List, Optional

DATA_ENV_VAR = "NANODET_GHOST_DATA"
PACKAGE_DIR = Path(__file__).resolve().parent
REPO_ROOT = PACKAGE_DIR.parent  # the checkout's root; installed, the site-packages folder
CONFIG_DIR = PACKAGE_DIR / "configs"  # the shipped configs, package data of the wheel
CONFIG_SUFFIXES = (".yml", ".yaml")
LEGACY_CONFIG_DIRS = ("config", "configs")  # `config/NAME.yml` of the README finds the bundled NAME.yml


def is_checkout() -> bool:
    """True when the package runs from a source checkout (its parent holds setup.py), not a wheel."""
    return (REPO_ROOT / "setup.py").is_file()


def project_root() -> Path:
    """The folder that repository-relative things are relative to: the checkout's root, or the
    current folder when the package is installed."""
    return REPO_ROOT if is_checkout() else Path.cwd()


def shared_data_root() -> Path:
    """`$NANODET_GHOST_DATA`, else `shared/data` beside the project folder (`project_root()`)."""
    env = os.environ.get(DATA_ENV_VAR)
    return Path(env) if env else project_root().parent / "shared" / "data"


CACHE_ENV_VAR = "NANODET_GHOST_CACHE"


def default_cache_dir() -> Path:
    """Where generated files are kept: `$NANODET_GHOST_CACHE`, else
    `$XDG_CACHE_HOME/nanodet_ghost`, else `~/.cache/nanodet_ghost`."""
    env = os.environ.get(CACHE_ENV_VAR)
    if env:
        return Path(env)
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "nanodet_ghost"


def bundled_configs() -> List[str]:
    """The names (file stems) of the configs shipped with the package, sorted."""
    return sorted(p.stem for p in CONFIG_DIR.iterdir() if p.suffix in CONFIG_SUFFIXES)


def bundled_config(path: str | os.PathLike) -> Optional[Path]:
    """The shipped config that `path` names, or None.

    `path` names one when it is a bare name (`bccd_ghost_320`, `bccd_ghost_320.yml`) or the
    relative `config/bccd_ghost_320.yml` that the README used before the configs moved into the
    package. Callers look for a file at `path` first: a file always wins over a bundled name.
    """
    parts = Path(path).parts
    if len(parts) == 2 and parts[0] in LEGACY_CONFIG_DIRS:
        parts = parts[1:]
    if len(parts) != 1:
        return None
    name = parts[0]
    candidates = [name] if name.endswith(CONFIG_SUFFIXES) else [name + suffix for suffix in CONFIG_SUFFIXES]
    for candidate in candidates:
        found = CONFIG_DIR / candidate
        if found.is_file():
            return found
    return None


def resolve_config_path(path: str | os.PathLike) -> str:
    """`path` when it is a file, else the shipped config it names (`bundled_config`); else a
    `FileNotFoundError` whose one line lists the shipped configs."""
    path = os.fspath(path)
    if os.path.isfile(path):
        return path
    bundled = bundled_config(path)
    if bundled is None:
        raise FileNotFoundError(f"config file not found: {path} (not a file, nor one of the bundled configs: "
                                f"{', '.join(bundled_configs())})")
    return str(bundled)
