"""Detector exports as `.safetensors`: weights without training-only keys, the config in the metadata,
read back with no pickle at all; a file that does not fit the config gives the checkpoint message."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch
from safetensors import safe_open

from nanodet_ghost.cli import UsageError
from nanodet_ghost.config import ConfigError, load_config, to_yaml
from nanodet_ghost.export.safetensors_export import (
    SAFETENSORS_FORMAT_VERSION,
    export_safetensors,
    load_safetensors_detector,
    read_safetensors_config,
)
from nanodet_ghost.model import Detector, build_model, load_detector
from nanodet_ghost.model.weights import CheckpointMismatchError
from nanodet_ghost.paths import CONFIG_DIR, REPO_ROOT

PLUS_CONFIG = CONFIG_DIR / "bccd_nanodet_plus_ghost.yml"  # has a training-only aux head


@pytest.fixture
def no_torch_load(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("torch.load must not be called for a safetensors export")

    monkeypatch.setattr(torch, "load", refuse)


@pytest.fixture(scope="module")
def plus_model():
    cfg = load_config(PLUS_CONFIG)
    torch.manual_seed(0)
    model = build_model(cfg.model).eval()
    assert any(k.startswith(Detector.TRAINING_ONLY_PREFIX) for k in model.state_dict())
    return cfg, model


@torch.no_grad()
def _raw(model: torch.nn.Module, size) -> torch.Tensor:
    torch.manual_seed(1)
    return model.eval()(torch.randn(1, 3, size[1], size[0]))


def test_export_loads_without_pickle(plus_model, tmp_path: Path, no_torch_load) -> None:
    cfg, model = plus_model
    path = export_safetensors(model, cfg, tmp_path / "plus.safetensors")
    with safe_open(path, framework="pt") as handle:
        keys, metadata = list(handle.keys()), handle.metadata()
    assert keys and not [k for k in keys if k.startswith(Detector.TRAINING_ONLY_PREFIX)]
    assert metadata["format_version"] == SAFETENSORS_FORMAT_VERSION
    assert metadata["config"] == to_yaml(cfg)

    size = list(cfg.data.input_size)
    expected = _raw(model, size)
    from_metadata = load_safetensors_detector(path)  # nothing but the file
    assert from_metadata.aux is None
    assert torch.equal(_raw(from_metadata, size), expected)
    assert torch.equal(_raw(load_detector(cfg, path), size), expected)
    assert read_safetensors_config(path).model.head.num_classes == cfg.model.head.num_classes


def test_mismatched_export_gives_the_checkpoint_message(plus_model, tmp_path: Path, no_torch_load) -> None:
    cfg, model = plus_model
    path = export_safetensors(model, cfg, tmp_path / "bccd.safetensors")
    other = load_config(PLUS_CONFIG, [f"model.head.num_classes={cfg.model.head.num_classes + 1}",
                                      "data.class_names=[]"])
    with pytest.raises(CheckpointMismatchError, match=r"bccd\.safetensors: checkpoint does not match the "
                       r"model built from the config\n  shape mismatches \(8\): head\.predictors\.0\.bias: "
                       r"file \(\d+,\) vs model \(\d+,\);(.|\n)*is model\.head\.num_classes the same as in "
                       r"training\?\)$"):
        load_detector(other, path)


def test_files_that_are_not_exports(tmp_path: Path, no_torch_load) -> None:
    broken = tmp_path / "broken.safetensors"
    broken.write_bytes(b"\x00" * 4)
    with pytest.raises(CheckpointMismatchError, match=r"broken\.safetensors: cannot be read as a safetensors file"):
        load_detector(load_config(PLUS_CONFIG), broken)
    from safetensors.torch import save_file

    foreign = tmp_path / "foreign.safetensors"
    save_file({"w": torch.zeros(2)}, str(foreign), metadata={"format": "pt"})
    with pytest.raises(CheckpointMismatchError, match=r"foreign\.safetensors: not a detector export of nanodet_ghost "
                                                      r"\(metadata format 'pt'"):
        load_safetensors_detector(foreign)
    newer = tmp_path / "newer.safetensors"
    save_file({"w": torch.zeros(2)}, str(newer), metadata={"format": "nanodet_ghost.detector", "config": "{}",
                                                            "format_version": "99"})
    with pytest.raises(CheckpointMismatchError, match=r"newer\.safetensors: format_version '99', this version reads"):
        read_safetensors_config(newer)
    typo = tmp_path / "typo.safetensors"
    save_file({"w": torch.zeros(2)}, str(typo), metadata={"format": "nanodet_ghost.detector", "format_version": "1",
                                                           "config": "model:\n  backbone:\n    widht: 1.0\n"})
    with pytest.raises(ConfigError, match=r"typo\.safetensors \(metadata 'config'\): .*widht"):
        read_safetensors_config(typo)


def test_registered_as_a_format(plus_model, tmp_path: Path) -> None:
    from nanodet_ghost.export.formats import FORMATS, check_format, export_model  # imports onnx

    assert FORMATS["safetensors"] == ".safetensors"
    with pytest.raises(ValueError, match=r"--format safetensors writes a \.safetensors file"):
        check_format("safetensors", tmp_path / "m.onnx")
    cfg, model = plus_model
    path = export_model(model, cfg, "safetensors", tmp_path / "m.safetensors")
    assert torch.equal(_raw(load_detector(cfg, path), list(cfg.data.input_size)), _raw(model, cfg.data.input_size))
    spec = importlib.util.spec_from_file_location("tools_export", REPO_ROOT / "tools" / "export.py")
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    args = tool.parse_args(["cfg.yml", "model.ckpt", "--format", "safetensors", "--out", "m.safetensors"])
    assert args.format == "safetensors"
    with pytest.raises(UsageError, match="holds the checkpoint's weights unchanged"):
        tool.run(tool.parse_args(["cfg.yml", "model.ckpt", "--format", "safetensors", "--out", "m.safetensors",
                                  "--check-map"]))
