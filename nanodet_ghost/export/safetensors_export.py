"""A detector's deployable weights as one `.safetensors` file, its config in the file's metadata.

The file holds the detector's state dict without its training-only parts (keys under
`Detector.TRAINING_ONLY_PREFIX`), unfused, so `load_detector(cfg, path)` loads it into
`build_model(cfg.model)` as it loads a checkpoint. Its metadata (safetensors allows str -> str only):

| key | value |
|---|---|
| format | `nanodet_ghost.detector` |
| format_version | `SAFETENSORS_FORMAT_VERSION` |
| config | the resolved config as YAML (`nanodet_ghost.config.to_yaml`) |

`load_safetensors_detector(path)` needs nothing else: it reads the config from the metadata. No
pickle is involved in writing or reading (`torch.load` is never called).
"""
from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path
from typing import Any, Dict, Union

from omegaconf import DictConfig
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file
from torch import Tensor, nn

from nanodet_ghost.config import ConfigError, load_config, to_yaml
from nanodet_ghost.model import Detector, load_detector
from nanodet_ghost.model.weights import CheckpointMismatchError, read_safetensors

logger = logging.getLogger(__name__)

SAFETENSORS_FORMAT = "nanodet_ghost.detector"
SAFETENSORS_FORMAT_VERSION = "1"

PathLike = Union[str, "os.PathLike[str]"]


def deployable_state_dict(model: nn.Module) -> Dict[str, Tensor]:
    """The model's state dict without training-only keys, each tensor a contiguous CPU copy
    (safetensors refuses tensors that share memory)."""
    return {k: v.detach().to("cpu").contiguous().clone() for k, v in model.state_dict().items()
            if not k.startswith(Detector.TRAINING_ONLY_PREFIX)}


def export_safetensors(model: nn.Module, cfg: DictConfig, out_path: PathLike) -> str:
    """Write `model`'s deployable weights and `cfg` (see the module doc) to `out_path`, then read
    the file back and check every tensor. Returns the path written.

    Raises:
        ValueError: the file read back differs from the model (names the file and the keys).
    """
    out_path = os.fspath(out_path)
    state = deployable_state_dict(model)
    dropped = len(model.state_dict()) - len(state)
    metadata = {"format": SAFETENSORS_FORMAT, "format_version": SAFETENSORS_FORMAT_VERSION, "config": to_yaml(cfg)}
    Path(out_path).parent.mkdir(parents=True, exist_ok=True)
    save_file(state, out_path, metadata=metadata)
    back = read_safetensors(out_path)
    differ = sorted(k for k in state if k not in back or not back[k].equal(state[k]))
    if differ or back.keys() != state.keys():
        raise ValueError(f"{out_path}: the weights read back differ from the model's: {differ[:10]}")
    logger.info("wrote %s: %d tensors%s, config in the metadata", out_path, len(state),
                f" ({dropped} training-only tensors left out)" if dropped else "")
    return out_path


def read_safetensors_metadata(path: PathLike) -> Dict[str, str]:
    """The str -> str metadata of a `.safetensors` file (empty dict when it has none).

    Raises:
        FileNotFoundError: no such file. CheckpointMismatchError: not a safetensors file.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"checkpoint not found: {path}")
    try:
        with safe_open(path, framework="pt") as handle:
            return dict(handle.metadata() or {})
    except (SafetensorError, OSError) as exc:
        raise CheckpointMismatchError(f"{path}: cannot be read as a safetensors file ({exc})") from None


def read_safetensors_config(path: PathLike) -> DictConfig:
    """The config stored in a detector export by `export_safetensors`, validated as a config file is.

    Raises:
        CheckpointMismatchError: not such an export (no or another format, a newer format version).
        ConfigError: the stored config does not validate (names the file).
    """
    path = os.fspath(path)
    metadata = read_safetensors_metadata(path)
    if metadata.get("format") != SAFETENSORS_FORMAT or "config" not in metadata:
        raise CheckpointMismatchError(
            f"{path}: not a detector export of nanodet_ghost (metadata format {metadata.get('format')!r}, "
            f"expected {SAFETENSORS_FORMAT!r} with a config); load it with load_detector(cfg, path) and a config")
    if metadata.get("format_version") != SAFETENSORS_FORMAT_VERSION:
        raise CheckpointMismatchError(
            f"{path}: format_version {metadata.get('format_version')!r}, this version reads "
            f"{SAFETENSORS_FORMAT_VERSION!r}")
    with tempfile.TemporaryDirectory(prefix="nanodet_safetensors_") as tmp:
        config_file = os.path.join(tmp, "config.yml")
        Path(config_file).write_text(metadata["config"], encoding="utf-8")
        try:
            return load_config(config_file)
        except ConfigError as exc:  # name the export, not the temporary file
            raise ConfigError(str(exc).replace(config_file, f"{path} (metadata 'config')")) from None


def load_safetensors_detector(path: PathLike, **kwargs: Any) -> Detector:
    """The detector of a `export_safetensors` file, built from the config in its metadata (eval
    mode); `kwargs` go to `load_detector`."""
    return load_detector(read_safetensors_config(path), path, **kwargs)
